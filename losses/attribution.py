"""Attribution control with region-of-interest masks: ActDiff, GradMask, RRR.

Viviano, Simpson, Dutil, Bengio, Cohen. "Underwhelming Generalization Improvements From Controlling
Feature Attribution" (arXiv 1910.00199; ICLR 2021 version "Saliency is a Possible Red Herring When
Diagnosing Poor Generalization"). RRR is Ross, Hughes, Doshi-Velez, "Right for the Right Reasons",
IJCAI 2017.

Notation: ``images`` ``[B, H, W, C]`` (or ``[B, H, W]``), ``masks`` ``[B, H, W]`` or ``[B, H, W, 1]``
with 1 inside the region that should matter and 0 outside; ``mbar = 1 - mask``. An example without a
mask carries an all-ones mask (then ``mbar = 0`` and every penalty of this module is exactly 0), or
is switched off with ``where=``.

Pieces (all pure and jittable; the training methods in ``labelwise.train.methods.attribution`` put
them together):

- :func:`shuffle_outside_mask` -- ActDiff's masked input ``x~``.
- :func:`actdiff_penalty` -- ``||h(x) - h(x~)||_2`` per example (not squared).
- :func:`gradmask_score`, :func:`rrr_score` -- the scalar per example whose input gradient is
  penalized; :func:`input_gradients` takes that gradient inside a loss (double backprop).
- :func:`gradmask_penalty` (L1 outside the mask), :func:`rrr_penalty` (squared L2 outside the mask).
- :func:`mask_weights` and :func:`reduce_masked_penalty` -- the batch reduction: per masked example
  by default, or the authors' sum over the batch (``normalization="sum"``).

Readings chosen where the reference is ambiguous (also in ``docs/attribution.md``):

- GradMask with ``C > 2`` classes: the score is ``|z_y - logsumexp_{k != y} z_k|``, which equals the
  authors' ``|z_0 - z_1|`` for two classes whatever the label.
- Per-example penalties sum over pixels and channels (as the authors' code); the default batch
  reduction divides by the number of masked examples of the global batch, the reference sums over
  the batch (then lambda scales with the batch size).
- Mask values are validated (binary) only when the mask is concrete; under ``jax.jit`` the values
  are unknown at trace time and :func:`validate_masks` should be called on the host, as the
  dataset builders do.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from labelwise.losses import _checks

NORMALIZATIONS = ("per_masked_example", "per_example", "sum")


# --------------------------------------------------------------------------------------------------
# Mask checks
# --------------------------------------------------------------------------------------------------


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def validate_masks(masks: ArrayLike, name: str = "masks") -> None:
  """Host-side check that ``masks`` only holds 0 and 1 (bool masks always pass).

  Raises:
    ValueError: naming the offending values.
  """
  m = np.asarray(masks)
  if m.dtype == bool:
    return
  bad = ~((m == 0) | (m == 1))
  if bad.any():
    vals = np.unique(m[bad])[:5]
    raise ValueError(
        f"`{name}` must be binary (0 outside, 1 inside the region of interest), got values "
        f"{vals.tolist()} (shape {m.shape}).")


def _check_masks(images, masks, images_name: str, masks_name: str = "masks"):
  """Checks shapes (and values when concrete); returns the mask as float32 ``[B, H, W, 1]``.

  ``images`` must be ``[B, H, W, C]`` or ``[B, H, W]``; ``masks`` ``[B, H, W]`` or ``[B, H, W, 1]``.
  The returned mask broadcasts against ``images`` (for rank-3 images it is ``[B, H, W]``).
  """
  ishape = _checks.shape_of(images)
  mshape = _checks.shape_of(masks)
  _checks.check_nonempty(images, images_name)
  if len(ishape) not in (3, 4):
    raise ValueError(
        f"`{images_name}` must have shape [batch, height, width, channels] or "
        f"[batch, height, width], got {ishape}.")
  spatial = ishape[:3]
  if len(ishape) == 4:
    ok = mshape == spatial or mshape == spatial + (1,)
    exp = f"{list(spatial)} or {list(spatial + (1,))}"
  else:
    ok = mshape == spatial
    exp = f"{list(spatial)}"
  if not ok:
    raise ValueError(
        f"`{masks_name}` must have shape {exp} to match `{images_name}` of shape {ishape}, "
        f"got {mshape}.")
  if _is_concrete(masks):
    validate_masks(masks, masks_name)
  m = jnp.asarray(masks).astype(jnp.float32)
  if len(ishape) == 4 and len(mshape) == 3:
    m = m[..., None]
  return m


# --------------------------------------------------------------------------------------------------
# ActDiff
# --------------------------------------------------------------------------------------------------


def _shuffle_one(key, image, outside):
  """Permutes the pixels (rows of ``image [P, C]``) where ``outside [P]`` among themselves."""
  num_pixels = outside.shape[0]
  idx = jnp.arange(num_pixels, dtype=jnp.float32)
  # Both sort keys put the outside pixels first and the inside pixels after them in their own
  # order (keys 2 + idx > any uniform draw in [0, 1)). ``dst`` lists the outside positions in
  # increasing order, ``src`` the same positions in random order. Rank r >= n_outside pairs an
  # inside pixel with itself.
  dst = jnp.argsort(jnp.where(outside, 0.0, 2.0 + idx), stable=True)
  u = jax.random.uniform(key, (num_pixels,), dtype=jnp.float32)
  src = jnp.argsort(jnp.where(outside, u, 2.0 + idx), stable=True)
  return jnp.zeros_like(image).at[dst].set(image[src])


def shuffle_outside_mask(key: ArrayLike, images: ArrayLike, masks: ArrayLike) -> jax.Array:
  """Randomly permutes each image's pixels outside its mask among themselves (ActDiff's ``x~``).

  ``x~_i[p] = x_i[p]`` where ``m_i[p] = 1``; the pixels with ``m_i[p] = 0`` are a random permutation
  (one per image, all channels of a pixel move together) of the outside pixels of ``x_i``. Two
  argsorts over the flattened pixels per image, so shapes are static and the function jits.
  The result is a constant for the loss: gradients do not flow through the permutation.

  Args:
    key: a ``jax.random`` key; image ``i`` uses ``jax.random.split(key, B)[i]``.
    images: ``[B, H, W, C]`` or ``[B, H, W]``.
    masks: ``[B, H, W]`` or ``[B, H, W, 1]``, binary (1 = region of interest).

  Returns:
    Shuffled images, same shape and dtype as ``images``.

  Example:
    >>> x = jnp.arange(4.).reshape(1, 2, 2, 1); m = jnp.array([[[1, 0], [0, 0]]])
    >>> y = shuffle_outside_mask(jax.random.PRNGKey(0), x, m)  # y[0,0,0] == 0, rest permuted

  Reference: Viviano et al. 2019 (ActDiff's masked input).
  """
  m = _check_masks(images, masks, "images")
  images = jnp.asarray(images)
  shape = images.shape
  b = shape[0]
  flat = images.reshape(b, shape[1] * shape[2], -1)
  outside = (m.reshape(b, shape[1] * shape[2]) == 0)
  keys = jax.random.split(key, b)
  out = jax.vmap(_shuffle_one)(keys, flat, outside)
  return jax.lax.stop_gradient(out.reshape(shape))


def _safe_norm(sq):
  """sqrt with gradient 0 (not inf/NaN) at 0."""
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def actdiff_penalty(features: ArrayLike, shuffled_features: ArrayLike, *,
                    where: Optional[ArrayLike] = None) -> jax.Array:
  """ActDiff's activation difference: per-example L2 distance (not squared).

  ``P_i = || h(x_i) - h(x~_i) ||_2`` with ``x~`` from :func:`shuffle_outside_mask`. The gradient
  flows through both arguments; at ``P_i = 0`` (e.g. an all-ones mask) its gradient is 0.

  Args:
    features: ``[batch, ...]`` features of the raw images (flattened per example).
    shuffled_features: same shape, features of the shuffled images.
    where: optional ``[batch]`` mask; masked-out examples give 0.

  Returns:
    ``[batch]`` float32 distances.

  Example:
    >>> actdiff_penalty(jnp.array([[3., 0.]]), jnp.array([[0., 4.]]))
    Array([5.], dtype=float32)

  Reference: Viviano et al. 2019, ActDiff (the authors average it over the batch).
  """
  fshape = _checks.shape_of(features)
  if len(fshape) < 2:
    raise ValueError(f"`features` must have shape [batch, ...], got {fshape}.")
  _checks.check_nonempty(features, "features")
  _checks.check_floating(features, "features")
  _checks.check_floating(shuffled_features, "shuffled_features")
  _checks.check_shape(shuffled_features, fshape, "shuffled_features")
  _checks.check_where(where, fshape[0])
  d = _checks.as_f32(features) - _checks.as_f32(shuffled_features)
  d = d.reshape(fshape[0], -1)
  # ||d|| = m ||d / m|| with m = max |d_j|: no overflow of d * d when the norm itself fits.
  m = jax.lax.stop_gradient(jnp.max(jnp.abs(d), axis=-1, keepdims=True))
  m = jnp.where(m > 0, m, 1.0)
  return _checks.apply_where(m[:, 0] * _safe_norm(jnp.sum(jnp.square(d / m), axis=-1)), where)


# --------------------------------------------------------------------------------------------------
# Scores whose input gradients are penalized, and the input-gradient helper
# --------------------------------------------------------------------------------------------------


def gradmask_score(logits: ArrayLike, labels: Optional[ArrayLike] = None) -> jax.Array:
  """GradMask's per-example score: the absolute logit gap.

  Two classes: ``s_i = |z_i0 - z_i1|`` (the authors' score; ``labels`` unused).
  ``C > 2`` (our generalization): ``s_i = |z_iy - logsumexp_{k != y} z_ik|``, the true class against
  the soft maximum of the others, which reduces to the two-class score for ``C = 2``.

  Args:
    logits: ``[batch, num_classes]``.
    labels: ``[batch]`` integer labels; required when ``num_classes > 2``.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).

  Returns:
    ``[batch]`` float32 scores.

  Example:
    >>> gradmask_score(jnp.array([[1., 3.]]))
    Array([2.], dtype=float32)
  """
  _checks.check_rank(logits, 2, "logits", "[batch, num_classes]")
  _checks.check_floating(logits, "logits")
  b, c = _checks.shape_of(logits)
  if c < 2:
    raise ValueError(f"`logits` must have at least 2 classes, got shape {(b, c)}.")
  z = _checks.as_f32(logits)
  if labels is not None:
    _checks.check_logits_labels(logits, labels)
  if c == 2:
    return jnp.abs(z[:, 0] - z[:, 1])
  if labels is None:
    raise ValueError(
        f"`labels` ([batch] integer) is required by gradmask_score when num_classes > 2, "
        f"got logits of shape {(b, c)} and labels=None.")
  onehot = jax.nn.one_hot(labels, c, dtype=bool)
  z_y = jnp.sum(jnp.where(onehot, z, 0.0), axis=-1)
  others = jax.nn.logsumexp(jnp.where(onehot, -jnp.inf, z), axis=-1)
  return jnp.abs(z_y - others)


def rrr_score(logits: ArrayLike) -> jax.Array:
  """RRR's per-example score: ``s_i = sum_k log softmax(z_i)_k`` (Ross et al. 2017).

  Args:
    logits: ``[batch, num_classes]``.

  Returns:
    ``[batch]`` float32 scores.

  Example:
    >>> rrr_score(jnp.zeros((1, 2)))  # 2 log(1/2)
    Array([-1.3862944], dtype=float32)
  """
  _checks.check_rank(logits, 2, "logits", "[batch, num_classes]")
  _checks.check_floating(logits, "logits")
  return jnp.sum(jax.nn.log_softmax(_checks.as_f32(logits), axis=-1), axis=-1)


def input_gradients(score_fn: Callable, inputs: ArrayLike, *,
                    has_aux: bool = False) -> Union[jax.Array, Tuple[jax.Array, Any]]:
  """Input gradient ``g = d/dx sum_i s_i(x)`` taken so that an outer ``jax.grad`` differentiates it.

  Call it inside a loss: ``score_fn`` closes over the parameters, and the returned ``g`` is an
  ordinary traced function of them, so ``jax.grad(loss)(params)`` backpropagates through the
  gradient (double backprop). Works under ``jit``, ``pmap`` and ``shard_map``; examples do not mix
  as long as the model has no batch statistics (no train-mode BatchNorm).

  Args:
    score_fn: ``inputs -> [batch]`` scores, or ``inputs -> ([batch] scores, aux)`` with ``has_aux``.
    inputs: the images ``[batch, ...]``.
    has_aux: whether ``score_fn`` returns ``(scores, aux)``; ``aux`` (e.g. the logits of the same
      forward pass, reusable for the cross-entropy) is returned and stays differentiable.

  Returns:
    ``g`` with the shape of ``inputs`` (float32), or ``(g, aux)`` with ``has_aux``.

  Example:
    >>> x, w = jnp.ones((2, 3)), jnp.array([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]])
    >>> input_gradients(lambda x: jnp.sum(x @ w, axis=-1), x)   # d/dx of sum_c (x @ w)_c = w.sum(1)
    Array([[0. , 0.5, 2. ],
           [0. , 0.5, 2. ]], dtype=float32)
  """
  def total(x):
    out = score_fn(x)
    if has_aux and not (isinstance(out, (tuple, list)) and len(out) == 2):
      got = (f"a {type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list))
             else f"an array of shape {_checks.shape_of(out)}")
      raise TypeError(f"`score_fn` must return a pair ([batch] scores, aux) with has_aux=True, got "
                      f"{got}; pass has_aux=False for a function that returns only the scores.")
    scores, aux = out if has_aux else (out, None)
    _checks.check_rank(scores, 1, "score_fn(inputs)", "[batch] per-example scores")
    return jnp.sum(_checks.as_f32(scores)), aux

  x = _checks.as_f32(inputs)
  g, aux = jax.grad(total, has_aux=True)(x)
  return (g, aux) if has_aux else g


# --------------------------------------------------------------------------------------------------
# Gradient penalties
# --------------------------------------------------------------------------------------------------


def _outside_mask(input_grads, masks, where):
  """Checks the penalty inputs; returns the float32 input gradients with the mask region zeroed."""
  _checks.check_floating(input_grads, "input_grads")
  m = _check_masks(input_grads, masks, "input_grads")
  _checks.check_where(where, _checks.shape_of(input_grads)[0])
  return _checks.as_f32(input_grads) * (1.0 - m)


def gradmask_penalty(input_grads: ArrayLike, masks: ArrayLike, *,
                     where: Optional[ArrayLike] = None) -> jax.Array:
  """GradMask penalty: L1 norm of the input gradient outside the mask.

  ``P_i = sum_{p, c} | g_i[p, c] * (1 - m_i[p]) |`` with ``g`` from :func:`input_gradients` of
  :func:`gradmask_score`.

  Args:
    input_grads: ``[B, H, W, C]`` (or ``[B, H, W]``) input gradients.
    masks: ``[B, H, W]`` or ``[B, H, W, 1]`` binary masks.
    where: optional ``[B]`` mask; masked-out examples give 0.

  Returns:
    ``[B]`` float32 penalties (0 for an all-ones mask).

  Example:
    >>> gradmask_penalty(jnp.array([[[1., -2.]]]), jnp.array([[[1, 0]]]))
    Array([2.], dtype=float32)

  Reference: Viviano et al. 2019 (the authors then sum over the batch and multiply by lambda).
  """
  outside = _outside_mask(input_grads, masks, where)
  b = outside.shape[0]
  return _checks.apply_where(jnp.sum(jnp.abs(outside).reshape(b, -1), axis=-1), where)


def rrr_penalty(input_grads: ArrayLike, masks: ArrayLike, *,
                where: Optional[ArrayLike] = None) -> jax.Array:
  """RRR penalty: squared L2 norm of the input gradient outside the mask.

  ``P_i = sum_{p, c} ( g_i[p, c] * (1 - m_i[p]) )^2`` with ``g`` from :func:`input_gradients` of
  :func:`rrr_score`.

  Args:
    input_grads: ``[B, H, W, C]`` (or ``[B, H, W]``) input gradients.
    masks: ``[B, H, W]`` or ``[B, H, W, 1]`` binary masks.
    where: optional ``[B]`` mask; masked-out examples give 0.

  Returns:
    ``[B]`` float32 penalties (0 for an all-ones mask).

  Example:
    >>> rrr_penalty(jnp.array([[[1., -2.]]]), jnp.array([[[1, 0]]]))
    Array([4.], dtype=float32)

  Reference: Ross et al. 2017, "Right for the Right Reasons" (weight decay is a separate option).
  """
  outside = _outside_mask(input_grads, masks, where)
  b = outside.shape[0]
  return _checks.apply_where(jnp.sum(jnp.square(outside).reshape(b, -1), axis=-1), where)


# --------------------------------------------------------------------------------------------------
# Batch reduction
# --------------------------------------------------------------------------------------------------


def mask_weights(masks: ArrayLike, *, where: Optional[ArrayLike] = None) -> jax.Array:
  """``[B]`` float32 weights: 1 for an example that has a mask (some pixel is 0), else 0.

  An all-ones mask means "no mask"; ``where`` (``[B]``, bool or 0/1) switches examples off too.

  Args:
    masks: ``[B, H, W]`` or ``[B, H, W, 1]``.
    where: optional ``[B]``.

  Example:
    >>> mask_weights(jnp.array([[[1, 0]], [[1, 1]]]))
    Array([1., 0.], dtype=float32)
  """
  mshape = _checks.shape_of(masks)
  if len(mshape) not in (3, 4) or (len(mshape) == 4 and mshape[-1] != 1):
    raise ValueError(
        f"`masks` must have shape [batch, height, width] or [batch, height, width, 1], got "
        f"{mshape}.")
  _checks.check_where(where, mshape[0])
  m = jnp.asarray(masks).reshape(mshape[0], -1)
  w = jnp.any(m == 0, axis=-1).astype(jnp.float32)
  if where is not None:
    w = w * jnp.asarray(where).astype(jnp.float32)
  return w


def reduce_masked_penalty(per_example: ArrayLike, weights: ArrayLike, *,
                          normalization: str = "per_masked_example",
                          axis_name: Optional[str] = None) -> jax.Array:
  """Reduces per-example penalties over the (global) batch; returns this device's share.

  - ``"per_masked_example"`` (default): ``sum_i w_i P_i / sum_i w_i`` (0 when no example has a mask), the mean over the
    examples that carry a mask, so lambda does not depend on the batch size or the masked fraction.
  - ``"per_example"``: ``sum_i w_i P_i / B`` (the authors' ActDiff: mean over the batch).
  - ``"sum"``: ``sum_i w_i P_i`` (the authors' GradMask/RRR: sum over batch and pixels).

  The sums run over the global batch when ``axis_name`` is given: the function returns the local
  numerator times ``n_devices / global denominator`` so that the trainer's ``pmean`` of the local
  losses is exactly the global statistic and the gradient of each device's share only touches its
  own examples. The denominators do not depend on the parameters.

  Args:
    per_example: ``[B]`` penalties.
    weights: ``[B]`` non-negative weights, e.g. :func:`mask_weights`.
    normalization: one of ``"per_masked_example"``, ``"per_example"``, ``"sum"``.
    axis_name: the data-parallel axis name (under ``pmap``/``shard_map``) or None.

  Returns:
    scalar float32 (local share; its mean over devices is the global value).

  Example:
    >>> reduce_masked_penalty(jnp.array([2., 4., 9.]), jnp.array([1., 1., 0.]))
    Array(3., dtype=float32)
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(
        f"`normalization` must be one of {NORMALIZATIONS}, got {normalization!r}.")
  _checks.check_rank(per_example, 1, "per_example", "[batch]")
  b = _checks.shape_of(per_example)[0]
  _checks.check_shape(weights, (b,), "weights")
  p = _checks.as_f32(per_example)
  w = _checks.as_f32(weights)
  num = jnp.sum(jnp.where(w > 0, w * p, 0.0))
  if axis_name is None:
    n_dev = 1.0
    psum = lambda v: v
  else:
    n_dev = jax.lax.psum(1.0, axis_name)
    psum = lambda v: jax.lax.psum(v, axis_name)
  if normalization == "per_masked_example":
    total = psum(jnp.sum(w))
    den = jnp.where(total > 0, total, 1.0)
  elif normalization == "per_example":
    den = psum(jnp.asarray(float(b), jnp.float32))
  else:
    den = jnp.asarray(1.0, jnp.float32)
  return num * n_dev / jax.lax.stop_gradient(den)
