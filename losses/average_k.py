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
- Exactly ``n`` positives even with ties (a ``>=`` threshold would over-select): the ranking is on
  order-preserving uint32 keys of the float32 scores (``lax.top_k``'s total order: -0.0 < +0.0,
  NaN above +inf, a sign-bit NaN below -inf), the ``n``-th largest key is found by bisection on its
  bits (on a block pre-selection, see ``_top_n_mask``), and ties are broken towards the lower flat
  index of the (global) ``[B, C]`` matrix, row-major. No sort, no ``top_k``.
- Under data parallelism (``axis_name``) the threshold is global: the bisection's counts are
  ``psum``-med and the ties are ranked across devices (offset by the ties of the lower devices); the
  result equals the single-device result on the concatenated batch, ties included.
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


def _order_keys(scores):
  """uint32 keys whose unsigned order is ``lax.top_k``'s total order of float32 ``scores``.

  The usual sign flip: a negative float's bits are inverted, a non-negative float gets its sign bit
  set. So -0.0 < +0.0, +NaN (positive sign bit) ranks above +inf and a NaN with the sign bit set
  below -inf: the comparator of XLA's TopK (the selection used ``lax.top_k`` before).
  """
  bits = jax.lax.bitcast_convert_type(scores, jnp.uint32)
  return jnp.where(bits >= jnp.uint32(0x80000000), ~bits, bits | jnp.uint32(0x80000000))


def _psum(x, axis_name):
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def _threshold_mask(keys, valid, n: int, axis_name):
  """Mask of the ``n`` largest ``keys`` [L] (uint32) among the ``valid`` ones, over the global batch.

  Ties go to the lower position of the global (device-concatenated) array. Invalid entries must
  hold key 0. The ``n``-th largest key ``t`` is found by bisection on its 32 bits (one count pass
  over ``keys`` per bit, ``psum``-med under ``axis_name``); the mask is ``keys > t`` plus the first
  ``n - count(keys > t)`` valid entries with ``keys == t`` (a cumsum, offset by the ties held by the
  lower devices).
  """

  def bit(i, prefix):
    cand = prefix | jax.lax.shift_left(jnp.uint32(1), (31 - i).astype(jnp.uint32))
    count = _psum(jnp.sum(keys >= cand, dtype=jnp.int32), axis_name)
    return jnp.where(count >= n, cand, prefix)

  # Candidates are >= 1, so the key-0 invalid entries are never counted here.
  t = jax.lax.fori_loop(0, 32, bit, jnp.uint32(0))
  greater = keys > t
  missing = n - _psum(jnp.sum(greater, dtype=jnp.int32), axis_name)
  ties = keys == t
  if valid is not None:
    ties = ties & valid
  rank = jnp.cumsum(ties, dtype=jnp.int32)
  if axis_name is not None:
    per_device = jax.lax.all_gather(rank[-1], axis_name)
    lower = jnp.arange(per_device.shape[0]) < jax.lax.axis_index(axis_name)
    rank = rank + jnp.sum(jnp.where(lower, per_device, 0))
  return greater | (ties & (rank <= missing))


