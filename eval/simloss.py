"""Ordinal and superclass metrics of the SimLoss study (Kobs et al., ISMIS 2020), and their evaluators.

Metrics are plain array functions (numpy or jax arrays in). Predictions are the argmax class index.

* ``ordinal_absolute_error`` / ``ordinal_squared_error``: per example ``|pred - y|`` / ``(pred - y)^2``
  (the paper's MAE / MSE of the predicted class index, e.g. age in years).
* ``failure_severity``: mean ``|pred - y|`` over the misclassified examples only.
* ``superclass_correct``: per example, 1 when prediction and label share a superclass (the paper's
  "superclass accuracy" is its mean); ``failed_superclass_accuracy``: the same mean over
  misclassified examples only.
* ``num_predicted_classes``: how many distinct classes the model predicts at all (SimLoss with an
  ordinal matrix tends to avoid the edge classes).

Evaluators: ``ordinal`` (MAE, MSE, failure severity, distinct predictions) and ``superclass``
(superclass accuracy, failed superclass accuracy), on ``config.data.eval_split``. The superclass map
comes from the run's dataset (``data.coarse``, or the dataset's own map) or from the method.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from jax.typing import ArrayLike

from labelwise.eval.context import EvalContext


def _pred(logits) -> np.ndarray:
  return np.argmax(np.asarray(logits), axis=-1)


def _where(where, n) -> np.ndarray:
  return np.ones(n, bool) if where is None else np.asarray(where, bool)


def _check_inputs(logits, labels):
  from labelwise.eval.metrics import _check_logits_labels  # shapes, dtypes, finite, label range
  _check_logits_labels(logits, labels)


def ordinal_absolute_error(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
  """Per-example ``|argmax(logits) - label|`` ``[batch]`` (float32), in class-index units."""
  _check_inputs(logits, labels)
  return np.abs(_pred(logits) - np.asarray(labels)).astype(np.float32)


def ordinal_squared_error(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
  """Per-example ``(argmax(logits) - label)^2`` ``[batch]`` (float32)."""
  _check_inputs(logits, labels)
  return ((_pred(logits) - np.asarray(labels)) ** 2).astype(np.float32)


def failure_severity(logits: ArrayLike, labels: ArrayLike, *,
                     where: Optional[ArrayLike] = None) -> float:
  """Mean ``|pred - y|`` over the misclassified examples (NaN when there is none)."""
  err = ordinal_absolute_error(logits, labels)
  wrong = (err > 0) & _where(where, len(err))
  return float(err[wrong].mean()) if wrong.any() else float("nan")


def superclass_correct(logits: ArrayLike, labels: ArrayLike,
                       fine_to_coarse: ArrayLike) -> np.ndarray:
  """Per-example 1.0 when ``coarse(pred) == coarse(label)`` ``[batch]`` (float32)."""
  _check_inputs(logits, labels)
  f2c = np.asarray(fine_to_coarse)
  if f2c.shape != np.shape(logits)[-1:]:
    raise ValueError(f"`fine_to_coarse` must have one superclass id per class, shape "
                     f"{np.shape(logits)[-1:]}, got {f2c.shape}.")
  return (f2c[_pred(logits)] == f2c[np.asarray(labels)]).astype(np.float32)


def superclass_accuracy(logits: ArrayLike, labels: ArrayLike, fine_to_coarse: ArrayLike, *,
                        where: Optional[ArrayLike] = None) -> float:
  """Fraction of examples whose prediction lies in the label's superclass."""
  ok = superclass_correct(logits, labels, fine_to_coarse)
  keep = _where(where, len(ok))
  return float(ok[keep].mean()) if keep.any() else float("nan")


def failed_superclass_accuracy(logits: ArrayLike, labels: ArrayLike, fine_to_coarse: ArrayLike, *,
                               where: Optional[ArrayLike] = None) -> float:
  """Superclass accuracy over the misclassified examples only (NaN when there is none)."""
  ok = superclass_correct(logits, labels, fine_to_coarse)
  wrong = (_pred(logits) != np.asarray(labels)) & _where(where, len(ok))
  return float(ok[wrong].mean()) if wrong.any() else float("nan")


def num_predicted_classes(logits: ArrayLike, *, where: Optional[ArrayLike] = None) -> int:
  """Number of distinct argmax classes over the (kept) examples."""
  pred = _pred(logits)
  return int(np.unique(pred[_where(where, len(pred))]).size)


def ordinal_metrics(logits: ArrayLike, labels: ArrayLike) -> Dict[str, float]:
  """``{mae, mse, failure_severity, num_predicted_classes}`` over all examples."""
  return {"mae": float(np.mean(ordinal_absolute_error(logits, labels))),
          "mse": float(np.mean(ordinal_squared_error(logits, labels))),
          "failure_severity": failure_severity(logits, labels),
          "num_predicted_classes": float(num_predicted_classes(logits))}


def superclass_metrics(logits: ArrayLike, labels: ArrayLike,
                       fine_to_coarse: ArrayLike) -> Dict[str, float]:
  """``{superclass_accuracy, failed_superclass_accuracy}`` over all examples."""
  return {"superclass_accuracy": superclass_accuracy(logits, labels, fine_to_coarse),
          "failed_superclass_accuracy": failed_superclass_accuracy(logits, labels, fine_to_coarse)}


def _fine_to_coarse(ctx: EvalContext) -> Optional[np.ndarray]:
  f2c = getattr(ctx.dataset, "coarse_map", None)
  if f2c is None:
    f2c = getattr(ctx.method, "fine_to_coarse", None)
  if f2c is None and getattr(ctx.dataset, "spec", None) is not None:
    f2c = ctx.dataset.spec.fine_to_coarse
  return None if f2c is None else np.asarray(f2c)


def _fine_labels(p: Dict[str, np.ndarray]) -> np.ndarray:
  # Training on coarse labels keeps the fine one as `fine_label`; these metrics are on fine classes.
  return p["fine_label"] if "fine_label" in p else p["label"]


def ordinal(ctx: EvalContext) -> Dict[str, float]:
  """MAE / MSE of the predicted class index, failure severity, number of distinct predictions."""
  p = ctx.predictions()
  return ordinal_metrics(p["logits"], _fine_labels(p))


def superclass(ctx: EvalContext) -> Dict[str, float]:
  """Superclass accuracy and failed superclass accuracy (needs a fine-to-coarse map)."""
  f2c = _fine_to_coarse(ctx)
  if f2c is None:
    raise ValueError("the `superclass` evaluator needs a fine-to-coarse map: set `data.coarse` "
                     "(e.g. 'dataset') or use a dataset that has one.")
  p = ctx.predictions()
  return superclass_metrics(p["logits"], _fine_labels(p), f2c)
