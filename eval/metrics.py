"""Metric functions of arrays, usable outside the trainer (numpy or jax arrays in, per-example or
scalar out). Topic modules add theirs below with one re-export line each.

Host-side metrics use the libraries of the ``train`` extra: NMI and ARI are scikit-learn's
(``normalized_mutual_info_score``, ``adjusted_rand_score``), ROC AUC is ``roc_auc_score``, ranks and
Spearman correlations are scipy's (``rankdata``, ``spearmanr``), the cluster matching is scipy's
``linear_sum_assignment``. Our own code is kept only where it runs on the device: the per-example
metrics here (``accuracy``, ``top_k_accuracy``, ``cross_entropy``: jax, usable inside ``jit``),
k-NN over features (``knn_predict``: chunked top-k on the device, the features never leave it),
and input-gradient saliency and integrated gradients (model gradients). The rest (average-K sets,
ordinal and superclass errors, ridge probes) has no library equivalent and is plain numpy.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def _check_logits_labels(logits, labels):
  """Shapes and dtypes always (trace time); label range when concrete. Non-finite logits are not an
  error here: a diverged model's metrics are data (NaN loss), and the trainer stops on a NaN loss."""
  from labelwise.losses import _checks, host_checks
  shape = _checks.shape_of(logits)
  if len(shape) < 1:
    raise ValueError(f"`logits` must have a class axis [..., num_classes], got shape {shape}.")
  _checks.check_nonempty(logits, "logits")
  _checks.check_floating(logits, "logits")
  _checks.check_integer(labels, "labels")
  _checks.check_shape(labels, shape[:-1], "labels")
  if not isinstance(labels, jax.core.Tracer):
    host_checks.check_labels_in_range(labels, shape[-1], "labels")


def accuracy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Per-example top-1 correctness ``[...]`` of logits ``[..., C]`` (float32 0/1)."""
  _check_logits_labels(logits, labels)
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def top_k_accuracy(logits: ArrayLike, labels: ArrayLike, *, k: int) -> jax.Array:
  """Per-example top-k correctness ``[...]`` (logits ``[..., C]``): the label is among the ``k``
  largest logits.

  Ties are broken towards the label (a label tied with the k-th score counts as inside), matching
  ``rank = #(scores > score[label]) < k``.
  """
  _check_logits_labels(logits, labels)
  logits = jnp.asarray(logits)
  if not 1 <= k <= logits.shape[-1]:
    raise ValueError(f"`k` must be in [1, {logits.shape[-1]}], got {k}.")
  true = jnp.take_along_axis(logits, jnp.asarray(labels)[..., None], axis=-1)
  rank = jnp.sum(logits > true, axis=-1)
  return (rank < k).astype(jnp.float32)


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Per-example softmax cross-entropy ``[...]`` of logits ``[..., C]`` and integer labels ``[...]``."""
  _check_logits_labels(logits, labels)
  logp = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp, jnp.asarray(labels)[..., None], axis=-1)[..., 0]


def masked_mean(values: ArrayLike, where: Optional[ArrayLike] = None) -> float:
  """Mean of ``values`` over entries where ``where`` is nonzero (all when None)."""
  values = np.asarray(values, np.float64)
  if where is None:
    return float(values.mean()) if values.size else float("nan")
  w = np.asarray(where, np.float64)
  if w.shape != values.shape:
    raise ValueError(f"`where` must have the shape of `values` {values.shape}, got {w.shape}.")
  return float((values * w).sum() / max(w.sum(), 1.0))


# Topic metrics (one line each):
from labelwise.eval.saliency import input_gradient_saliency, integrated_gradients, integrated_gradients_saliency, gaussian_blur, topk_mask, saliency_overlap, roc_auc, multiclass_auc, save_saliency_grid  # noqa: E402,F401,E501
from labelwise.eval.average_k import average_k_threshold, average_k_accuracy, average_k_set_size, average_k_sets, average_k_correct, expected_average_k_accuracy, top_k_set_accuracy  # noqa: E402,F401,E501
from labelwise.eval.clustering import clustering_accuracy, normalized_mutual_information, adjusted_rand_index, contingency_matrix, cluster_to_class_map, clustering_metrics, kmeans_clusters  # noqa: E402,F401,E501
from labelwise.eval.simloss import ordinal_absolute_error, ordinal_squared_error, failure_severity, superclass_correct, superclass_accuracy, failed_superclass_accuracy, num_predicted_classes, ordinal_metrics, superclass_metrics, mistake_heights, mistake_severity, confusion_matrix  # noqa: E402,F401,E501
from labelwise.eval.fine_grain import knn_accuracy, knn_predict, linear_probe_accuracy, ridge_probe, spearman, within_group_spearman, rankdata, fine_grain_metrics  # noqa: E402,F401,E501