def _divisors(length: int):
  small = [d for d in range(1, math.isqrt(length) + 1) if length % d == 0]
  return sorted(set(small + [length // d for d in small]))


def _block_size(length: int, n: int, devices: int, row: Optional[int]):
  """Block size for the pre-selection of ``_top_n_mask``, or None when blocks cannot help.

  A divisor ``g >= 2`` of ``length`` with at least ``n`` blocks in the global array, closest (in
  ratio) to ``sqrt(length / n)`` (none unless ``length >= 4 n``) -- which balances the ``length / g`` block maxima against the
  ``n g`` candidates. With ``row`` (rule B, the row length C), blocks lie inside one row or hold
  whole rows, so every block holds a non-label entry.
  """
  if 4 * n > length * devices:  # n g candidates would not be fewer than `length` entries
    return None
  target = math.sqrt(length / n)
  best = None
  for g in _divisors(length):
    if g < 2 or g * n > length * devices:
      continue
    if row is not None and row % g and g % row:
      continue
    if best is None or abs(math.log(g / target)) < abs(math.log(best / target)):
      best = g
  return best


def _top_n_mask(keys, valid, n: int, axis_name, row: Optional[int] = None):
  """Boolean mask of the ``n`` largest ``keys`` [L] (uint32, invalid entries 0) among the ``valid``
  ones (None: all) over the (global) batch; ties go to the lower position of the global array.

  Pre-selection by blocks: split ``keys`` into blocks of ``g`` consecutive entries; the ``n`` blocks
  with the largest maxima (ties: lower block) hold every winner -- fewer than ``n`` blocks hold an
  entry above the ``n``-th largest key ``t``, and the winners tied at ``t`` come first in the array,
  so their blocks come first among the blocks whose maximum is ``t`` (each of which holds a tie).
  Those blocks are found the same way (recursively on the block maxima), gathered in array order,
  and the exact selection runs on their ``n g`` entries only.
  """
  length = keys.shape[0]
  devices = 1 if axis_name is None else int(jax.lax.axis_size(axis_name))
  g = _block_size(length, n, devices, row)
  if g is None:
    return _threshold_mask(keys, valid, n, axis_name)
  blocks = length // g
  keys = keys.reshape(blocks, g)
  chosen = _top_n_mask(jnp.max(keys, axis=1), None, n, axis_name)
  # Compact the chosen blocks (at most min(n, blocks) on this device) in array order; the slots
  # left over get the out-of-bounds id `blocks` (filled with invalid entries, dropped on return).
  slots = min(n, blocks)
  slot = jnp.where(chosen, jnp.cumsum(chosen, dtype=jnp.int32) - 1, slots)
  ids = jnp.full((slots,), blocks, jnp.int32).at[slot].set(
      jnp.arange(blocks, dtype=jnp.int32), mode="drop")
  cand = keys.at[ids].get(mode="fill", fill_value=0)
  cand_valid = jnp.broadcast_to((ids < blocks)[:, None], (slots, g))
  if valid is not None:
    cand_valid = cand_valid & valid.reshape(blocks, g).at[ids].get(mode="fill", fill_value=False)
  picked = _threshold_mask(cand.reshape(-1), cand_valid.reshape(-1), n, axis_name)
  mask = jnp.zeros((blocks, g), bool).at[ids].set(picked.reshape(slots, g), mode="drop")
  return mask.reshape(length)


@jax.custom_jvp
def _binary_cross_entropy(logits, targets):
  """Elementwise ``-t log sigmoid(z) - (1 - t) log sigmoid(-z) = softplus(z) - t z`` (stable).

  ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``. Written out with its own derivative (``d/dz =
  sigmoid(z) - t``, ``d/dt = -z``) so that value and gradient share the one ``exp(-|z|)``:
  ``jax.nn.softplus`` is ``logaddexp(z, 0)``, whose JVP computes two more exponentials per entry
  (issue 18: the softplus was the two-head loss's largest op). Same values (to rounding), NaN and
  infinities as the plain formula; ``tests/test_losses_average_k.py`` checks both, and the gradient
  against ``jax.nn.sigmoid``.
  """
  e = jnp.exp(-jnp.abs(logits))
  return jnp.maximum(logits, 0.0) + jnp.log1p(e) - targets * logits


@_binary_cross_entropy.defjvp
def _binary_cross_entropy_jvp(primals, tangents):
  z, t = primals
  dz, dt = tangents
  e = jnp.exp(-jnp.abs(z))
  out = jnp.maximum(z, 0.0) + jnp.log1p(e) - t * z
  sigmoid = jnp.where(z >= 0, 1.0, e) / (1.0 + e)
  return out, (sigmoid - t) * dz - z * dt


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
  Exactly ``B + n`` (rule B) or ``n`` (rule A) positives, ties included (ties go to the lower
  row-major index). Ranking is in float32, in ``lax.top_k``'s total order (-0.0 below +0.0, NaN
  above +inf). Only the order of ``probs`` matters, so log-probabilities give the same result
  (and more resolution). Under ``axis_name`` the selection costs 32 scalar ``psum`` per level of
  the block pre-selection (a few levels).

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
  keys = _order_keys(jax.lax.stop_gradient(jnp.asarray(probs).astype(jnp.float32)))
  if not include_true:
    mask = _top_n_mask(keys.reshape(-1), None, n, axis_name)
    return mask.reshape(batch, num_classes).astype(jnp.float32)
  # Rule B: the observed labels are positive and take no part in the ranking (key 0, not valid).
  is_label = jnp.asarray(labels).astype(jnp.int32)[:, None] == jnp.arange(num_classes)[None, :]
  if n == 0:  # k = 1: the labels only
    return is_label.astype(jnp.float32)
  keys = jnp.where(is_label, jnp.uint32(0), keys)
  mask = _top_n_mask(keys.reshape(-1), ~is_label.reshape(-1), n, axis_name, row=num_classes)
  return (mask.reshape(batch, num_classes) | is_label).astype(jnp.float32)


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
