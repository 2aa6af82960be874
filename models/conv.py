"""Convolution whose kernel gradient is fast on XLA:CPU (a drop-in for ``lax.conv_general_dilated``).

Why: profiling the CPU training steps (``benchmarks/profile_cpu.py``) showed that XLA:CPU computes
the forward convolution and the input gradient quickly, but the *kernel* gradient (a convolution
whose contraction runs over batch and space) 10-25x slower than the forward pass: for a 3x3, 64->64
convolution on a 32x32x64 batch of 32, about 800 ms against 34 ms forward (PyTorch's kernel
gradient: about 43 ms). In the ResNet-18 step these kernel gradients were most of the step time.

What: the forward pass and the input gradient are ``lax.conv_general_dilated`` and its transpose,
unchanged. The kernel gradient is written as matrix products instead: for a chunk of examples, the
input patches (one strided slice of the padded input per kernel offset, concatenated on the channel
axis: ``[rows, k_h * k_w * C_in]``) are multiplied with the output gradient ``[rows, C_out]``; the
chunks (about ``TARGET_ROWS`` rows each, so that both operands stay in cache) are summed in a
``lax.scan``. The result equals XLA's kernel gradient up to float32 summation order (relative
differences around 1e-6; tested in tests/test_models_optim.py).

Where: used by ``small_cnn``, ``attribution_cnn`` and ``resnet18`` through flax's
``nn.Conv(conv_general_dilated=...)`` hook when ``impl="auto"`` and the default backend is the CPU,
for channels-last convolutions without dilation or feature groups (every convolution in
``labelwise.models``); anything else, and every other backend (cuDNN's kernel gradient is fast), calls
``lax.conv_general_dilated`` directly. ``impl="xla"`` (model option ``conv_impl``) turns it off.
Reverse-mode derivatives of any order work (the backward pass is made of differentiable ops, so the
input-gradient penalties of GradMask/RRR can be differentiated again); forward-mode (``jax.jvp``)
through this convolution is not supported, as for any ``jax.custom_vjp``.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

TARGET_ROWS = 2048  # rows (examples x output positions) per kernel-gradient chunk
IMPLS = ("auto", "xla", "matmul", "patches")


def _channels_last(lhs_shape, rhs_shape):
  n = len(lhs_shape) - 2
  if not 1 <= n <= 3:
    return None
  sp = "DHW"[-n:]
  return lax.conv_dimension_numbers(lhs_shape, rhs_shape, (f"N{sp}C", f"{sp}IO", f"N{sp}C"))


def _is_ones(values) -> bool:
  return values is None or all(int(v) == 1 for v in values)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None, *, impl: str = "auto"):
  """``lax.conv_general_dilated`` with a matmul kernel gradient on CPU (see the module docstring).

  Same arguments and result as ``lax.conv_general_dilated``; ``impl`` is ``"auto"`` (the matmul
  kernel gradient on the CPU backend for supported convolutions), ``"xla"`` (never), ``"matmul"``
  (whenever supported, on any backend; used by the tests) or ``"patches"`` (the whole convolution
  as one matrix product of input patches, differentiated by plain autodiff: see
  :func:`patches_conv`).
  """
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
  n = lhs.ndim - 2
  pads = padding
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:n], window_strides, padding)
  use = impl in ("matmul", "patches") or (impl == "auto" and jax.default_backend() == "cpu")
  dn = _channels_last(lhs.shape, rhs.shape)
  supported = (
      use and dn is not None
      and dimension_numbers is not None
      and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == dn
      and _is_ones(lhs_dilation) and _is_ones(rhs_dilation)
      and feature_group_count == 1 and batch_group_count == 1
      and preferred_element_type is None
      and all(lo >= 0 and hi >= 0 for lo, hi in pads))
  if not supported:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  if impl == "patches":
    return patches_conv(lhs, rhs, strides, pads, precision=precision)
  lhs, rhs = _same_varying_axes(lhs, rhs)
  return _conv(lhs, rhs, strides, pads, precision)


def _varying_axes(x) -> frozenset:
  """The manual mesh axes ``x`` varies over inside ``shard_map`` (empty outside or on old jax)."""
  typeof = getattr(jax, "typeof", None)
  if typeof is None:
    return frozenset()
  aval = typeof(x)  # jax >= 0.10: aval.manual_axis_type.varying; before: aval.vma
  mat = getattr(aval, "manual_axis_type", None)
  return frozenset(mat.varying if mat is not None else getattr(aval, "vma", ()))


def _vary_over(x, axes: frozenset):
  """``x`` cast to vary over ``axes`` (a no-op for the axes it already varies over)."""
  missing = tuple(sorted(axes - _varying_axes(x)))
  return lax.pcast(x, missing, to="varying") if missing else x


def _same_varying_axes(*xs):
  """Inside ``shard_map``: marks every operand as varying over the union of their manual axes.

  A replicated kernel meets per-device inputs; its cotangent must come back replicated. Plain
  autodiff does that with the transpose of the implicit ``pcast(..., to="varying")``, a ``psum``
  (why the gradient of a replicated parameter is already summed under shard_map); casting before the
  ``custom_vjp`` keeps that behaviour, and the backward rule sees operands of one type.
  """
  union = frozenset().union(*(_varying_axes(x) for x in xs))
  return tuple(_vary_over(x, union) for x in xs)


def _patches(xp, window, out_sp, strides):
  """``[B, *out_spatial, K * C_in]``: the padded input's strided slice for each of the K kernel
  offsets (row-major order), concatenated on the channel axis."""
  cols = []
  for offset in itertools.product(*(range(k) for k in window)):
    start = (0,) + offset + (0,)
    limit = ((xp.shape[0],) + tuple(o + (m - 1) * s + 1 for o, m, s in zip(offset, out_sp, strides))
             + (xp.shape[-1],))
    cols.append(lax.slice(xp, start, limit, (1,) + strides + (1,)))
  return jnp.concatenate(cols, axis=-1)


def patches_conv(x, w, strides: Tuple[int, ...], pads: Tuple[Tuple[int, int], ...], *,
                 precision=None):
  """A channels-last convolution (no dilation, no groups) as patches ``@`` the flattened kernel.

  Why: under ``jax.vmap`` over replicas with their own kernels (a trainer sweep), XLA turns
  ``lax.conv_general_dilated`` into a grouped convolution (``feature_group_count`` = replicas),
  and on XLA:CPU that convolution and its derivatives are slow; the input-gradient penalties
  (GradMask, RRR) differentiate it twice. Here every derivative, of any order, is made of slices,
  pads and matrix products, and ``vmap`` of a matrix product is a batched matrix product
  (``experiments/attribution/bench_sweep.py``: the study's 30-replica RRR step about 5x faster on
  the 2-core CPU). Equal to ``lax.conv_general_dilated`` up to float32 summation order.
  """
  n = x.ndim - 2
  window, c_in, c_out = tuple(w.shape[:n]), w.shape[n], w.shape[n + 1]
  xp = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
  out_sp = tuple((xp.shape[1 + i] - window[i]) // strides[i] + 1 for i in range(n))
  cols = _patches(xp, window, out_sp, strides)
  return lax.dot_general(cols, w.reshape(math.prod(window) * c_in, c_out),
                         (((cols.ndim - 1,), (0,)), ((), ())), precision=precision)


def _plain_conv(x, w, strides, pads, precision):
  return lax.conv_general_dilated(x, w, strides, pads,
                                  dimension_numbers=_channels_last(x.shape, w.shape),
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, pads, precision):
  return _plain_conv(x, w, strides, pads, precision)


def _conv_fwd(x, w, strides, pads, precision):
  return _plain_conv(x, w, strides, pads, precision), (x, w)


def _conv_bwd(strides, pads, precision, residuals, dy):
  x, w = residuals
  _, input_vjp = jax.vjp(lambda x_: _plain_conv(x_, w, strides, pads, precision), x)
  (dx,) = input_vjp(dy)
  dw = kernel_gradient(x, dy, w.shape, strides, pads, precision=precision)
  return dx, dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _chunk_size(batch: int, rows_per_example: int) -> int:
  """The largest divisor of ``batch`` with at most ``TARGET_ROWS`` rows (at least 1 example)."""
  limit = max(1, TARGET_ROWS // max(1, rows_per_example))
  return max(d for d in range(1, min(batch, limit) + 1) if batch % d == 0)


def kernel_gradient(x, dy, kernel_shape: Sequence[int], strides: Tuple[int, ...],
                    pads: Tuple[Tuple[int, int], ...], *, precision=None):
  """d(sum(conv(x, w) * dy)) / dw for a channels-last convolution, as chunked matrix products.

  Args:
    x: input ``[B, *spatial, C_in]``.
    dy: output gradient ``[B, *out_spatial, C_out]``.
    kernel_shape: ``(*window, C_in, C_out)``.
    strides, pads: the convolution's window strides and explicit ``(low, high)`` paddings.
  Returns:
    ``[*window, C_in, C_out]`` in float32 (or the inputs' dtype if wider).
  """
  n = x.ndim - 2
  window, c_in, c_out = tuple(kernel_shape[:n]), x.shape[-1], dy.shape[-1]
  out_sp = dy.shape[1:-1]
  batch = x.shape[0]
  xp = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
  acc_dtype = jnp.promote_types(jnp.float32, jnp.promote_types(x.dtype, dy.dtype))

  def patches(xb):
    return _patches(xb, window, out_sp, strides).reshape(-1, math.prod(window) * c_in)

  def chunk_grad(xb, db):
    # [C_out, rows] @ [rows, K * C_in]: both operands row-major in their contraction order.
    return lax.dot(db.reshape(-1, c_out).T, patches(xb), precision=precision,
                   preferred_element_type=acc_dtype)

  chunk = _chunk_size(batch, math.prod(out_sp))
  if chunk == batch:
    acc = chunk_grad(xp, dy)
  else:
    steps = batch // chunk
    xs = (xp.reshape((steps, chunk) + xp.shape[1:]), dy.reshape((steps, chunk) + dy.shape[1:]))
    # Under shard_map the carry must vary over the mesh axes like the chunk gradients it sums
    # (a plain zeros is replicated, and scan refuses a carry whose type changes).
    init = _vary_over(jnp.zeros((c_out, math.prod(window) * c_in), acc_dtype),
                      _varying_axes(x) | _varying_axes(dy))
    acc, _ = lax.scan(lambda a, xd: (a + chunk_grad(*xd), None), init, xs)
  return acc.T.reshape(window + (c_in, c_out))


def conv_fn(impl: str = "auto"):
  """The function to give ``flax.linen.Conv(conv_general_dilated=...)``."""
  if impl not in IMPLS:
    raise ValueError(f"conv_impl must be one of {IMPLS}, got {impl!r}")
  if impl == "xla":
    return lax.conv_general_dilated
  return functools.partial(conv_general_dilated, impl=impl)
