"""FIERCE: entropic feature regularization for training on coarse labels.

Baena, Drumetz, Gripon, "Preserving Fine-Grain Feature Information in Classification via Entropic
Regularization" (arXiv 2208.03684; ICASSP 2023 as "Entropy Based Feature Regularization to Improve
Transferability of Deep Learning Models").

The network is trained on coarse labels with cross-entropy while an estimate ``H`` of the entropy of
its penultimate features is maximized, so that the features keep information the coarse labels do not
ask for. The paper text was not readable for us; the estimator below is what the authors' public code
computes (read only, not copied):

1. ``K`` fixed random code vectors ``c_1..c_K`` (``fierce_codes``), drawn once, never trained.
2. Similarity logits ``s_ik`` between feature ``f_i`` and code ``c_k``: cosine, raw dot product, or,
   for a scalar feature, ``-(f_i - k)^2`` against bins ``k = 1..K``.
3. Hard Gumbel-softmax with a straight-through gradient:
   ``z_i = onehot(argmax_k (s_ik + g_ik))`` forward, ``d softmax((s_i + g_i) / tau)`` backward.
4. Batch histogram ``p_k = mean_i z_ik`` and plug-in entropy in bits
   ``H = -sum_k p_k log2(p_k + 1e-21)``.

Readings we chose where the code/paper leave room (also in ``docs/fierce.md``):

* ``key=None`` means no Gumbel noise: the forward value is the plain argmax histogram entropy, and the
  straight-through gradient (through ``softmax(s / tau)``) is still defined, so the noiseless
  estimator can be tested deterministically.
* The gradient flows to the features only; the codes are wrapped in ``stop_gradient``.
* The ``1e-21`` inside the log is the authors' (reference parity). It does not change the forward value
  (``p_k`` is 0 or at least ``1 / B``) but it does shape the straight-through gradient: an empty bin
  receives ``dH/dp_k = -(log2(1e-21) + 1/ln 2) ~ 68.3``, which strongly pushes soft mass to empty
  bins. ``eps=0`` gives the textbook form with zero gradient on empty bins.
* Under data parallelism the histogram is global: counts and the number of examples are ``psum``-ed
  over ``axis_name``, so the value equals the single-device value on the concatenated batch.
* ``logit_scale`` multiplies the similarities before the noise (default 1, the authors' setting). At
  ``tau = 1`` the Gumbel noise (std ~1.28) dominates cosine logits in ``[-1, 1]``, so the noisy ``H``
  is close to ``log2 min(B, K)`` whatever the features are; a larger scale or a smaller ``tau`` makes
  the estimator see the features.

``koleo_entropy`` is a Kozachenko-Leonenko nearest-neighbour alternative (as in DINOv2's KoLeo
regularizer). It is NOT the paper's estimator.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from labelwise.losses import _checks
from labelwise.losses.classification import softmax_cross_entropy

SIMILARITIES = ("cosine", "dot", "bins")
CODE_INITS = ("uniform", "positive", "normal", "bins")
FORMS = ("difference", "convex")
REFERENCE_EPS = 1e-21


def fierce_codes(key: ArrayLike, num_codes: int, dim: int, *, init: str = "uniform",
                 scale: float = 0.01) -> jax.Array:
  """Draws the fixed FIERCE codebook ``[num_codes, dim]`` (float32, never trained).

  ``init``:
    * ``"uniform"``: ``U(-scale, scale)`` (the authors' ResNet setting, ``scale`` 0.01 or 1; with
      cosine similarity only the directions matter).
    * ``"positive"``: ``|U(0, scale)|``, the authors' MLP setting with dot-product similarity.
    * ``"normal"``: ``N(0, scale^2)``.
    * ``"bins"``: the scalar-feature bins ``1..num_codes`` as ``[num_codes, 1]`` (``dim`` must be 1,
      ``key`` and ``scale`` are ignored); use with ``similarity="bins"``.

  Args:
    key: a ``jax.random`` key (ignored for ``"bins"``).
    num_codes: ``K >= 1``.
    dim: feature dimension ``D >= 1``.
    init: one of ``"uniform"``, ``"positive"``, ``"normal"``, ``"bins"``.
    scale: positive scale of the distribution.

  Returns:
    ``[num_codes, dim]`` float32 codebook.

  Example:
    >>> codes = fierce_codes(jax.random.PRNGKey(0), 100, 64)
    >>> codes.shape
    (100, 64)
  """
  if not isinstance(num_codes, int) or num_codes < 1:
    raise ValueError(f"`num_codes` must be a positive int, got {num_codes!r}.")
  if not isinstance(dim, int) or dim < 1:
    raise ValueError(f"`dim` must be a positive int, got {dim!r}.")
  if init not in CODE_INITS:
    raise ValueError(f"`init` must be one of {CODE_INITS}, got {init!r}.")
  if init != "bins" and not scale > 0:
    raise ValueError(f"`scale` must be > 0, got {scale!r}.")
  shape = (num_codes, dim)
  if init == "bins":
    if dim != 1:
      raise ValueError(
          f"`dim` must be 1 for init='bins' (scalar feature), got {dim}.")
    return jnp.arange(1, num_codes + 1, dtype=jnp.float32)[:, None]
  if init == "uniform":
    return jax.random.uniform(key, shape, jnp.float32, -scale, scale)
  if init == "positive":
    return jnp.abs(jax.random.uniform(key, shape, jnp.float32, 0.0, scale))
  return scale * jax.random.normal(key, shape, jnp.float32)


def _concrete(x) -> bool:
  """True for Python/numpy numbers: hyperparameters may also be traced (e.g. a swept lambda)."""
  return not isinstance(x, jax.core.Tracer)


def _l2_normalize(x, eps=1e-12):
  # rsqrt(max(|x|^2, eps^2)) keeps the gradient finite at x = 0.
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _check_not_empty(features):
  shape = _checks.shape_of(features)
  if len(shape) >= 1 and shape[0] == 0:
    raise ValueError("`features` must not be empty (a batch statistic needs at least one "
                     f"example), got shape {shape}.")


def _as_matrix_features(features, similarity):
  """Features as ``[B, D]``; a scalar-feature ``[B]`` is accepted for ``bins``."""
  _check_not_empty(features)
  shape = _checks.shape_of(features)
  _checks.check_nonempty(features, "features")
  if similarity == "bins" and len(shape) == 1:
    return jnp.reshape(features, (-1, 1))
  _checks.check_rank(features, 2, "features", "[batch, dim]")
  return features


def fierce_logits(features, codes, *, similarity: str = "cosine",
                  logit_scale: float = 1.0):
  """Similarity logits ``s [B, K]`` between features and the (stopped) codes.

  ``cosine``: ``s_ik = <f_i, c_k> / (|f_i| |c_k|)``; ``dot``: ``s_ik = <f_i, c_k>``;
  ``bins`` (scalar feature ``f_i``, codes = bin centres ``[K]`` or ``[K, 1]``):
  ``s_ik = -(f_i - c_k)^2``. All multiplied by ``logit_scale``. The codes never get a gradient.

  Args:
    features: ``[batch, dim]`` floating (``[batch]`` or ``[batch, 1]`` for ``bins``).
    codes: ``[num_codes, dim]`` floating (``[num_codes]`` or ``[num_codes, 1]`` for ``bins``).
    similarity: ``"cosine"``, ``"dot"`` or ``"bins"``.
    logit_scale: positive multiplier of the logits.

  Returns:
    ``[batch, num_codes]`` float32 logits.
  """
  if similarity not in SIMILARITIES:
    raise ValueError(
        f"`similarity` must be one of {SIMILARITIES}, got {similarity!r}.")
  if _concrete(logit_scale) and not logit_scale > 0:
    raise ValueError(f"`logit_scale` must be > 0, got {logit_scale!r}.")
  _checks.check_floating(features, "features")
  _checks.check_floating(codes, "codes")
  f = _checks.as_f32(_as_matrix_features(features, similarity))
  c = _checks.shape_of(codes)
  if similarity == "bins":
    if f.shape[1] != 1:
      raise ValueError(
          "`features` must have shape [batch] or [batch, 1] for similarity='bins' (a scalar "
          f"feature), got {_checks.shape_of(features)}.")
    if len(c) == 1:
      codes = jnp.reshape(codes, (-1, 1))
    _checks.check_shape(codes, (None, 1), "codes")
  else:
    _checks.check_rank(codes, 2, "codes", "[num_codes, dim]")
    if c[1] != f.shape[1]:
      raise ValueError(
          f"`codes` must have shape [num_codes, {f.shape[1]}] to match `features` "
          f"{_checks.shape_of(features)}, got {c}.")
  codes = jax.lax.stop_gradient(_checks.as_f32(codes))
  if similarity == "cosine":
    s = _l2_normalize(f) @ _l2_normalize(codes).T
  elif similarity == "dot":
    s = f @ codes.T
  else:
    s = -jnp.square(f - codes[:, 0][None, :])
  return logit_scale * s


def _entropy_bits(p, eps):
  if eps > 0:
    return -jnp.sum(p * jnp.log2(p + eps))
  safe = jnp.where(p > 0, p, 1.0)
  return -jnp.sum(jnp.where(p > 0, p * jnp.log2(safe), 0.0))


def fierce_assignments(features, codes, key=None, *, temperature: float = 1.0,
                       similarity: str = "cosine", logit_scale: float = 1.0):
  """Hard (Gumbel-)argmax code assignments ``z [B, K]`` with a straight-through gradient.

  ``z_i = onehot(argmax_k(s_ik + g_ik))`` forward and the gradient of
  ``softmax((s_i + g_i) / temperature)`` backward; ``g`` is standard Gumbel noise drawn from ``key``,
  or 0 when ``key`` is None.

  Returns:
    ``[batch, num_codes]`` float32 one-hot rows.
  """
  if _concrete(temperature) and not temperature > 0:
    raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
  s = fierce_logits(features, codes, similarity=similarity, logit_scale=logit_scale)
  if key is not None:
    s = s + jax.random.gumbel(key, s.shape, jnp.float32)
  # The row maximum out first: s / temperature overflows for a tiny temperature (NaN under jit);
  # (s - max) / temperature is <= 0 and gives the same softmax.
  soft = jax.nn.softmax((s - jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True)))
                        / temperature, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(s, axis=-1), s.shape[-1], dtype=soft.dtype)
  # Forward value exactly `hard` (x - x == 0 in floats); backward the softmax Jacobian.
  return hard + (soft - jax.lax.stop_gradient(soft))


def fierce_entropy(features: ArrayLike, codes: ArrayLike, key: Optional[ArrayLike] = None, *,
                   temperature: float = 1.0, similarity: str = "cosine", logit_scale: float = 1.0,
                   axis_name: Optional[str] = None, where: Optional[ArrayLike] = None,
                   eps: float = REFERENCE_EPS) -> jax.Array:
  """FIERCE entropy estimate of the features, in bits (a batch-level scalar).

  ``p_k = sum_i w_i z_ik / sum_i w_i`` over the (global) batch, with ``z`` from
  ``fierce_assignments`` and ``w`` the ``where`` mask; ``H = -sum_k p_k log2(p_k + eps)``.
  ``0 <= H <= log2 min(B, K)``. The gradient reaches ``features`` through the straight-through
  softmax; ``codes`` never get one.

  Args:
    features: ``[batch, dim]`` floating (``[batch]`` allowed for ``similarity="bins"``).
    codes: ``[num_codes, dim]`` fixed codebook from ``fierce_codes``.
    key: optional ``jax.random`` key for the Gumbel noise (training). ``None``: no noise, the plain
      argmax histogram (logging, tests); its straight-through gradient goes through
      ``softmax(s / temperature)``.
    temperature: ``tau > 0`` of the soft relaxation (only affects gradients).
    similarity: ``"cosine"``, ``"dot"`` or ``"bins"`` (see ``fierce_logits``).
    logit_scale: multiplies the similarities before the noise.
    axis_name: when set (under ``pmap``/``shard_map``), counts and example numbers are ``psum``-ed
      over this axis: the histogram is that of the global batch. Pass a different ``key`` per device.
    where: optional ``[batch]`` boolean mask of examples that enter the histogram.
    eps: the authors' ``1e-21`` inside ``log2`` (reference parity); ``0`` uses ``0 log 0 = 0`` with a
      zero gradient on empty bins.

  Returns:
    float32 scalar, the entropy in bits.

  Example:
    >>> codes = fierce_codes(jax.random.PRNGKey(0), 100, 8)
    >>> f = jax.random.normal(jax.random.PRNGKey(1), (32, 8))
    >>> h_log = fierce_entropy(f, codes)                          # noiseless, for logging
    >>> h_train = fierce_entropy(f, codes, jax.random.PRNGKey(2))  # Gumbel, for the loss

  Reference: Baena, Drumetz, Gripon, arXiv 2208.03684 (ICASSP 2023).
  """
  if eps < 0:
    raise ValueError(f"`eps` must be >= 0, got {eps!r}.")
  z = fierce_assignments(features, codes, key, temperature=temperature,
                         similarity=similarity, logit_scale=logit_scale)
  _checks.check_where(where, z.shape[0])
  w = (jnp.ones((z.shape[0],), z.dtype) if where is None
       else jnp.asarray(where, bool).astype(z.dtype))
  counts = jnp.sum(w[:, None] * z, axis=0)
  n = jnp.sum(w)
  if axis_name is not None:
    counts = jax.lax.psum(counts, axis_name)
    n = jax.lax.psum(n, axis_name)
  p = counts / jnp.maximum(n, 1.0)
  return _entropy_bits(p, eps)


def koleo_entropy(features: ArrayLike, *, axis_name: Optional[str] = None,
                  where: Optional[ArrayLike] = None, eps: float = 1e-8) -> jax.Array:
  """Kozachenko-Leonenko ("KoLeo") entropy surrogate; NOT the paper's estimator.

  ``H_KL = mean_i log(min_{j != i} |f_i / |f_i| - f_j / |f_j|| + eps)`` (nats, up to the
  estimator's additive constants and its factor ``D``): the log distance of each L2-normalized
  feature to its nearest other feature in the batch, the diagonal masked. As in DINOv2's KoLeo
  regularizer (Sablayrolles et al., "Spreading vectors for similarity search", 2019).

  Args:
    features: ``[batch, dim]`` floating.
    axis_name: when set, features are all-gathered over this axis: neighbours come from the global
      batch and the mean is global (equals the single-device value on the concatenated batch).
    where: optional ``[batch]`` boolean mask; masked examples are neither queries nor neighbours.
    eps: added inside the log (``log(d + eps)``).

  Returns:
    float32 scalar (higher = more spread features).

  Example:
    >>> round(float(koleo_entropy(jnp.eye(4))), 6)  # every distance sqrt(2): log(sqrt(2)) = 0.346574
    0.346574
  """
  _checks.check_rank(features, 2, "features", "[batch, dim]")
  _checks.check_nonempty(features, "features")
  _checks.check_floating(features, "features")
  b = features.shape[0]
  _checks.check_where(where, b)
  if not eps > 0:
    raise ValueError(f"`eps` must be > 0, got {eps!r}.")
  x = _l2_normalize(_checks.as_f32(features))
  w = jnp.ones((b,), bool) if where is None else jnp.asarray(where, bool)
  if axis_name is None:
    xa, wa, offset = x, w, 0
  else:
    xa = jax.lax.all_gather(x, axis_name, tiled=True)
    wa = jax.lax.all_gather(w, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * b
  d2 = jnp.maximum(2.0 - 2.0 * (x @ xa.T), 0.0)             # [b, B_global]
  self_mask = (jnp.arange(b) + offset)[:, None] == jnp.arange(xa.shape[0])[None, :]
  d2 = jnp.where(self_mask | ~wa[None, :], jnp.inf, d2)
  nn2 = jnp.min(d2, axis=1)
  valid = w & jnp.isfinite(nn2)          # an example with no unmasked neighbour is left out
  # sqrt with a zero (not NaN) gradient at duplicate points.
  pos = valid & (nn2 > 0)
  nn = jnp.where(pos, jnp.sqrt(jnp.where(pos, nn2, 1.0)), 0.0)
  logs = jnp.where(valid, jnp.log(nn + eps), 0.0)
  wf = valid.astype(jnp.float32)
  total, n = jnp.sum(logs), jnp.sum(wf)
  if axis_name is not None:
    total = jax.lax.psum(total, axis_name)
    n = jax.lax.psum(n, axis_name)
  return total / jnp.maximum(n, 1.0)


def fierce_objective(ce: ArrayLike, entropy: ArrayLike, *, lam: float = 1.0,
                     form: str = "difference", max_entropy: Optional[float] = None) -> jax.Array:
  """Combines per-example cross-entropy with a batch entropy estimate.

  ``form="difference"``: ``L_i = CE_i - lam * H`` (the paper's main form; can be negative).
  ``form="convex"``: ``L_i = CE_i / (1 + lam) + lam / (1 + lam) * (max_entropy - H)`` (the age
  experiment, ``lam = a = 0.2``, ``max_entropy = log2 K``); non-negative when ``H <= max_entropy``.

  Args:
    ce: ``[batch]`` per-example cross-entropy.
    entropy: scalar entropy estimate (bits for FIERCE).
    lam: ``lambda`` (difference) or ``a`` (convex), ``>= 0``.
    form: ``"difference"`` or ``"convex"``.
    max_entropy: the entropy's upper bound, required for ``"convex"``.

  Returns:
    ``[batch]`` per-example objective (its mean is the batch objective).
  """
  if form not in FORMS:
    raise ValueError(f"`form` must be one of {FORMS}, got {form!r}.")
  if _concrete(lam) and not lam >= 0:
    raise ValueError(f"`lam` must be >= 0, got {lam!r}.")
  _checks.check_rank(ce, 1, "ce", "[batch]")
  if _checks.shape_of(entropy) != ():
    raise ValueError(f"`entropy` must be a scalar, got shape {_checks.shape_of(entropy)}.")
  ce = _checks.as_f32(ce)
  if form == "difference":
    return ce - lam * entropy
  if max_entropy is None:
    raise ValueError("`max_entropy` must be given for form='convex' (log2 K for FIERCE), got None.")
  if _concrete(max_entropy) and not (np.ndim(max_entropy) == 0 and float(max_entropy) >= 0
                                     and np.isfinite(float(max_entropy))):
    raise ValueError(f"`max_entropy` (the entropy's upper bound, log2 K) must be a finite number "
                     f">= 0, got {max_entropy!r}.")
  return ce / (1.0 + lam) + (lam / (1.0 + lam)) * (max_entropy - entropy)


def fierce_loss(logits: ArrayLike, labels: ArrayLike, features: ArrayLike, codes: ArrayLike,
                key: Optional[ArrayLike] = None, *, lam: float = 1.0, form: str = "difference",
                temperature: float = 1.0, similarity: str = "cosine", logit_scale: float = 1.0,
                axis_name: Optional[str] = None, where: Optional[ArrayLike] = None,
                eps: float = REFERENCE_EPS) -> jax.Array:
  """FIERCE loss: cross-entropy on the (coarse) labels minus ``lam`` times the feature entropy.

  ``difference``: ``L_i = CE(z_i, y_i) - lam * H``; ``convex``:
  ``L_i = CE_i / (1 + lam) + lam / (1 + lam) (log2 K - H)``, with ``H = fierce_entropy(...)`` in bits,
  a global-batch statistic when ``axis_name`` is set. ``lam = 0`` is plain cross-entropy.

  Args:
    logits: ``[batch, num_classes]`` floating (coarse classifier).
    labels: ``[batch]`` integer coarse labels.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    features: ``[batch, dim]`` penultimate features (``[batch]`` for ``similarity="bins"``).
    codes: ``[num_codes, dim]`` fixed codebook (``fierce_codes``).
    key: Gumbel key (training) or None (noiseless).
    lam: ``lambda`` or the convex weight ``a``.
    form: ``"difference"`` or ``"convex"``.
    temperature, similarity, logit_scale, axis_name, eps: see ``fierce_entropy``.
    where: optional ``[batch]`` mask: masked examples give 0 and stay out of the histogram.

  Returns:
    ``[batch]`` per-example losses (float32); reduce with the mean over unmasked examples.

  Example:
    >>> codes = fierce_codes(jax.random.PRNGKey(0), 100, 8)        # [K, D], fixed
    >>> features = jax.random.normal(jax.random.PRNGKey(1), (4, 8))  # the model's [B, D] features
    >>> logits, y = jnp.zeros((4, 2)), jnp.array([0, 1, 0, 1])        # its [B, C] logits, labels
    >>> fierce_loss(logits, y, features, codes, jax.random.PRNGKey(2), lam=1.0).shape
    (4,)

  Reference: Baena, Drumetz, Gripon, arXiv 2208.03684 (ICASSP 2023).
  """
  ce = softmax_cross_entropy(logits, labels)
  fb = _checks.shape_of(features)[0] if _checks.shape_of(features) else None
  if fb != ce.shape[0]:
    raise ValueError(
        f"`features` must have batch size {ce.shape[0]} (as `logits`), got shape "
        f"{_checks.shape_of(features)}.")
  h = fierce_entropy(features, codes, key, temperature=temperature, similarity=similarity,
                     logit_scale=logit_scale, axis_name=axis_name, where=where, eps=eps)
  k = _checks.shape_of(codes)[0]
  out = fierce_objective(ce, h, lam=lam, form=form, max_entropy=math.log2(k))
  return _checks.apply_where(out, where)
