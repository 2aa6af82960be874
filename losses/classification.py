"""Softmax cross-entropy, the baseline every method is compared with."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labelwise.losses import _checks


def softmax_cross_entropy(logits, labels, *, where=None):
  """Softmax cross-entropy with integer labels.

  ``L_i = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_i[y_i]``.

  Args:
    logits: ``[batch, num_classes]`` floating.
    labels: ``[batch]`` integer class indices in ``[0, num_classes)``.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    where: optional ``[batch]`` boolean mask; masked examples give 0.

  Returns:
    ``[batch]`` per-example losses (float32).

  Example:
    >>> softmax_cross_entropy(jnp.zeros((1, 4)), jnp.array([2]))  # log 4
    Array([1.3862944], dtype=float32)
  """
  _checks.check_logits_labels(logits, labels)
  _checks.check_where(where, logits.shape[0])
  logp = jax.nn.log_softmax(_checks.as_f32(logits), axis=-1)
  loss = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  return _checks.apply_where(loss, where)


def softmax_cross_entropy_with_targets(logits, targets, *, where=None):
  """Softmax cross-entropy against probability targets: ``-sum_c t_c log softmax(z)_c``.

  Args:
    logits: ``[batch, num_classes]`` floating.
    targets: ``[batch, num_classes]`` rows on the probability simplex.
    where: optional ``[batch]`` boolean mask.

  Returns:
    ``[batch]`` per-example losses (float32).
  """
  _checks.check_logits_targets(logits, targets)
  _checks.check_where(where, logits.shape[0])
  logp = jax.nn.log_softmax(_checks.as_f32(logits), axis=-1)
  t = _checks.as_f32(targets)
  # 0 * log p is 0 even where p underflows: use where() so no NaN appears.
  loss = -jnp.sum(jnp.where(t > 0, t * logp, 0.0), axis=-1)
  return _checks.apply_where(loss, where)
