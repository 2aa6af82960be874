"""Ordinal datasets of the SimLoss study (Kobs et al., ISMIS 2020) as TFDS builders.

``diabetes_ordinal`` (offline): scikit-learn's bundled diabetes data (442 patients, 10 features) with
the disease-progression target cut into 10 quantile bins (class 0 = lowest decile). Features are
standardised with the statistics of all 442 rows (only a mean and a scale per feature). Splits:
``train`` / ``test`` a fixed 80/20 split stratified by bin; ``cv`` every row in one fixed random
order, so that the contiguous TFDS slices ``cv[0%:20%]`` ... ``cv[80%:100%]`` are random folds.

``age_folder`` (the paper's UTKFace / AFAD layout, bring your own images): ``<root>/<age>/*.jpg``
(also .jpeg/.png), ages 1-90 become classes 0-89 (other ages are skipped), images are converted to
RGB and resized to 60x60 (uint8, scaled to [0, 1] when read). ``<root>`` is ``$LABELWISE_AGE_FOLDER``
or, when unset, the TFDS manual dir (``<data_dir>/downloads/manual``). Splits ``train`` /
``validation`` / ``test`` are a fixed 80/10/10 random split of the sorted file list. TFDS caches the
prepared data in ``<data_dir>/age_folder``: use a separate ``data.data_dir`` per image collection.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.images import open_image
from labelwise.data.registry import DatasetSpec, register_dataset

# ---------------------------------------------------------------------------------- diabetes
DIABETES_BINS = 10
DIABETES_FEATURES = 10
_DIABETES_SEED = 0
_DIABETES_TEST_FRACTION = 0.2


def diabetes_arrays() -> Tuple[np.ndarray, np.ndarray]:
  """``features`` float32 [442, 10] (standardised) and ``labels`` int64 [442] in ``0..9``."""
  from sklearn.datasets import load_diabetes  # bundled with scikit-learn: no network
  d = load_diabetes()
  x = np.asarray(d.data, np.float64)
  x = (x - x.mean(0)) / x.std(0)
  target = np.asarray(d.target, np.float64)
  edges = np.quantile(target, np.linspace(0.0, 1.0, DIABETES_BINS + 1)[1:-1])
  labels = np.searchsorted(edges, target, side="right")
  return x.astype(np.float32), labels.astype(np.int64)


def _diabetes_splits(labels: np.ndarray) -> Dict[str, np.ndarray]:
  rng = np.random.RandomState(_DIABETES_SEED)
  train, test = [], []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    rng.shuffle(idx)
    n_test = int(round(_DIABETES_TEST_FRACTION * len(idx)))
    test.extend(idx[:n_test])
    train.extend(idx[n_test:])
  return {"train": np.sort(train), "test": np.sort(test),
          "cv": np.random.RandomState(_DIABETES_SEED + 1).permutation(len(labels))}


class DiabetesOrdinal(tfds.core.GeneratorBasedBuilder):
  """scikit-learn diabetes, target in 10 quantile bins (ordinal classes), offline."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="scikit-learn diabetes; disease progression in 10 quantile bins",
        features=tfds.features.FeaturesDict({
            "features": tfds.features.Tensor(shape=(DIABETES_FEATURES,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=DIABETES_BINS),
        }),
        supervised_keys=("features", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    x, y = diabetes_arrays()
    return {name: self._generate_examples(x, y, idx)
            for name, idx in _diabetes_splits(y).items()}

  def _generate_examples(self, x, y, indices):
    for k, i in enumerate(indices):
      yield k, {"features": x[i], "label": int(y[i])}


register_dataset(DatasetSpec(
    name="diabetes_ordinal", tfds_name="diabetes_ordinal", num_classes=DIABETES_BINS,
    input_key="features", splits=("train", "test", "cv"), builder=DiabetesOrdinal,
    preprocess=lambda x: np.asarray(x, np.float32), image=False,
    description="scikit-learn diabetes target in 10 quantile bins (ordinal), 352 train / 90 test, "
                "`cv` for cross-validation folds, offline"))

# ---------------------------------------------------------------------------------- age folder
AGE_MIN, AGE_MAX = 1, 90
AGE_IMAGE_SIZE = 60
AGE_FOLDER_ENV = "LABELWISE_AGE_FOLDER"
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_AGE_SPLIT_SEED = 0
_AGE_FRACTIONS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))


def list_age_folder(root: str) -> List[Tuple[str, int]]:
  """Sorted ``(path, class)`` pairs of ``<root>/<age>/*.{jpg,jpeg,png}`` with ages in 1..90."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"age image folder {root!r} does not exist (expected <root>/<age>/*.jpg; "
                            f"set ${AGE_FOLDER_ENV}).")
  items = []
  for name in sorted(os.listdir(root)):
    if not name.isdigit() or not AGE_MIN <= int(name) <= AGE_MAX:
      continue
    folder = os.path.join(root, name)
    for f in sorted(os.listdir(folder)):
      if f.lower().endswith(_IMAGE_EXTENSIONS):
        items.append((os.path.join(folder, f), int(name) - AGE_MIN))
  if not items:
    raise ValueError(f"no images found under {root!r} (expected <root>/<age>/*.jpg, ages "
                     f"{AGE_MIN}-{AGE_MAX}).")
  return items


def age_splits(n: int) -> Dict[str, np.ndarray]:
  perm = np.random.RandomState(_AGE_SPLIT_SEED).permutation(n)
  out, lo = {}, 0
  for i, (name, frac) in enumerate(_AGE_FRACTIONS):
    hi = n if i == len(_AGE_FRACTIONS) - 1 else lo + int(round(frac * n))
    out[name] = np.sort(perm[lo:hi])
    lo = hi
  return out


def load_age_image(path: str) -> np.ndarray:
  from PIL import Image
  with open_image(path) as im:
    im = im.convert("RGB").resize((AGE_IMAGE_SIZE, AGE_IMAGE_SIZE), Image.BILINEAR)
    return np.asarray(im, np.uint8)


class AgeFolder(tfds.core.GeneratorBasedBuilder):
  """Face images in ``<root>/<age>/*.jpg`` (UTKFace / AFAD layout), ages 1-90 as 90 classes, 60x60."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Put the images as <root>/<age>/*.jpg and set ${AGE_FOLDER_ENV}=<root> (or use the TFDS "
      f"manual dir as <root>).")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="age estimation from an image folder <root>/<age>/*.jpg, 90 classes",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(AGE_IMAGE_SIZE, AGE_IMAGE_SIZE, 3),
                                          dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=AGE_MAX - AGE_MIN + 1),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    root = os.environ.get(AGE_FOLDER_ENV) or str(dl_manager.manual_dir)
    items = list_age_folder(root)
    return {name: self._generate_examples(items, idx)
            for name, idx in age_splits(len(items)).items()}

  def _generate_examples(self, items, indices):
    for k, i in enumerate(indices):
      path, label = items[i]
      yield k, {"image": load_age_image(path), "label": label}


register_dataset(DatasetSpec(
    name="age_folder", tfds_name="age_folder", num_classes=AGE_MAX - AGE_MIN + 1,
    input_key="image", splits=tuple(n for n, _ in _AGE_FRACTIONS), builder=AgeFolder,
    preprocess=lambda x: np.asarray(x, np.float32) / 255.0, image=True,
    description="ages 1-90 from <root>/<age>/*.jpg (UTKFace/AFAD layout, $LABELWISE_AGE_FOLDER), "
                "60x60 RGB, 80/10/10 split"))
