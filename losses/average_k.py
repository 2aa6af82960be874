"""Average-K classification: the two-head loss, its pseudo-labels and two multi-label baselines.

Paper: Garcin, Servajean, Joly, Salmon. "A two-head loss function for deep Average-K
classification", arXiv:2303.18118 (WACV 2025).

A set-valued classifier returns ``{j : score_j(x) >= lambda}`` with one global threshold ``lambda``
calibrated so that sets hold K classes on average. The two-head loss trains a softmax head with
cross-entropy on the single observed label and a multi-label (sigmoid) head with binary
cross-entropy on *pseudo-labels*: the batch's K*B most probable (example, class) pairs according to
the (stop-gradient) softmax head. The multi-label head's scores are then thresholded.

Readings chosen here (the paper's full text could not be read; see docs/average_k.md):
- Two pseudo-label rules. ``include_true=True`` (default, "rule B"): every observed label is positive
  and the ``round((K-1) B)`` largest *other* entries of the batch matrix are added. ``include_true=False``
  ("rule A"): the ``round(K B)`` largest entries, the observed label only if it ranks.
- ``round`` is round-half-up: ``floor(x + 0.5)``.
- The BCE is averaged over classes (``mean_j``), so ``weight`` (the paper's alpha) is relative to a
  per-class BCE; the CE is per example.
- Exactly ``n`` positives even with ties: ``lax.top_k`` indices are scattered into a mask. Ties are
  broken towards the lower flat index of the (global) ``[B, C]`` matrix, row-major.
- Under data parallelism (``axis_name``) the threshold is global: every device takes its local top-n
  candidates, they are gathered, and the global top-n is taken from them; the result equals the
  single-device result on the concatenated batch, ties included.
- ``where`` masks the per-example loss only; the pseudo-label statistic always counts all B rows
  (the count must be static). Training batches are full, so this only matters for padded batches.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from labelwise.losses import _checks


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _static_number(value, name: str) -> float:
  """Returns ``value`` as a Python float; raises unless it is a concrete finite number."""
  if isinstance(value, jax.core.Tracer):
    raise TypeError(
        f"`{name}` must be a static Python number (it fixes the number of pseudo-labels, "
        f"which must be known at trace time), got a traced value {value}.")
  if isinstance(value, (str, bytes, bool, np.bool_)) or not np.issubdtype(
      np.asarray(value).dtype, np.number):
    raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
  if np.ndim(value) != 0:
    raise ValueError(f"`{name}` must be a scalar, got shape {np.shape(value)}.")
  try:
    out = float(np.asarray(value))
  except (TypeError, ValueError):
    raise TypeError(f"`{name}` must be a number, got {value!r}.") from None
  if not math.isfinite(out):
    raise ValueError(f"`{name}` must be finite, got {out}.")
  return out


def _round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))


def _global_batch(batch: int, axis_name) -> int:
  if axis_name is None:
    return batch
  return batch * int(jax.lax.axis_size(axis_name))


def _check_k(k, num_classes: int) -> float:
  k = _static_number(k, "k")
  if not 0.0 < k <= num_classes:
    raise ValueError(
        f"`k` (the average set size) must be in (0, num_classes] = (0, {num_classes}], got {k}.")
  return k


def num_pseudo_positives(k: float, batch: int, num_classes: int, *,
                         include_true: bool = True) -> int:
  """Number of pseudo-positives the *ranking* selects for a (global) batch of ``batch`` rows.

  ``round((k - 1) * batch)`` with ``include_true`` (the ``batch`` observed labels are positive on
  top of these), else ``round(k * batch)``; round is half-up. Raises ValueError when the count is
  not reachable.
  """
  k = _check_k(k, num_classes)
  if include_true:
    n = _round_half_up((k - 1.0) * batch)
    available = batch * (num_classes - 1)
    if k < 1.0:
      raise ValueError(
          f"`k`={k} with include_true=True is not reachable: the {batch} observed labels already "
          f"give {batch} positives (K = 1); use k >= 1 or include_true=False.")
    if k > 1.0 and n < 1:
      raise ValueError(
          f"`k`={k} with a batch of {batch} gives (k - 1)*B = {(k - 1.0) * batch:.4g}, which rounds "
          f"to 0 pseudo-positives (the loss would train for K = 1); use a larger k or batch, or "
          f"k=1.")
  else:
    n = _round_half_up(k * batch)
    available = batch * num_classes
    if n < 1:
      raise ValueError(
          f"`k`={k} with a batch of {batch} gives k*B = {k * batch}, which rounds to 0 "
          f"pseudo-positives; use a larger k or batch.")
  if n > available:
    raise ValueError(
        f"`k`={k} asks for {n} pseudo-positives but the batch ({batch} x {num_classes}) has only "
        f"{available} candidates.")
  return n


def _local_top(scores, n: int):
  """The ``min(n, R*M)`` largest entries of ``scores`` [R, M]: (values, row-major flat indices),
  sorted by value, ties by lower flat index.

  When ``n < M`` every row holds at most ``n`` winners, so a batched per-row top-n first shrinks
  the flat top-n from ``R*M`` to ``R*n`` entries (same result, ties included: the per-row pass keeps
  the lower column, the flat pass the lower (row, rank) position, i.e. the lower flat index).
  """
  rows, cols = scores.shape
  n_local = min(n, rows * cols)
  if rows > 1 and n < cols:
    row_vals, col = jax.lax.top_k(scores, n)
    flat_idx = (jnp.arange(rows, dtype=jnp.int32)[:, None] * cols + col).reshape(-1)
    vals, pos = jax.lax.top_k(row_vals.reshape(-1), n_local)
    return vals, flat_idx[pos]
  return jax.lax.top_k(scores.reshape(-1), n_local)


def _top_n_mask(scores, n: int, axis_name):
  """Boolean mask of the ``n`` largest entries of ``scores`` [R, M] over the (global) batch.

  Ties go to the lower row-major flat index of the global (concatenated) matrix.
  """
  rows, cols = scores.shape
  size = rows * cols
  if n == 0:
    return jnp.zeros((rows, cols), bool)
  if axis_name is None:
    _, idx = _local_top(scores, n)
    return jnp.zeros((size,), bool).at[idx].set(True).reshape(rows, cols)
  # Local top-n candidates (sorted by value, ties by lower index), then the global top-n among the
  # gathered candidates. Concatenating the candidates in device order keeps ties on the lower
  # global index, so the result equals the single-device one on the concatenated batch.
  vals, idx = _local_top(scores, n)
  n_local = vals.shape[0]
  all_vals = jax.lax.all_gather(vals, axis_name).reshape(-1)
  all_idx = jax.lax.all_gather(idx, axis_name).reshape(-1)
  _, pos = jax.lax.top_k(all_vals, n)
  owner = pos // n_local
  me = jax.lax.axis_index(axis_name)
  target = jnp.where(owner == me, all_idx[pos], size)  # `size` is out of bounds: dropped
  mask = jnp.zeros((size,), bool).at[target].set(True, mode="drop")
  return mask.reshape(rows, cols)


def _binary_cross_entropy(logits, targets):
  """Elementwise ``-t log sigmoid(z) - (1 - t) log sigmoid(-z) = softplus(z) - t z`` (stable)."""
  return jax.nn.softplus(logits) - targets * logits


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def average_k_pseudo_labels(probs: ArrayLike, labels: ArrayLike, *, k: float,
                            include_true: bool = True,
                            axis_name: Optional[str] = None) -> jax.Array:
  """Average-K pseudo-labels: the K*B most probable (example, class) pairs of the batch.

  With ``include_true`` (rule B): ``P_iy_i = 1`` for every observed label, plus the
  ``n = round((k - 1) B)`` largest entries of ``{probs_ij : j != y_i}`` over the whole batch.
  Without (rule A): the ``n = round(k B)`` largest entries of ``probs``.
  Exactly ``B + n`` (rule B) or ``n`` (rule A) positives, ties included (top_k indices scattered
  into a mask; ties go to the lower row-major index). Ranking is in float32. Only the order of
  ``probs`` matters, so log-probabilities give the same result (and more resolution).

  Args:
    probs: ``[batch, num_classes]`` floating scores (probabilities or log-probabilities). No
      gradient flows through the result.
    labels: ``[batch]`` integer observed labels in ``[0, num_classes)``.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    k: static Python number in ``(0, num_classes]``, the average number of positives per example.
    include_true: rule B (True) or rule A (False).
    axis_name: data-parallel axis (pmap / shard_map). The ranking is then over the global batch of
      ``batch * axis_size`` rows, and each device gets its own rows of the global result.

  Returns:
    ``[batch, num_classes]`` float32 in {0, 1}.

  Raises:
    ValueError: bad shapes, ``k`` outside ``(0, num_classes]`` or a count ``k B`` the batch cannot
      reach (``k < 1`` with ``include_true``; ``round(k B) = 0`` without).
    TypeError: non-floating ``probs``, non-integer ``labels``, traced ``k``.

  Example:
    >>> p = jnp.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]])
    >>> average_k_pseudo_labels(p, jnp.array([0, 1]), k=1.5)  # + the best non-true entry (0.4)
    Array([[1., 0., 0.],
           [1., 1., 0.]], dtype=float32)

  Paper: Garcin et al., "A two-head loss function for deep Average-K classification",
  arXiv:2303.18118.
  """
  _checks.check_logits_labels(probs, labels, "probs", "labels")
  batch, num_classes = probs.shape
  global_batch = _global_batch(batch, axis_name)
  n = num_pseudo_positives(k, global_batch, num_classes, include_true=bool(include_true))
  scores = jax.lax.stop_gradient(jnp.asarray(probs).astype(jnp.float32))
  labels = jnp.asarray(labels).astype(jnp.int32)
  if not include_true:
    return _top_n_mask(scores, n, axis_name).astype(jnp.float32)
  # Rule B: rank only the C - 1 non-observed classes of every row. Column j of `others` is class
  # j if j < y_i, else j + 1 -- no sentinel values, so -inf scores cannot collide with the labels.
  cols = jnp.arange(num_classes - 1, dtype=jnp.int32)[None, :]
  other_idx = cols + (cols >= labels[:, None]).astype(jnp.int32)
  other_scores = jnp.take_along_axis(scores, other_idx, axis=1)
  other_mask = _top_n_mask(other_scores, n, axis_name)
  rows = jnp.arange(batch)[:, None]
  mask = jnp.zeros((batch, num_classes), bool).at[rows, other_idx].set(other_mask)
  mask = mask | jax.nn.one_hot(labels, num_classes, dtype=bool)
  return mask.astype(jnp.float32)


def mean_binary_cross_entropy(multilabel_logits: ArrayLike, targets: ArrayLike, *,
                              where: Optional[ArrayLike] = None) -> jax.Array:
  """Per-example binary cross-entropy averaged over classes.

  ``L_i = (1/C) sum_j [softplus(z_ij) - t_ij z_ij]``
  ``= -(1/C) sum_j [t_ij log sigmoid(z_ij) + (1 - t_ij) log sigmoid(-z_ij)]``.

  Args:
    multilabel_logits: ``[batch, num_classes]`` floating sigmoid logits.
    targets: ``[batch, num_classes]`` floating targets in [0, 1].
    where: optional ``[batch]`` boolean mask; masked examples give 0.

  Returns:
    ``[batch]`` float32.

  Example:
    >>> mean_binary_cross_entropy(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]))  # log 2
    Array([0.6931472], dtype=float32)
  """
  _checks.check_logits_targets(multilabel_logits, targets, "multilabel_logits", "targets")
  _checks.check_where(where, multilabel_logits.shape[0])
  z = _checks.as_f32(multilabel_logits)
  t = _checks.as_f32(targets)
  loss = jnp.mean(_binary_cross_entropy(z, t), axis=-1)
  return _checks.apply_where(loss, where)


def two_head_loss(softmax_logits: ArrayLike, multilabel_logits: ArrayLike, labels: ArrayLike, *,
                  k: float, weight: ArrayLike = 1.0, include_true: bool = True,
                  axis_name: Optional[str] = None, where: Optional[ArrayLike] = None) -> jax.Array:
  """Two-head average-K loss: CE on the softmax head + weight * BCE on batch pseudo-labels.

  ``L_i = -log softmax(z^s_i)[y_i] + weight * (1/C) sum_j BCE(z^m_ij, P_ij)`` with
  ``P = average_k_pseudo_labels(stop_gradient(log_softmax(z^s)), y, k=k)``: no gradient flows from
  the multi-label term into the softmax head through the pseudo-labels.

  Args:
    softmax_logits: ``[batch, num_classes]`` logits of the softmax head.
    multilabel_logits: ``[batch, num_classes]`` logits of the multi-label (sigmoid) head.
    labels: ``[batch]`` integer observed labels.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    k: static average set size in ``(0, num_classes]``.
    weight: weight of the BCE term (the paper's alpha; a warm-up may pass a traced scalar).
    include_true: pseudo-label rule B (True, default) or A (False); see
      :func:`average_k_pseudo_labels`.
    axis_name: data-parallel axis; the pseudo-label threshold is then over the global batch.
    where: optional ``[batch]`` boolean mask on the per-example loss (the pseudo-label ranking
      still uses all rows).

  Returns:
    ``[batch]`` float32 per-example losses.

  Example:
    >>> zs = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    >>> two_head_loss(zs, jnp.zeros((2, 3)), jnp.array([0, 1]), k=1.5).shape
    (2,)

  Paper: Garcin et al., "A two-head loss function for deep Average-K classification",
  arXiv:2303.18118.
  """
  _checks.check_logits_labels(softmax_logits, labels, "softmax_logits", "labels")
  _checks.check_rank(multilabel_logits, 2, "multilabel_logits", "[batch, num_classes]")
  _checks.check_floating(multilabel_logits, "multilabel_logits")
  _checks.check_shape(multilabel_logits, _checks.shape_of(softmax_logits), "multilabel_logits")
  _checks.check_where(where, softmax_logits.shape[0])
  if not isinstance(weight, jax.core.Tracer) and np.ndim(weight) == 0:
    w = _static_number(weight, "weight")
    if w < 0:
      raise ValueError(f"`weight` must be >= 0, got {w}.")
  logp = jax.nn.log_softmax(_checks.as_f32(softmax_logits), axis=-1)
  labels = jnp.asarray(labels).astype(jnp.int32)
  ce = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  pseudo = average_k_pseudo_labels(jax.lax.stop_gradient(logp), labels, k=k,
                                   include_true=include_true, axis_name=axis_name)
  bce = mean_binary_cross_entropy(multilabel_logits, pseudo)
  return _checks.apply_where(ce + weight * bce, where)


def assume_negative_loss(multilabel_logits: ArrayLike, labels: ArrayLike, *,
                         where: Optional[ArrayLike] = None) -> jax.Array:
  """Assume-negative (AN) baseline: BCE with the observed label positive and all others negative.

  ``L_i = (1/C) sum_j BCE(z_ij, 1[j = y_i])`` (averaged over classes, like the two-head BCE).

  Args:
    multilabel_logits: ``[batch, num_classes]`` sigmoid logits.
    labels: ``[batch]`` integer observed labels.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    where: optional ``[batch]`` boolean mask; masked examples give 0.

  Returns:
    ``[batch]`` float32.

  Example:
    >>> assume_negative_loss(jnp.zeros((1, 4)), jnp.array([1]))  # log 2
    Array([0.6931472], dtype=float32)

  Paper: Cole et al., "Multi-label learning from single positive labels", CVPR 2021 (the AN
  baseline of Garcin et al., arXiv:2303.18118).
  """
  _checks.check_logits_labels(multilabel_logits, labels, "multilabel_logits", "labels")
  _checks.check_where(where, multilabel_logits.shape[0])
  targets = jax.nn.one_hot(jnp.asarray(labels), multilabel_logits.shape[1], dtype=jnp.float32)
  return mean_binary_cross_entropy(multilabel_logits, targets, where=where)


def expected_positive_regularizer(multilabel_logits: ArrayLike, *, k: float,
                                  axis_name: Optional[str] = None,
                                  where: Optional[ArrayLike] = None) -> jax.Array:
  """Expected positive regularization (EPR): the batch's mean number of positives should be K.

  ``R = ((1/B) sum_ij sigmoid(z_ij) - k)^2 / C^2`` -- a batch-level statistic, hence a scalar.
  The EPR method's loss is ``mean_i -log sigmoid(z_iy_i) + lambda R``.

  Args:
    multilabel_logits: ``[batch, num_classes]`` sigmoid logits.
    k: static average set size in ``(0, num_classes]``.
    axis_name: data-parallel axis; the mean over the batch is then global (psum of sums and
      counts), so every device returns the same value.
    where: optional ``[batch]`` boolean mask; masked rows are left out of the mean.

  Returns:
    scalar float32.

  Example:
    >>> expected_positive_regularizer(jnp.zeros((2, 4)), k=1.0)  # ((4 * 0.5 - 1) / 4)^2
    Array(0.0625, dtype=float32)

  Paper: Cole et al., "Multi-label learning from single positive labels", CVPR 2021 (a baseline of
  Garcin et al., arXiv:2303.18118).
  """
  _checks.check_rank(multilabel_logits, 2, "multilabel_logits", "[batch, num_classes]")
  _checks.check_nonempty(multilabel_logits, "multilabel_logits")
  _checks.check_floating(multilabel_logits, "multilabel_logits")
  _checks.check_where(where, multilabel_logits.shape[0])
  num_classes = multilabel_logits.shape[1]
  k = _check_k(k, num_classes)
  per_row = jnp.sum(jax.nn.sigmoid(_checks.as_f32(multilabel_logits)), axis=-1)
  if where is None:
    weights = jnp.ones_like(per_row)
  else:
    weights = jnp.asarray(where, bool).astype(per_row.dtype)
  total = jnp.sum(per_row * weights)
  count = jnp.sum(weights)
  if axis_name is not None:
    total = jax.lax.psum(total, axis_name)
    count = jax.lax.psum(count, axis_name)
  mean_positives = total / jnp.maximum(count, 1.0)
  return ((mean_positives - k) / num_classes) ** 2
