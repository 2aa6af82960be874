"""Synthetic "ambiguous Gaussians": 12 long-tailed classes in 4 tight groups, with the true posterior.

The offline study of the average-K method sheet (Garcin et al., arXiv:2303.18118, reconstructed):

- L = 12 classes, d = 8 features, unit-covariance Gaussian classes ``x | c ~ N(mu_c, I)``.
- 4 groups of 3 classes. Group centres ``g e_g * 4 / sqrt(2)`` (pairwise distance 4); inside a group
  the 3 means sit on an equilateral triangle of side 0.7 in features 4-5 (distance 0.7), so classes of
  one group are highly ambiguous and groups are fairly well separated.
- Long-tailed priors ``pi_c ~ c^-1.2`` (c = 1..12, the last classes are the tail).
- The label is sampled from the true posterior ``eta(x) = softmax_c(log pi_c - |x - mu_c|^2 / 2)``
  (equivalently: class first, then x); ``posterior`` [12] float32 is stored with every example, so
  the oracle average-K classifier (a threshold on eta) is computable.

Splits: ``train`` 32,000 (the study uses ``train[:1000]``, ``train[:4000]``, ``train``),
``validation`` 10,000 (threshold calibration), ``test`` 50,000. Each split has its own fixed numpy
seed: the data are identical on every machine. :func:`generate` exposes the generator.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.registry import DatasetSpec, register_dataset

NUM_CLASSES = 12
DIM = 8
NUM_GROUPS = 4
GROUP_DISTANCE = 4.0
WITHIN_DISTANCE = 0.7
PRIOR_EXPONENT = 1.2

SPLITS: Dict[str, dict] = {
    "train": dict(n=32_000, seed=101),
    "validation": dict(n=10_000, seed=102),
    "test": dict(n=50_000, seed=103),
}


def class_means() -> np.ndarray:
  """``[12, 8]`` class means: 4 groups at pairwise distance 4, triangles of side 0.7 inside."""
  means = np.zeros((NUM_CLASSES, DIM), np.float64)
  radius = WITHIN_DISTANCE / np.sqrt(3.0)  # circumradius of an equilateral triangle
  for c in range(NUM_CLASSES):
    g, j = divmod(c, 3)
    means[c, g] = GROUP_DISTANCE / np.sqrt(2.0)
    angle = 2.0 * np.pi * j / 3.0
    means[c, 4] = radius * np.cos(angle)
    means[c, 5] = radius * np.sin(angle)
  return means


def class_priors() -> np.ndarray:
  """``pi_c ~ c^-1.2``, c = 1..12, normalised."""
  p = np.arange(1, NUM_CLASSES + 1, dtype=np.float64) ** -PRIOR_EXPONENT
  return p / p.sum()


def posterior(x: np.ndarray) -> np.ndarray:
  """True ``eta(x)`` ``[n, 12]`` (float64) in closed form."""
  x = np.asarray(x, np.float64)
  means, priors = class_means(), class_priors()
  logits = np.log(priors)[None] - 0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
  logits -= logits.max(-1, keepdims=True)
  e = np.exp(logits)
  return e / e.sum(-1, keepdims=True)


def generate(n: int, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``features`` float32 [n, 8], ``labels`` int64 [n], ``posterior`` float32 [n, 12].

  Class ~ pi, x ~ N(mu_class, I); the stored label is that class, which is distributed as eta(x).
  """
  rng = np.random.RandomState(seed)
  labels = rng.choice(NUM_CLASSES, size=n, p=class_priors())
  x = class_means()[labels] + rng.normal(size=(n, DIM))
  return x.astype(np.float32), labels.astype(np.int64), posterior(x).astype(np.float32)


class AmbiguousGaussians(tfds.core.GeneratorBasedBuilder):
  """12 long-tailed Gaussian classes in 4 ambiguous groups, labels from the stored true posterior."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "features": tfds.features.Tensor(shape=(DIM,), dtype=np.float32),
            "posterior": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("features", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(**kw) for name, kw in SPLITS.items()}

  def _generate_examples(self, n, seed):
    x, y, eta = generate(n, seed)
    for i in range(n):
      yield i, {"features": x[i], "posterior": eta[i], "label": int(y[i])}


register_dataset(DatasetSpec(
    name="ambiguous_gaussians", tfds_name="ambiguous_gaussians", num_classes=NUM_CLASSES,
    input_key="features", fields=("posterior",), splits=tuple(SPLITS),
    builder=AmbiguousGaussians, preprocess=lambda x: np.asarray(x, np.float32), image=False,
    description="12 long-tailed Gaussian classes in 4 ambiguous groups with the true posterior "
                "(average-K study), 32k train / 10k validation / 50k test, offline"))
