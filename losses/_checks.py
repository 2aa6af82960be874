"""Trace-time input checks shared by the losses.

Every check raises ``ValueError`` (or ``TypeError`` for dtype confusion) with a message that names the
argument, what it got and what was expected. Shapes and dtypes are static under ``jax.jit``, so these
checks cost nothing at run time.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np


def shape_of(x) -> tuple:
  return tuple(np.shape(x))


def check_rank(x, rank: int, name: str, what: str = "") -> None:
  """Raises ValueError unless ``x`` has ``rank`` dimensions."""
  shape = shape_of(x)
  if len(shape) != rank:
    hint = f" ({what})" if what else ""
    raise ValueError(
        f"`{name}` must have rank {rank}{hint}, got shape {shape}.")


def check_shape(x, expected: Sequence[Optional[int]], name: str) -> None:
  """Raises ValueError unless ``x`` has ``expected`` shape (None matches any size)."""
  shape = shape_of(x)
  ok = len(shape) == len(expected) and all(
      e is None or e == s for s, e in zip(shape, expected))
  if not ok:
    exp = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
    raise ValueError(f"`{name}` must have shape {exp}, got {shape}.")


def check_floating(x, name: str) -> None:
  """Raises TypeError unless ``x`` has a floating dtype."""
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise TypeError(
        f"`{name}` must be a floating array, got dtype {jnp.result_type(x)}.")


def check_integer(x, name: str) -> None:
  """Raises TypeError unless ``x`` has an integer dtype."""
  if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
    raise TypeError(
        f"`{name}` must be an integer array of class indices, got dtype "
        f"{jnp.result_type(x)}.")


def check_nonempty(x, name: str) -> None:
  """Raises ValueError when ``x`` has a zero-sized dimension (an empty batch or no classes)."""
  shape = shape_of(x)
  if 0 in shape:
    raise ValueError(f"`{name}` must not be empty (batch and class sizes >= 1), got shape {shape}.")


def check_logits_labels(logits, labels, logits_name="logits",
                        labels_name="labels") -> None:
  """logits [B, C] floating (B, C >= 1), labels [B] integer."""
  check_rank(logits, 2, logits_name, "[batch, num_classes]")
  check_nonempty(logits, logits_name)
  check_floating(logits, logits_name)
  check_integer(labels, labels_name)
  check_shape(labels, (shape_of(logits)[0],), labels_name)


def check_logits_targets(logits, targets, logits_name="logits",
                         targets_name="targets") -> None:
  """logits [B, C] (B, C >= 1) and targets [B, C], both floating."""
  check_rank(logits, 2, logits_name, "[batch, num_classes]")
  check_nonempty(logits, logits_name)
  check_floating(logits, logits_name)
  check_floating(targets, targets_name)
  check_shape(targets, shape_of(logits), targets_name)


def check_where(where, batch: int, name: str = "where") -> None:
  if where is not None:
    check_shape(where, (batch,), name)


def apply_where(values, where):
  """Zeroes per-example ``values`` where ``where`` is False (None keeps all)."""
  if where is None:
    return values
  return jnp.where(jnp.asarray(where, bool), values, jnp.zeros_like(values))


def as_f32(x):
  """Promotes to float32 (keeps float64 when x64 is on); bfloat16 maths is never used in losses."""
  x = jnp.asarray(x)
  if x.dtype in (jnp.bfloat16, jnp.float16):
    return x.astype(jnp.float32)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return x.astype(jnp.float32)
  return x
