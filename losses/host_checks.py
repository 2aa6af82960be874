"""``validate(...)``: opt-in host-side checks of the *values* given to a loss.

Policy (see docs/reliability.md):

* Shapes, ranks, dtypes, empty batches and hyperparameters (``k``, ``lambda``, ``epsilon``, ...) are
  static: every loss checks them at trace time, for free, and raises ValueError/TypeError.
* Values (NaN/inf, labels outside ``[0, C)``, targets off the simplex, similarity matrices) are only
  known on the host. The losses do not check them: a check inside a jitted loss would need
  ``checkify`` or a host callback on every step. Call ``validate(...)`` on the host before the loss
  (in a data pipeline, a notebook, a test) to get a clear error instead of a NaN. In training the
  trainer's non-finite-loss guard (``config.nan_policy``) is the safety net, and the data pipeline
  checks labels once per dataset.
* Metric functions (``labelwise.eval.metrics``) run on the host and check values themselves whenever
  their inputs are concrete arrays (they skip it when traced, e.g. inside a training step).
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np
from jax.typing import ArrayLike


def _host(x, name: str) -> np.ndarray:
  if isinstance(x, jax.core.Tracer):
    raise TypeError(f"validate(): `{name}` is a traced value; validate() runs on the host, call it "
                    f"outside jax.jit/grad/vmap on concrete arrays.")
  return np.asarray(x)


def _index(idx) -> str:
  idx = tuple(int(i) for i in idx)
  return "[" + ", ".join(map(str, idx)) + "]"


def check_finite(x, name: str) -> None:
  """Host check: raises ValueError naming the first NaN/inf entry of a floating ``x`` and the count."""
  a = _host(x, name)
  if not np.issubdtype(a.dtype, np.floating) and a.dtype.name != "bfloat16":
    return
  bad = ~np.isfinite(a.astype(np.float32) if a.dtype.name == "bfloat16" else a)
  if bad.any():
    first = np.argwhere(bad)[0]
    raise ValueError(f"`{name}` must be finite, got {int(bad.sum())} NaN/inf entries of "
                     f"{a.size} (first: {name}{_index(first)} = {a[tuple(first)]}).")


def check_labels_in_range(labels, num_classes: int, name: str = "labels") -> None:
  """Host check: integer ``labels`` in ``[0, num_classes)``."""
  a = _host(labels, name)
  if not np.issubdtype(a.dtype, np.integer):
    raise TypeError(f"`{name}` must be an integer array of class indices, got dtype {a.dtype}.")
  bad = (a < 0) | (a >= num_classes)
  if bad.any():
    first = np.argwhere(bad)[0]
    raise ValueError(f"`{name}` must be class indices in [0, {num_classes}), got "
                     f"{name}{_index(first)} = {a[tuple(first)]} ({int(bad.sum())} out of range).")


def check_simplex(targets, name: str = "targets", *, atol: float = 1e-4) -> None:
  """Host check: finite, non-negative rows summing to 1 (within ``atol``) along the last axis."""
  check_finite(targets, name)
  a = _host(targets, name).astype(np.float64)
  if a.ndim == 0:
    raise ValueError(f"`{name}` must have a class axis, got a scalar.")
  neg = a < -atol
  if neg.any():
    first = np.argwhere(neg)[0]
    raise ValueError(f"`{name}` must be non-negative probabilities, got "
                     f"{name}{_index(first)} = {a[tuple(first)]}.")
  sums = a.sum(-1)
  off = np.abs(sums - 1.0) > atol
  if off.any():
    first = np.argwhere(off)[0]
    raise ValueError(f"`{name}` rows must sum to 1 (probability targets), got sum "
                     f"{sums[tuple(first)]:.6g} in row {_index(first)}.")


def _check_shapes_agree(**named) -> None:
  """``validate``'s arguments describe one batch: same classes, same batch shape."""
  shapes = {k: tuple(np.shape(v)) for k, v in named.items() if v is not None}
  lg, tg = shapes.get("logits"), shapes.get("targets")
  if lg is not None and tg is not None and lg != tg:
    raise ValueError(f"`targets` must have the shape of `logits` {lg} ([batch, num_classes]), "
                     f"got {tg}.")
  batch_of = {"logits": (lg or (None,))[:-1] if lg else None,
              "targets": (tg or (None,))[:-1] if tg else None,
              "labels": shapes.get("labels"), "where": shapes.get("where")}
  ref = next(((k, b) for k, b in batch_of.items() if b is not None and k != "where"), None)
  for name, batch in batch_of.items():
    if ref is None or batch is None or name == ref[0]:
      continue
    if name == "where" and len(batch) == len(ref[1]) and all(
        w in (1, r) for w, r in zip(batch, ref[1])):
      continue  # a mask that broadcasts over the batch shape (e.g. [batch, 1] for [batch, time])
    if batch != ref[1]:
      raise ValueError(f"`{name}` must have the batch shape {ref[1]} of `{ref[0]}`, got shape "
                       f"{shapes[name]}.")


def validate(*, logits: Optional[ArrayLike] = None, labels: Optional[ArrayLike] = None,
             targets: Optional[ArrayLike] = None, where: Optional[ArrayLike] = None,
             similarity: Optional[ArrayLike] = None, num_classes: Optional[int] = None,
             atol: float = 1e-4, **arrays) -> None:
  """Checks the values of loss inputs on the host; raises ValueError/TypeError naming the argument.

  Args:
    logits: ``[..., C]`` floating: must be finite.
    labels: integer class indices: must lie in ``[0, C)``.
    targets: probability targets ``[..., C]``: finite, non-negative, rows summing to 1.
    where: ``[batch]`` mask: must be boolean or 0/1.
    similarity: ``[C, C]`` similarity matrix (``labelwise.losses.validate_similarity``).
    num_classes: ``C``; by default the last dimension of ``logits``/``targets`` or ``similarity``.
    atol: tolerance of the simplex checks.
    **arrays: any other named array (``probs=``, ``multilabel_logits=``, ``inputs=``...): floating
      ones must be finite.

  Example:
    >>> validate(logits=np.zeros((2, 3)), labels=np.array([0, 3]))
    Traceback (most recent call last):
    ValueError: `labels` must be class indices in [0, 3), got labels[1] = 3 (1 out of range).
  """
  _check_shapes_agree(logits=logits, labels=labels, targets=targets, where=where)
  if num_classes is None:
    for x in (logits, targets):
      if x is not None and np.ndim(x) >= 1:
        num_classes = int(np.shape(x)[-1])
        break
    else:
      if similarity is not None and np.ndim(similarity) == 2:
        num_classes = int(np.shape(similarity)[0])
  if logits is not None:
    check_finite(logits, "logits")
  for name, x in arrays.items():
    if x is not None:
      check_finite(x, name)
  if labels is not None:
    if num_classes is None:
      raise ValueError("validate(): `labels` needs `num_classes` (or `logits`/`targets`) to check "
                       "their range.")
    check_labels_in_range(labels, num_classes, "labels")
  if targets is not None:
    check_simplex(targets, "targets", atol=atol)
  if where is not None:
    w = _host(where, "where")
    if w.dtype != bool and not np.isin(w, (0, 1)).all():
      raise ValueError(f"`where` must be a boolean (or 0/1) mask, got values "
                       f"{np.unique(w)[:5].tolist()}.")
  if similarity is not None:
    from labelwise.losses.simloss import validate_similarity
    validate_similarity(_host(similarity, "similarity"), num_classes)
