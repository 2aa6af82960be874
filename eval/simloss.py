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
* ``mistake_heights`` / ``mistake_severity``: in a class tree given by fine-to-coarse maps (finest
  grouping first), the height of the lowest common ancestor of prediction and label (0 when
  correct, 1 inside the finest group, ..., ``len(levels) + 1`` when only the root is shared); the
  severity is its mean over the mistakes ("Making Better Mistakes", Bertinetto et al., CVPR 2020).
* ``confusion_matrix``: counts ``[C, C]``, rows the label, columns the prediction.

Evaluators: ``ordinal`` (MAE, MSE, failure severity, distinct predictions), ``superclass``
(superclass accuracy, failed superclass accuracy), ``hierarchy`` (mistake severity in the tree of
``config.hierarchy_eval.levels``) and ``confusion`` (writes the confusion matrix of the split as
``confusion_<split>.json`` into the run's folder), on ``config.data.eval_split``. The superclass map
comes from the run's dataset (``data.coarse``, or the dataset's own map) or from the method.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

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


def check_hierarchy(levels: Sequence[ArrayLike], num_classes: int) -> list:
  """``levels`` (fine-to-coarse maps, finest grouping first) as int arrays; a ``ValueError`` unless
  each is ``[num_classes]`` of ints >= 0 and each grouping refines the next (a tree)."""
  out = []
  for k, m in enumerate(levels):
    m = np.asarray(m)
    if m.shape != (num_classes,) or not np.issubdtype(m.dtype, np.integer) or m.min() < 0:
      raise ValueError(f"`levels[{k}]` must map each of the {num_classes} classes to a group "
                       f"index >= 0 (ints, shape ({num_classes},)), got {m.tolist()}.")
    out.append(m.astype(np.int64))
  for k in range(len(out) - 1):
    fine, coarse = out[k], out[k + 1]
    for g in np.unique(fine):
      parents = np.unique(coarse[fine == g])
      if len(parents) > 1:
        raise ValueError(f"`levels` is not a tree: group {int(g)} of levels[{k}] lies in groups "
                         f"{parents.tolist()} of levels[{k + 1}]; each grouping must refine the "
                         "next (finest first).")
  return out


def mistake_heights(logits: ArrayLike, labels: ArrayLike,
                    levels: Sequence[ArrayLike]) -> np.ndarray:
  """Per-example height of the lowest common ancestor of prediction and label ``[batch]``.

  ``h = [pred != y] + sum_k [levels[k][pred] != levels[k][y]]``: 0 when correct, 1 when the
  prediction is in the label's finest group, ..., ``len(levels) + 1`` when only the root is shared.

  >>> import numpy as np
  >>> logits = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
  >>> mistake_heights(logits, np.array([0, 0, 0, 0]), [[0, 0, 1, 2], [0, 0, 0, 1]]).tolist()
  [0.0, 1.0, 2.0, 3.0]
  """
  _check_inputs(logits, labels)
  maps = check_hierarchy(levels, np.shape(logits)[-1])
  pred, y = _pred(logits), np.asarray(labels)
  h = (pred != y).astype(np.float32)
  for m in maps:
    h += (m[pred] != m[y]).astype(np.float32)
  return h


def mistake_severity(logits: ArrayLike, labels: ArrayLike, levels: Sequence[ArrayLike], *,
                     where: Optional[ArrayLike] = None) -> float:
  """Mean :func:`mistake_heights` over the misclassified (kept) examples (NaN when there is none)."""
  h = mistake_heights(logits, labels, levels)
  wrong = (h > 0) & _where(where, len(h))
  return float(h[wrong].mean()) if wrong.any() else float("nan")


def confusion_matrix(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
  """Counts ``[C, C]`` (int64): entry ``[i, j]`` = examples of label ``i`` predicted as ``j``."""
  _check_inputs(logits, labels)
  c = np.shape(logits)[-1]
  return np.bincount(np.asarray(labels) * c + _pred(logits), minlength=c * c).reshape(c, c)


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


def _levels(ctx: EvalContext) -> list:
  names = tuple((ctx.config.get("hierarchy_eval") or {}).get("levels", ()) or ())
  if not names:
    f2c = _fine_to_coarse(ctx)
    if f2c is None:
      raise ValueError("the `hierarchy` evaluator needs a class tree: set "
                       "`hierarchy_eval.levels` (coarse-map names of the dataset, finest first, "
                       "e.g. ('hcnn6', 'clothes_goods')) or `data.coarse`.")
    return [f2c]
  from labelwise.data.registry import fine_to_coarse_map
  return [fine_to_coarse_map(ctx.dataset.spec, name) for name in names]


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


def hierarchy(ctx: EvalContext) -> Dict[str, float]:
  """Mistake severity (mean LCA height over the mistakes) in the tree of ``hierarchy_eval.levels``
  (default: the run's fine-to-coarse map only, so the severity is 1 + the share of mistakes that
  leave the superclass)."""
  p = ctx.predictions()
  return {"mistake_severity": mistake_severity(p["logits"], _fine_labels(p), _levels(ctx))}


def confusion(ctx: EvalContext) -> Dict[str, float]:
  """The confusion matrix of the split, written as ``confusion_<split>.json`` (``{"split",
  "matrix"}``, rows the label) into the run's folder when it has one; returns the number of
  distinct predicted classes."""
  import json
  import os
  import re
  p = ctx.predictions()
  m = confusion_matrix(p["logits"], _fine_labels(p))
  if ctx.workdir:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", ctx.eval_split)
    with open(os.path.join(ctx.workdir, f"confusion_{name}.json"), "w") as f:
      json.dump({"split": ctx.eval_split, "matrix": m.tolist()}, f)
  return {"num_predicted_classes": float(np.count_nonzero(m.sum(0)))}
