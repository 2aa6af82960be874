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


def _format_shape(shape) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


def class_rows(logits, axis: int, name: str = "logits"):
  """Checks ``logits [..., C, ...]`` (class axis ``axis``, any leading batch dimensions) and returns
  ``(rows [N, C] with the class axis last, batch_shape)``, ``N = prod(batch_shape)``."""
  shape = shape_of(logits)
  if len(shape) < 1:
    raise ValueError(f"`{name}` must have a class axis ([..., num_classes]), got shape {shape}.")
  if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
    raise TypeError(f"`axis` must be an int (the class axis of `{name}`), got {axis!r}.")
  if not -len(shape) <= axis < len(shape):
    raise ValueError(f"`axis` must be in [{-len(shape)}, {len(shape)}) for `{name}` of shape "
                     f"{shape}, got {axis}.")
  check_nonempty(logits, name)
  check_floating(logits, name)
  x = jnp.moveaxis(jnp.asarray(logits), int(axis), -1)
  return x.reshape(-1, x.shape[-1]), tuple(x.shape[:-1])


def rows_like(x, logits, axis: int, name: str):
  """``x`` (targets) with the shape of ``logits``, as ``[N, C]`` rows like :func:`class_rows`."""
  check_floating(x, name)
  check_shape(x, shape_of(logits), name)
  x = jnp.moveaxis(jnp.asarray(x), int(axis), -1)
  return x.reshape(-1, x.shape[-1])


def label_rows(labels, batch_shape, name: str = "labels"):
  """Integer ``labels`` of shape ``batch_shape``, flattened to ``[N]``."""
  check_integer(labels, name)
  check_shape(labels, tuple(batch_shape), name)
  return jnp.asarray(labels).reshape(-1)


def where_rows(where, batch_shape, name: str = "where"):
  """``where`` broadcast to ``batch_shape`` (numpy rules, as optax's ``where``), flattened to ``[N]``;
  None stays None."""
  if where is None:
    return None
  shape, batch_shape = shape_of(where), tuple(batch_shape)
  try:
    ok = np.broadcast_shapes(shape, batch_shape) == batch_shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f"`{name}` must have shape {_format_shape(batch_shape)}, got {shape}; a shape "
                     f"that broadcasts to {_format_shape(batch_shape)} is accepted too.")
  return jnp.broadcast_to(jnp.asarray(where), batch_shape).reshape(-1)


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
