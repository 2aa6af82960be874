"""Real images with region-of-interest masks, read from a folder (``masked_folder``).

Layout (``$LABELWISE_MASKED_FOLDER``)::

    <root>/<split>/<class name>/<image>.png          # any format Pillow reads (png, jpg, ...)
    <root>/<split>/<class name>/<image>_mask.png     # optional: nonzero = region of interest

Splits are the sub-folders of ``<root>`` (``train`` is required; ``valid``/``test``/``test_shift``...
as present). Classes are the sorted sub-folder names of ``<root>/train``. Images are converted to
RGB, resized to ``$LABELWISE_MASKED_FOLDER_SIZE`` (default 64) square pixels (bilinear; masks
nearest) and scaled to [0, 1]. An image without a mask file gets an all-ones mask (no mask: every
attribution penalty is 0 for it).

The folder is read once, when the dataset is first used, into ArrayRecord files under the TFDS data
directory (``crosses``-style offline builder). Use a fresh ``--config.data.data_dir`` when the folder
changes: TFDS caches by name and version. The number of classes and the split names are read from
the folder when this module is imported; without the environment variable the dataset is
registered with 2 classes and splits ``train``/``test``.

    LABELWISE_MASKED_FOLDER=/data/xray python -m labelwise.train \\
        --config=configs/masked_folder.py:method=gradmask --workdir=runs/xray_gradmask
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.images import open_image
from labelwise.data.registry import DatasetSpec, register_dataset

ENV_ROOT = "LABELWISE_MASKED_FOLDER"
ENV_SIZE = "LABELWISE_MASKED_FOLDER_SIZE"
MASK_SUFFIX = "_mask"
_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def _size() -> int:
  return int(os.environ.get(ENV_SIZE, "64"))


def folder_layout(root: str) -> Tuple[List[str], List[str]]:
  """Returns ``(splits, class names)`` of a masked image folder (raises ValueError if malformed)."""
  if not os.path.isdir(os.path.join(root, "train")):
    raise ValueError(f"masked image folder {root!r} must contain a `train` sub-folder "
                     f"(<root>/<split>/<class>/<image>.png).")
  splits = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  classes = sorted(d for d in os.listdir(os.path.join(root, "train"))
                   if os.path.isdir(os.path.join(root, "train", d)))
  if len(classes) < 2:
    raise ValueError(f"{os.path.join(root, 'train')!r} must hold one sub-folder per class "
                     f"(at least 2), found {classes}.")
  for cls in classes:
    _image_files(os.path.join(root, "train", cls))  # every training class has images
  return splits, classes


def _image_files(folder: str) -> List[str]:
  """The images (not the masks) of a class folder; an empty class folder is an error."""
  files = sorted(f for f in os.listdir(folder)
                 if f.lower().endswith(_EXTS) and not os.path.splitext(f)[0].endswith(MASK_SUFFIX))
  if not files:
    raise ValueError(f"class folder {folder!r} holds no images ({', '.join(_EXTS)}, not ending in "
                     f"{MASK_SUFFIX!r}): a class without examples cannot be learned or evaluated; "
                     f"add images or remove the folder.")
  return files


def read_masked_folder(root: str, split: str, classes: List[str], size: int):
  """Reads one split: ``images`` float32 [N, size, size, 3] in [0, 1], ``masks`` uint8
  [N, size, size], ``labels`` int64 [N], and the relative file names."""
  from PIL import Image
  images, masks, labels, names = [], [], [], []
  for label, cls in enumerate(classes):
    folder = os.path.join(root, split, cls)
    if not os.path.isdir(folder):
      continue
    files = _image_files(folder)
    by_stem = {os.path.splitext(f)[0]: f for f in os.listdir(folder) if f.lower().endswith(_EXTS)}
    for f in files:
      stem = os.path.splitext(f)[0]
      with open_image(os.path.join(folder, f)) as im:
        image_size = im.size
        img = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255.
      mask_file = by_stem.get(stem + MASK_SUFFIX)
      if mask_file is None:
        mask = np.ones((size, size), np.uint8)
      else:
        with open_image(os.path.join(folder, mask_file)) as im:
          if im.size != image_size:  # a mask of another image (or another crop): not stretched
            raise ValueError(
                f"mask {os.path.join(folder, mask_file)!r} is {im.size[0]}x{im.size[1]} pixels but "
                f"its image {f!r} is {image_size[0]}x{image_size[1]}: a mask must have its "
                f"image's size (both are then resized to {size}x{size} together).")
          mask = (np.asarray(im.convert("L").resize((size, size), Image.NEAREST)) > 0)
          mask = mask.astype(np.uint8)
      images.append(img)
      masks.append(mask)
      labels.append(label)
      names.append(os.path.join(split, cls, f))
  if not images:
    return (np.zeros((0, size, size, 3), np.float32), np.zeros((0, size, size), np.uint8),
            np.zeros((0,), np.int64), [])
  return np.stack(images), np.stack(masks), np.asarray(labels, np.int64), names


def _layout_from_env() -> Tuple[Tuple[str, ...], int]:
  root = os.environ.get(ENV_ROOT)
  if not root:
    return ("train", "test"), 2
  splits, classes = folder_layout(root)
  return tuple(splits), len(classes)


_SPLITS, _NUM_CLASSES = _layout_from_env()


class MaskedFolder(tfds.core.GeneratorBasedBuilder):
  """Images + ROI masks from ``$LABELWISE_MASKED_FOLDER`` (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    size = _size()
    return tfds.core.DatasetInfo(
        builder=self,
        description="user images with region-of-interest masks read from a folder",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(size, size, 3), dtype=np.float32),
            "mask": tfds.features.Tensor(shape=(size, size), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=_NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    root = os.environ.get(ENV_ROOT)
    if not root:
      raise ValueError(f"dataset 'masked_folder' reads the folder named by ${ENV_ROOT}; it is "
                       f"not set.")
    splits, classes = folder_layout(root)
    return {s: self._generate_examples(root, s, classes) for s in splits}

  def _generate_examples(self, root, split, classes):
    images, masks, labels, names = read_masked_folder(root, split, classes, _size())
    for i, name in enumerate(names):
      yield name, {"image": images[i], "mask": masks[i], "label": int(labels[i])}


register_dataset(DatasetSpec(
    name="masked_folder", tfds_name="masked_folder", num_classes=_NUM_CLASSES,
    input_key="image", fields=("mask",), splits=_SPLITS, builder=MaskedFolder,
    preprocess=lambda x: np.asarray(x, np.float32), image=True,
    description=f"images + ROI masks from ${ENV_ROOT} (<root>/<split>/<class>/<img>, <img>_mask)"))
