"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), as a TFDS builder."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.registry import DatasetSpec, register_dataset

_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
  """Deterministic stratified split: the same ``test_fraction`` of every class goes to test."""
  rng = np.random.RandomState(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    rng.shuffle(idx)
    n_test = int(round(test_fraction * len(idx)))
    test.extend(idx[:n_test])
    train.extend(idx[n_test:])
  return np.sort(np.array(train)), np.sort(np.array(test))


class Digits(tfds.core.GeneratorBasedBuilder):
  """sklearn.datasets.load_digits: 8x8x1 float32 images in [0, 16], a fixed stratified 80/20 split."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="scikit-learn digits (UCI optical recognition of handwritten digits)",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no network
    d = load_digits()
    images = d.images.astype(np.float32)[..., None]
    labels = d.target.astype(np.int64)
    train, test = stratified_split(labels, _TEST_FRACTION, _SPLIT_SEED)
    return {"train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test)}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}


register_dataset(DatasetSpec(
    name="digits", tfds_name="digits", num_classes=10, input_key="image",
    builder=Digits, preprocess=lambda x: np.asarray(x, np.float32) / 16.0, image=True,
    description="scikit-learn 8x8 digits, 1437 train / 360 test, offline"))
