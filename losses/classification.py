"""Softmax cross-entropy, the baseline every method is compared with."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from labelwise.losses import _checks


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, axis: int = -1,
                          where: Optional[ArrayLike] = None) -> jax.Array:
  """Softmax cross-entropy with integer labels.

  ``L_i = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_i[y_i]``.

  Args:
    logits: ``[..., num_classes]`` floating (any leading batch dimensions; the class axis is
      ``axis``).
    labels: ``[...]`` integer class indices in ``[0, num_classes)``: the shape of ``logits``
      without its class axis.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    axis: the class axis of ``logits`` (default -1).
    where: optional boolean mask of the shape of ``labels`` (or one that broadcasts to it, e.g.
      ``[batch, 1]`` for ``[batch, time]`` labels); masked examples give 0.

  Returns:
    ``[...]`` per-example losses (float32), the shape of ``labels``.

  Example:
    >>> softmax_cross_entropy(jnp.zeros((1, 4)), jnp.array([2]))  # log 4
    Array([1.3862944], dtype=float32)
    >>> softmax_cross_entropy(jnp.zeros((2, 4, 3)), jnp.zeros((2, 3), int), axis=1).shape
    (2, 3)

  Reference: the same quantity as ``optax.softmax_cross_entropy_with_integer_labels``.
  """
  z, batch = _checks.class_rows(logits, axis)
  y = _checks.label_rows(labels, batch)
  w = _checks.where_rows(where, batch)
  logp = jax.nn.log_softmax(_checks.as_f32(z), axis=-1)
  loss = -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
  return _checks.apply_where(loss, w).reshape(batch)


def softmax_cross_entropy_with_targets(logits: ArrayLike, targets: ArrayLike, *, axis: int = -1,
                                       where: Optional[ArrayLike] = None) -> jax.Array:
  """Softmax cross-entropy against probability targets: ``L_i = -sum_c t_ic log softmax(z_i)_c``.

  Args:
    logits: ``[..., num_classes]`` floating (class axis ``axis``).
    targets: the shape of ``logits``, rows on the probability simplex along ``axis``.
    axis: the class axis (default -1).
    where: optional boolean mask of the batch shape (``logits`` without its class axis) or one
      that broadcasts to it.

  Returns:
    ``[...]`` per-example losses (float32), the batch shape.

  Example:
    >>> softmax_cross_entropy_with_targets(jnp.zeros((1, 2)), jnp.array([[0.5, 0.5]]))  # log 2
    Array([0.6931472], dtype=float32)

  Reference: the same quantity as ``optax.softmax_cross_entropy``.
  """
  z, batch = _checks.class_rows(logits, axis)
  t = _checks.as_f32(_checks.rows_like(targets, logits, axis, "targets"))
  w = _checks.where_rows(where, batch)
  logp = jax.nn.log_softmax(_checks.as_f32(z), axis=-1)
  # 0 * log p is 0 even where p underflows: use where() so no NaN appears.
  loss = -jnp.sum(jnp.where(t > 0, t * logp, 0.0), axis=-1)
  return _checks.apply_where(loss, w).reshape(batch)
