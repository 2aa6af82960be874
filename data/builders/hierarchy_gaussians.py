"""Synthetic two-level hierarchy for the SimLoss study: 20 superclasses x 5 classes of Gaussians.

- 100 classes, d = 16 features, ``fine_to_coarse[c] = c // 5`` (20 superclasses of 5 classes).
- Superclass centres ``~ N(0, 1.5^2 I)``; class means = centre ``+ N(0, 0.7^2 I)``; an example is its
  class mean ``+ N(0, I)``. Classes of one superclass overlap, superclasses mostly do not, so most
  mistakes of a good classifier stay inside the superclass (a linear model trained on the train split
  gets about 0.78 accuracy and 0.84 failed-superclass accuracy).
- Few samples per class: ``train`` 10 per class (1,000), ``validation`` 20 per class (2,000),
  ``test`` 50 per class (5,000). Means come from a fixed seed, each split has its own seed: the data
  are identical on every machine. ``coarse_label`` is stored with every example.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.registry import DatasetSpec, register_dataset

NUM_SUPERCLASSES = 20
CLASSES_PER_SUPERCLASS = 5
NUM_CLASSES = NUM_SUPERCLASSES * CLASSES_PER_SUPERCLASS
DIM = 16
SUPERCLASS_SCALE = 1.5
CLASS_SCALE = 0.7
MEANS_SEED = 0
FINE_TO_COARSE = tuple(int(c) // CLASSES_PER_SUPERCLASS for c in range(NUM_CLASSES))

SPLITS: Dict[str, dict] = {
    "train": dict(per_class=10, seed=1),
    "validation": dict(per_class=20, seed=3),
    "test": dict(per_class=50, seed=2),
}


def class_means() -> np.ndarray:
  """``[100, 16]`` class means (float64), fixed."""
  rng = np.random.RandomState(MEANS_SEED)
  centres = rng.normal(size=(NUM_SUPERCLASSES, DIM)) * SUPERCLASS_SCALE
  return (np.repeat(centres, CLASSES_PER_SUPERCLASS, axis=0)
          + rng.normal(size=(NUM_CLASSES, DIM)) * CLASS_SCALE)


def generate(per_class: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
  """``features`` float32 ``[100 * per_class, 16]`` and ``labels`` int64, shuffled."""
  rng = np.random.RandomState(seed)
  labels = np.repeat(np.arange(NUM_CLASSES), per_class)
  rng.shuffle(labels)
  x = class_means()[labels] + rng.normal(size=(len(labels), DIM))
  return x.astype(np.float32), labels.astype(np.int64)


class HierarchyGaussians(tfds.core.GeneratorBasedBuilder):
  """100 Gaussian classes in 20 superclasses of 5, few samples per class (offline)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "features": tfds.features.Tensor(shape=(DIM,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            "coarse_label": tfds.features.ClassLabel(num_classes=NUM_SUPERCLASSES),
        }),
        supervised_keys=("features", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(**kw) for name, kw in SPLITS.items()}

  def _generate_examples(self, per_class, seed):
    x, y = generate(per_class, seed)
    for i in range(len(y)):
      yield i, {"features": x[i], "label": int(y[i]), "coarse_label": FINE_TO_COARSE[int(y[i])]}


register_dataset(DatasetSpec(
    name="hierarchy_gaussians", tfds_name="hierarchy_gaussians", num_classes=NUM_CLASSES,
    input_key="features", fields=("coarse_label",), splits=tuple(SPLITS),
    builder=HierarchyGaussians, preprocess=lambda x: np.asarray(x, np.float32),
    fine_to_coarse=FINE_TO_COARSE, image=False,
    description="synthetic 20 superclasses x 5 Gaussian classes, d=16, 10 train / 20 validation / "
                "50 test examples per class (SimLoss study), offline"))
