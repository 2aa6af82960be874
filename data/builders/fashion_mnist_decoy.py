"""Decoy Fashion-MNIST: Ross et al. 2017's Decoy-MNIST protocol applied to Fashion-MNIST.

Ross, Hughes and Doshi-Velez 2017, "Right for the Right Reasons" (section 4, Decoy MNIST): each image
gets a 4x4 grey patch in one of its four corners (chosen at random per image); the patch's grey
level is ``255 - 25 * y`` for the image's label ``y`` in training, and ``255 - 25 * z`` for a random
label ``z`` (uniform over the 10 classes) at test, so a model that reads the patch fails at test.
Images are read from the same four files as ``fashion_mnist`` (same splits: the decoy ``train`` is
``fashion_mnist``'s ``train``, the validation splits its ``validation``, the test splits its
``test``).

``mask`` (uint8 ``[28, 28]``, 1 = region of interest, as in ``crosses``): the garment's silhouette,
the nonzero pixels of the original image, minus the patch (in 13-31% of the images, depending on the
corner, the garment reaches the corner; the patch overwrites those pixels, so the mask never covers
the patch).

Splits (the names of the ``crosses`` dataset, so the ``attribution`` evaluator and study read it
as they read ``crosses``):

| split | images | patch shade |
|---|---|---|
| ``train`` | 55,000 | label's |
| ``valid_id`` / ``valid_shift`` | 5,000 | label's / a random label's |
| ``test_id`` / ``test_shift`` | 10,000 | label's / a random label's (Ross et al.'s test set) |
| ``test_nodistractor`` | 10,000 | none (the plain test images) |

Corners and random shades are drawn from a fixed seed per split. Inputs are scaled to [0, 1] without
standardisation, so the background stays 0 (``x * mask`` keeps it 0, as for ``crosses``).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.builders import fashion_mnist as fm
from labelwise.data.registry import DatasetSpec, register_dataset

PATCH = 4
# split -> (source split of fashion_mnist, shade: "label" | "random" | None, seed)
SPLITS: Dict[str, Tuple[str, Optional[str], int]] = {
    "train": ("train", "label", 1),
    "valid_id": ("validation", "label", 2),
    "valid_shift": ("validation", "random", 3),
    "test_id": ("test", "label", 4),
    "test_shift": ("test", "random", 5),
    "test_nodistractor": ("test", None, 6),
}


def shade(labels: np.ndarray) -> np.ndarray:
  """The patch grey level of label ``y``: ``255 - 25 * y`` (uint8)."""
  return (255 - 25 * np.asarray(labels, np.int64)).astype(np.uint8)


def corner_slices(corner: int, size: int = 28) -> Tuple[slice, slice]:
  """Rows and columns of the patch in corner 0 (top left), 1 (top right), 2 (bottom left) or
  3 (bottom right)."""
  rows = slice(0, PATCH) if corner < 2 else slice(size - PATCH, size)
  cols = slice(0, PATCH) if corner % 2 == 0 else slice(size - PATCH, size)
  return rows, cols


def add_decoy(images: np.ndarray, labels: np.ndarray, *, shade_from: Optional[str],
              seed: int, num_classes: int = 10):
  """Decoy images and silhouette masks.

  Args:
    images: uint8 ``[n, 28, 28]``.
    labels: int ``[n]``.
    shade_from: ``"label"`` (shade of the image's label), ``"random"`` (shade of a uniformly random
      label) or None (no patch).
    seed: draws the corners (and the random labels).

  Returns:
    ``images`` uint8 ``[n, 28, 28]``, ``masks`` uint8 ``[n, 28, 28]``, ``corners`` int ``[n]``
    (-1 without patch) and ``shade_labels`` int ``[n]`` (the label whose shade the patch has).
  """
  if shade_from not in ("label", "random", None):
    raise ValueError(f"shade_from must be 'label', 'random' or None, got {shade_from!r}.")
  rng = np.random.RandomState(seed)
  n = len(labels)
  corners = rng.randint(0, 4, size=n)
  shade_labels = (rng.randint(0, num_classes, size=n) if shade_from == "random"
                  else np.asarray(labels, np.int64).copy())
  out = np.array(images, np.uint8, copy=True)
  masks = (out > 0).astype(np.uint8)
  if shade_from is None:
    return out, masks, np.full(n, -1), shade_labels
  shades = shade(shade_labels)
  for i in range(n):
    rows, cols = corner_slices(int(corners[i]), out.shape[1])
    out[i, rows, cols] = shades[i]
    masks[i, rows, cols] = 0
  return out, masks, corners, shade_labels


class FashionMnistDecoy(tfds.core.GeneratorBasedBuilder):
  """Decoy Fashion-MNIST (see the module docstring), from the four IDX files."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = fm.MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=fm.image_features(mask=tfds.features.Tensor(shape=fm.IMAGE_SHAPE,
                                                              dtype=np.uint8)),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    d = fm.load_arrays(fm.manual_dir_of(dl_manager))
    sources = {name: (d.train_images[idx], d.train_labels[idx], idx)
               for name, idx in fm.split_indices(d.train_labels).items()}
    sources["test"] = (d.test_images, d.test_labels, np.arange(len(d.test_labels)))
    return {name: self._generate_examples(*sources[source], shade_from=shade_from, seed=seed)
            for name, (source, shade_from, seed) in SPLITS.items()}

  def _generate_examples(self, images, labels, keys, *, shade_from, seed):
    images, masks, _, _ = add_decoy(images, labels, shade_from=shade_from, seed=seed)
    for i, key in enumerate(keys):
      yield int(key), {"image": images[i][..., None], "mask": masks[i], "label": int(labels[i])}


register_dataset(DatasetSpec(
    name="fashion_mnist_decoy", tfds_name="fashion_mnist_decoy", num_classes=len(fm.CLASS_NAMES),
    input_key="image", fields=("mask",), splits=tuple(SPLITS), builder=FashionMnistDecoy,
    preprocess=lambda x: np.asarray(x, np.float32) / 255.0, fine_to_coarse=fm.HCNN6,
    coarse_maps=fm.COARSE, image=True,
    description="decoy Fashion-MNIST (Ross et al. 2017 protocol): corner patch shaded by the label "
                "in train, by a random label in *_shift, silhouette masks"))
