"""Clustering metrics and evaluators: accuracy under the best cluster-to-class matching, NMI, ARI,
and a k-means baseline on the same inputs.

Plain host-side functions of label arrays (numpy, scipy's Hungarian matching, scikit-learn's NMI and ARI) (usable outside the trainer), plus two evaluators:

* ``clustering``: clusters = argmax of the model's logits on the eval split; ``cluster_accuracy``,
  ``nmi``, ``ari``, the number of non-empty clusters and the entropy of the cluster sizes.
* ``kmeans_baseline``: k-means (scikit-learn, ``k = num classes``, ``n_init=10``) on the flattened
  raw inputs of the eval split, the same three metrics with a ``kmeans_`` prefix.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from jax.typing import ArrayLike
import scipy.stats
import sklearn.metrics
from scipy.optimize import linear_sum_assignment

from labelwise.eval.context import EvalContext


def _as_labels(x, name: str) -> np.ndarray:
  a = np.asarray(x)
  if a.ndim != 1:
    raise ValueError(f"`{name}` must be a 1-D array of integer ids [n], got shape {a.shape}.")
  if not np.issubdtype(a.dtype, np.integer):
    raise TypeError(f"`{name}` must hold integer ids, got dtype {a.dtype}.")
  if a.size and a.min() < 0:
    raise ValueError(f"`{name}` must hold ids >= 0, got a minimum of {a.min()}.")
  return a.astype(np.int64)


def _as_pair(labels, clusters):
  labels = _as_labels(labels, "labels")
  clusters = _as_labels(clusters, "clusters")
  if labels.shape != clusters.shape:
    raise ValueError(f"`labels` and `clusters` must have the same shape, got {labels.shape} and "
                     f"{clusters.shape}.")
  return labels, clusters


def contingency_matrix(labels: ArrayLike, clusters: ArrayLike) -> np.ndarray:
  """``C[c, k]`` = number of examples of class ``c`` in cluster ``k`` (int64), indexed by the ids
  themselves (so that a column is cluster ``k``, as :func:`cluster_to_class_map` needs)."""
  labels, clusters = _as_pair(labels, clusters)
  n_c = int(labels.max()) + 1 if labels.size else 0
  n_k = int(clusters.max()) + 1 if clusters.size else 0
  table = np.zeros((n_c, n_k), np.int64)
  np.add.at(table, (labels, clusters), 1)
  return table


def cluster_to_class_map(labels: ArrayLike, clusters: ArrayLike, *,
                         many_to_one: Optional[bool] = None) -> np.ndarray:
  """The cluster -> class map that maximizes the number of correctly "classified" examples.

  One-to-one (Hungarian matching, ``scipy.optimize.linear_sum_assignment``) when there are at most
  as many clusters as classes; many-to-one (each cluster to its majority class) when there are
  more clusters, or when ``many_to_one=True``. Unmatched clusters map to -1.
  """
  table = contingency_matrix(labels, clusters)
  n_c, n_k = table.shape
  if many_to_one is None:
    many_to_one = n_k > n_c
  mapping = np.full(n_k, -1, np.int64)
  if n_k == 0:
    return mapping
  if many_to_one:
    mapping[:] = table.argmax(axis=0)
    mapping[table.sum(0) == 0] = -1
    return mapping
  rows, cols = linear_sum_assignment(table, maximize=True)
  mapping[cols] = rows
  return mapping


def clustering_accuracy(labels: ArrayLike, clusters: ArrayLike, *,
                        many_to_one: Optional[bool] = None) -> float:
  """Fraction of examples whose cluster maps to their class under the best matching.

  ``max_m (1/n) sum_i [m(cluster_i) = label_i]`` over one-to-one maps ``m`` (Hungarian), or
  many-to-one maps when there are more clusters than classes (see :func:`cluster_to_class_map`).

  Example:
    >>> clustering_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
  """
  labels = _as_labels(labels, "labels")
  if labels.size == 0:
    return float("nan")
  mapping = cluster_to_class_map(labels, clusters, many_to_one=many_to_one)
  return float(np.mean(mapping[_as_labels(clusters, "clusters")] == labels))


def normalized_mutual_information(labels: ArrayLike, clusters: ArrayLike) -> float:
  """NMI with the arithmetic-mean normalization, ``I(L; K) / ((H(L) + H(K)) / 2)``
  (``sklearn.metrics.normalized_mutual_info_score``). 1 for identical partitions up to renaming;
  1 when both partitions have a single block; NaN for no examples.

  Example:
    >>> normalized_mutual_information([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
  """
  labels, clusters = _as_pair(labels, clusters)
  if labels.size == 0:
    return float("nan")
  return float(sklearn.metrics.normalized_mutual_info_score(labels, clusters))


def adjusted_rand_index(labels: ArrayLike, clusters: ArrayLike) -> float:
  """Adjusted Rand index (Hubert & Arabie 1985; ``sklearn.metrics.adjusted_rand_score``): 1 for
  identical partitions, ~0 for random ones.

  Example:
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
  """
  labels, clusters = _as_pair(labels, clusters)
  return float(sklearn.metrics.adjusted_rand_score(labels, clusters))


def clustering_metrics(labels: ArrayLike, clusters: ArrayLike,
                       prefix: str = "") -> Dict[str, float]:
  """``{prefix+"cluster_accuracy", prefix+"nmi", prefix+"ari"}``."""
  return {f"{prefix}cluster_accuracy": clustering_accuracy(labels, clusters),
          f"{prefix}nmi": normalized_mutual_information(labels, clusters),
          f"{prefix}ari": adjusted_rand_index(labels, clusters)}


def kmeans_clusters(inputs: ArrayLike, num_clusters: int, *, seed: int = 0,
                    n_init: int = 10) -> np.ndarray:
  """k-means (scikit-learn) cluster ids of the flattened ``inputs`` ``[n, ...]``."""
  from sklearn.cluster import KMeans
  x = np.asarray(inputs, np.float64).reshape(len(inputs), -1)
  return KMeans(n_clusters=int(num_clusters), n_init=n_init, random_state=seed).fit_predict(x)


def clustering_evaluator(ctx: EvalContext) -> Dict[str, float]:
  """Cluster = argmax logits on the eval split; accuracy (Hungarian), NMI, ARI vs ``label``."""
  p = ctx.predictions()
  clusters = np.asarray(p["logits"]).argmax(-1)
  labels = np.asarray(p["label"])
  out = clustering_metrics(labels, clusters)
  sizes = np.bincount(clusters, minlength=np.asarray(p["logits"]).shape[-1])
  out["num_nonempty_clusters"] = float(np.sum(sizes > 0))
  out["cluster_size_entropy"] = float(scipy.stats.entropy(sizes)) if sizes.sum() else 0.0  # nats
  out["num_examples"] = float(len(labels))
  return out


def kmeans_evaluator(ctx: EvalContext) -> Dict[str, float]:
  """k-means on the raw (flattened, preprocessed) inputs of the eval split, k = number of classes."""
  split = ctx.dataset.split(ctx.eval_split).all()
  labels = np.asarray(split["label"])
  k = int(np.asarray(ctx.predictions()["logits"]).shape[-1])
  clusters = kmeans_clusters(split["input"], k, seed=int(ctx.config.get("seed", 0)))
  return clustering_metrics(labels, clusters, prefix="kmeans_")
