"""Pl@ntNet-300K (Garcin et al. 2021) and any data in its image-folder layout, as a TFDS builder.

Pl@ntNet-300K (1,081 long-tailed plant species, Zenodo record 5645731) is not in the TFDS catalog and
cannot be downloaded here. Put its images (or any data in the same layout) under the TFDS manual
directory, ``$TFDS_DATA_DIR/downloads/manual/`` (default ``~/tensorflow_datasets/downloads/manual/``)::

    [plantnet_300K/]images/train/<species_id>/<image>.jpg
    [plantnet_300K/]images/val/<species_id>/<image>.jpg     -> split "validation"
    [plantnet_300K/]images/test/<species_id>/<image>.jpg

The first use generates ArrayRecord files (needs Pillow, no TensorFlow, no network). Class indices
are the sorted folder names of ``train`` (a class seen only in val/test is an error). Images are
resized (bilinear, shorter side, then centre crop) to ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGB uint8: 64 px
keeps the 300k images at ~3.7 GB; change ``IMAGE_SIZE`` (and the builder VERSION) for more.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.images import open_image
from labelwise.data.registry import DatasetSpec, register_dataset

NUM_CLASSES = 1081
IMAGE_SIZE = 64
SPLIT_DIRS = {"train": "train", "validation": "val", "test": "test"}
_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def find_images_root(manual_dir: str) -> str:
  """The folder holding ``train/``: ``manual_dir``, ``manual_dir/images`` or
  ``manual_dir/plantnet_300K/images``."""
  for cand in (os.path.join(manual_dir, "plantnet_300K", "images"),
               os.path.join(manual_dir, "images"), manual_dir):
    if os.path.isdir(os.path.join(cand, "train")):
      return cand
  raise FileNotFoundError(
      f"no Pl@ntNet-style image folder found under {manual_dir!r}: expected "
      f"[plantnet_300K/]images/{{train,val,test}}/<class>/<image>.jpg there (see "
      f"labelwise/data/builders/plantnet.py).")


def list_split(root: str, split_dir: str, classes: List[str]) -> List[Tuple[str, int]]:
  """Sorted ``(path, class index)`` pairs of one split folder."""
  index = {c: i for i, c in enumerate(classes)}
  folder = os.path.join(root, split_dir)
  out = []
  for cls in sorted(os.listdir(folder)):
    if not os.path.isdir(os.path.join(folder, cls)):
      continue
    if cls not in index:
      raise ValueError(f"class folder {cls!r} of split {split_dir!r} is not a class of train.")
    for name in sorted(os.listdir(os.path.join(folder, cls))):
      if name.lower().endswith(_EXTENSIONS):
        out.append((os.path.join(folder, cls, name), index[cls]))
  return out


def load_image(path: str, size: int = IMAGE_SIZE) -> np.ndarray:
  """RGB uint8 ``[size, size, 3]``: shorter side resized to ``size``, then centre crop."""
  from PIL import Image
  with open_image(path) as im:
    im = im.convert("RGB")
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)


class Plantnet300k(tfds.core.GeneratorBasedBuilder):
  """Pl@ntNet-300K image-folder layout (manual download), 1081 classes, 64x64 RGB."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    root = find_images_root(manual)
    classes = sorted(d for d in os.listdir(os.path.join(root, "train"))
                     if os.path.isdir(os.path.join(root, "train", d)))
    if not 1 <= len(classes) <= NUM_CLASSES:
      raise ValueError(f"expected 1..{NUM_CLASSES} class folders in {root}/train, "
                       f"got {len(classes)}.")
    splits: Dict[str, object] = {}
    for name, folder in SPLIT_DIRS.items():
      if os.path.isdir(os.path.join(root, folder)):
        splits[name] = self._generate_examples(list_split(root, folder, classes))
    return splits

  def _generate_examples(self, items):
    for i, (path, label) in enumerate(items):
      yield i, {"image": load_image(path), "label": int(label)}


register_dataset(DatasetSpec(
    name="plantnet300k", tfds_name="plantnet300k", num_classes=NUM_CLASSES, input_key="image",
    splits=tuple(SPLIT_DIRS), builder=Plantnet300k,
    preprocess=lambda x: (np.asarray(x, np.float32) / 255.0 - _MEAN) / _STD, image=True,
    description="Pl@ntNet-300K image-folder layout (manual download), 1081 species, 64x64"))
