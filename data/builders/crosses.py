"""Procedural "crosses" dataset with region-of-interest masks and a spurious distractor.

A re-creation of the synthetic task of Viviano et al. 2019 ("Underwhelming Generalization
Improvements From Controlling Feature Attribution"), generated offline with numpy:

- 28x28x1 images on a zero background (``noise_std`` > 0 adds Gaussian background noise; off in the
  registered dataset because the noise would reveal the mask outline to classify-masked training,
  where ``x * m`` zeroes the noise outside the mask: the mask area, larger with two crosses, then
  predicts the class); class 0 holds one "+" cross, class 1 two
  crosses (value 1, arm half-length 1 or 2 px, centres uniform in the upper part of the image).
- ``mask`` (uint8 [28, 28], 1 = region of interest): the cross pixels dilated by 3 or 4 px
  (square structuring element).
- distractor: a 2x3 block of value 1, always outside the mask, bottom-left for class 0 and
  bottom-right for class 1 in ``train``/``valid_id``/``test_id`` (100% correlated with the label).
- ``*_shift`` splits: every image (and mask) is flipped left-right, so the block sits on the side of
  the other class (perfectly anti-correlated). ``test_nodistractor``: no block at all.

Splits (sizes as in the paper): ``train`` 500, ``valid_id``, ``valid_shift``, ``test_id``,
``test_shift``, ``test_nodistractor`` 128 each. Every split has its own fixed numpy seed, so the data
are identical on every machine; :func:`generate_crosses` exposes the generator for other seeds.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.registry import DatasetSpec, register_dataset

SIZE = 28
NOISE_STD = 0.0
BLOCK_ROWS = (23, 25)          # rows [23, 25)
BLOCK_COLS = {0: (2, 5), 1: (23, 26)}  # class 0: bottom-left, class 1: bottom-right
# cross centres: rows and columns chosen so that the dilated mask never reaches the block rows
CENTRE_ROWS = (3, 16)           # inclusive; 16 + 2 (arm) + 4 (dilation) = 22 < 23
CENTRE_COLS = (3, 24)
MIN_CENTRE_DIST = 6             # Chebyshev distance between the two crosses of class 1

SPLITS: Dict[str, dict] = {
    "train": dict(n=500, seed=1, shift=False, distractor=True),
    "valid_id": dict(n=128, seed=2, shift=False, distractor=True),
    "valid_shift": dict(n=128, seed=3, shift=True, distractor=True),
    "test_id": dict(n=128, seed=4, shift=False, distractor=True),
    "test_shift": dict(n=128, seed=5, shift=True, distractor=True),
    "test_nodistractor": dict(n=128, seed=6, shift=False, distractor=False),
}


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
  """Binary dilation with a (2r+1)^2 square, zero outside the image."""
  h, w = mask.shape
  pad = np.pad(mask, radius)
  out = np.zeros_like(mask)
  for dy in range(2 * radius + 1):
    for dx in range(2 * radius + 1):
      out |= pad[dy:dy + h, dx:dx + w]
  return out


def _draw_cross(img: np.ndarray, cy: int, cx: int, arm: int) -> None:
  img[cy - arm:cy + arm + 1, cx] = 1.0
  img[cy, cx - arm:cx + arm + 1] = 1.0


def generate_crosses(n: int, seed: int, *, shift: bool = False, distractor: bool = True,
                     noise_std: float = NOISE_STD):
  """Generates ``n`` examples deterministically from ``seed``.

  Returns:
    ``images`` float32 [n, 28, 28, 1], ``masks`` uint8 [n, 28, 28], ``labels`` int64 [n]
    (balanced: even indices class 0, odd class 1, then shuffled).
  """
  rng = np.random.RandomState(seed)
  labels = np.arange(n) % 2
  rng.shuffle(labels)
  images = np.zeros((n, SIZE, SIZE, 1), np.float32)
  masks = np.zeros((n, SIZE, SIZE), np.uint8)
  for i, y in enumerate(labels):
    img = np.zeros((SIZE, SIZE), np.float32)
    centres = []
    while len(centres) < int(y) + 1:
      c = (rng.randint(CENTRE_ROWS[0], CENTRE_ROWS[1] + 1),
           rng.randint(CENTRE_COLS[0], CENTRE_COLS[1] + 1))
      if all(max(abs(c[0] - d[0]), abs(c[1] - d[1])) >= MIN_CENTRE_DIST for d in centres):
        centres.append(c)
    for cy, cx in centres:
      _draw_cross(img, cy, cx, arm=rng.randint(1, 3))
    mask = _dilate(img > 0, radius=rng.randint(3, 5)).astype(np.uint8)
    noise = rng.normal(0.0, noise_std, size=img.shape).astype(np.float32) if noise_std else 0.0
    img = np.where(img > 0, img, noise)
    if distractor:
      c0, c1 = BLOCK_COLS[int(y)]
      img[BLOCK_ROWS[0]:BLOCK_ROWS[1], c0:c1] = 1.0
      assert not mask[BLOCK_ROWS[0]:BLOCK_ROWS[1], c0:c1].any()
    if shift:
      img, mask = img[:, ::-1], mask[:, ::-1]
    images[i, ..., 0] = img
    masks[i] = mask
  return images, masks, labels.astype(np.int64)


class Crosses(tfds.core.GeneratorBasedBuilder):
  """One vs two crosses, ROI masks, and a left/right distractor block that flips in *_shift splits."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "background noise std 0.05", "1.1.0": "zero background"}

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(SIZE, SIZE, 1), dtype=np.float32),
            "mask": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=2),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(**kw) for name, kw in SPLITS.items()}

  def _generate_examples(self, n, seed, shift, distractor):
    images, masks, labels = generate_crosses(n, seed, shift=shift, distractor=distractor)
    for i in range(n):
      yield i, {"image": images[i], "mask": masks[i], "label": int(labels[i])}


register_dataset(DatasetSpec(
    name="crosses", tfds_name="crosses", num_classes=2, input_key="image", fields=("mask",),
    splits=tuple(SPLITS), builder=Crosses, preprocess=lambda x: np.asarray(x, np.float32),
    image=True,
    description="procedural crosses with ROI masks and a flipping distractor (Viviano et al.), "
                "500 train / 5 x 128 eval, offline"))
