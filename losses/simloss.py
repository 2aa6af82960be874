"""SimLoss: cross-entropy with class similarities, its similarity builders and soft-label baselines.

Kobs, Steininger, Zehe, Lautenschlager, Hotho. "SimLoss: Class Similarities in Cross Entropy",
ISMIS 2020, arXiv:2003.03182.

For logits ``z``, ``p = softmax(z)``, an integer label ``y`` and a ``C x C`` similarity matrix ``S``
(``S[y, y] = 1``, ``0 <= S <= 1``)::

    L = -log( sum_c S[y, c] * p_c )

With ``S = I`` this is softmax cross-entropy. The gradient w.r.t. the logits is ``p - t`` with
``t_c = p_c S[y, c] / sum_k S[y, k] p_k``: the target is the model's own distribution restricted to
(and re-weighted by) the classes similar to ``y``.

Readings chosen here (see docs/simloss.md):

* The default is a numerically stable form (below). The authors' code takes probabilities and
  returns ``-log(sum_c S[y, c] p_c + 1e-8)``; ``epsilon=1e-8`` reproduces that exactly (note that it
  caps the loss near ``-log(1e-8) = 18.42`` and shrinks the gradient of badly wrong examples).
* Entries with ``S = 0`` contribute nothing to the value, but the gradient w.r.t. ``similarity``
  there is the true one, ``-p_c / q``, computed without ``0 * inf`` (no NaN) and capped at
  ``exp(80)``. The derivative is written by hand (``jax.custom_jvp``): ``p - t`` for the logits and
  ``-p / q`` for the similarity row, from the exponentials of the forward pass.
* Implementation (``losses._weighted_lse``, shared with collision cross-entropy):
  ``logsumexp(z) - log(sum_c S_c e^z_c)``, one exponential per entry, the second sum shifted by
  the largest logit among the similar classes, so it cannot underflow even when every similar
  class is hundreds of nats below the top logit (the loss is then large but exact, with no 18.4
  cap). Similarity entries below the smallest normal float32 (1.2e-38) count as 0.
* Soft targets ``t`` (rows on the simplex) use the expected similarity row ``t @ S``.
* The builders and host validators are plain functions that return ``float32`` arrays. They
  validate their hyperparameters when those are concrete Python/NumPy values; under a JAX transform
  (e.g. ``jax.grad`` w.r.t. ``r``) the value checks are skipped, the shape checks still run.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from labelwise.losses import _checks
from labelwise.losses import _weighted_lse


# ----------------------------------------------------------------------------------------------
# Shared maths
# ----------------------------------------------------------------------------------------------


def _loss_from_rows(logits, rows, epsilon):
  x = _checks.as_f32(logits)
  # Shift by the row maximum (exact for the entries near it); the loss is shift invariant.
  x = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  rows = _checks.as_f32(rows)
  if epsilon is not None:
    # The authors' reference form: -log(sum_c S_c p_c + eps), p = softmax(z).
    e = jnp.exp(x)
    return -jnp.log(jnp.sum(rows * e, axis=-1) / jnp.sum(e, axis=-1) + epsilon)
  # -log(sum_c S_c p_c) = logsumexp(x) - log(sum_c S_c e^x_c), with a hand-written derivative
  # (p - t for the logits, -p / q for the weights) so that nothing is recomputed in log space.
  return _weighted_lse.weighted_log_ratio(x, rows)


def _check_similarity_for_logits(similarity, logits):
  num_classes = _checks.shape_of(logits)[-1]
  s_shape = _checks.shape_of(similarity)
  if s_shape != (num_classes, num_classes):
    raise ValueError(
        f"`similarity` must have shape [num_classes, num_classes] = [{num_classes}, {num_classes}] "
        f"to match `logits` of shape {_checks.shape_of(logits)}, got `similarity` of shape "
        f"{s_shape}.")
  _checks.check_floating(similarity, "similarity")


def _check_epsilon(epsilon):
  if epsilon is None:
    return
  if isinstance(epsilon, jax.core.Tracer):
    return
  eps = float(np.asarray(epsilon))
  if not (np.isfinite(eps) and eps >= 0.0):
    raise ValueError(f"`epsilon` must be None or a finite number >= 0, got {epsilon!r}.")


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def simloss(logits: ArrayLike, labels: ArrayLike, similarity: ArrayLike, *, axis: int = -1,
            where: Optional[ArrayLike] = None, epsilon: Optional[float] = None) -> jax.Array:
  """SimLoss: cross-entropy on the similarity-weighted probability of the true class.

  ``L_i = -log( sum_c S[y_i, c] softmax(z_i)_c )``, computed as
  ``logsumexp_c(z_i) - logsumexp_c(z_i,c + log S[y_i, c])``, the second over ``S[y_i, c] > 0``
  (stable, default), or as
  the authors' ``-log(sum_c S[y_i, c] p_c + epsilon)`` when ``epsilon`` is given (``1e-8`` in their
  code). With ``S = I`` this equals softmax cross-entropy; its gradient w.r.t. the logits is
  ``p - t`` with ``t_c = p_c S[y, c] / sum_k S[y, k] p_k``.

  Args:
    logits: ``[..., num_classes]`` floating (any leading batch dimensions; class axis ``axis``).
    labels: ``[...]`` integer class indices in ``[0, num_classes)`` (the batch shape).
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    similarity: ``[num_classes, num_classes]`` floating, ``S[y, y] = 1``, entries in ``[0, 1]``
      (build it with :func:`ordinal_similarity`, :func:`superclass_similarity` or
      :func:`embedding_similarity`, or check your own with :func:`validate_similarity`). It is an
      array argument, so a new matrix of the same shape does not recompile a jitted caller.
    axis: the class axis of ``logits`` (default -1).
    where: optional boolean mask of the batch shape (or one that broadcasts to it); masked
      examples give 0.
    epsilon: ``None`` (stable form) or a number ``>= 0`` added to the weighted probability before
      the log (reference parity with the authors' PyTorch code: ``epsilon=1e-8``).

  Returns:
    ``[...]`` per-example losses (float32), the batch shape.

  Example:
    >>> s = ordinal_similarity(3, reduction_factor=0.5)      # [[1, .5, .25], [.5, 1, .5], ...]
    >>> simloss(jnp.zeros((1, 3)), jnp.array([0]), s)       # -log((1 + .5 + .25) / 3)
    Array([0.5389965], dtype=float32)

  Paper: Kobs et al., "SimLoss: Class Similarities in Cross Entropy", ISMIS 2020, arXiv:2003.03182.
  """
  z, batch = _checks.class_rows(logits, axis)
  y = _checks.label_rows(labels, batch)
  _check_similarity_for_logits(similarity, z)
  w = _checks.where_rows(where, batch)
  _check_epsilon(epsilon)
  rows = _checks.as_f32(similarity)[y.astype(jnp.int32)]  # [N, C] gather
  loss = _loss_from_rows(z, rows, epsilon)
  return _checks.apply_where(loss, w).reshape(batch)


def simloss_with_targets(logits: ArrayLike, targets: ArrayLike, similarity: ArrayLike, *,
                         axis: int = -1, where: Optional[ArrayLike] = None,
                         epsilon: Optional[float] = None) -> jax.Array:
  """SimLoss against probability targets: the similarity row is the expected row ``t @ S``.

  ``L_i = -log( sum_c (t_i @ S)_c softmax(z_i)_c )``. For one-hot ``t`` this equals :func:`simloss`.
  For soft ``t`` on the simplex and ``S`` with unit diagonal, ``(t @ S)_c >= t_c`` so the argument of
  the log is at least ``sum_c t_c p_c > 0``. Note that this is the log of an expectation, not the
  expectation of per-class SimLosses (that would be ``sum_k t_k simloss(z, k)``); we chose the
  "expected similarity row" reading because it keeps one log per example and reduces to
  ``-log sum_c t_c p_c`` (not to cross-entropy with targets) when ``S = I``.

  Args:
    logits: ``[..., num_classes]`` floating (class axis ``axis``).
    targets: the shape of ``logits``, non-negative rows (normally on the probability simplex).
    similarity: ``[num_classes, num_classes]`` similarity matrix, as for :func:`simloss`.
    axis: the class axis (default -1).
    where: optional boolean mask of the batch shape (or broadcasting to it); masked examples give 0.
    epsilon: ``None`` (stable form) or the authors' additive constant, as for :func:`simloss`.

  Returns:
    ``[...]`` per-example losses (float32), the batch shape.

  Example:
    >>> s = superclass_similarity(jnp.array([0, 0, 1]), reduction_factor=0.5)
    >>> t = jnp.array([[0.5, 0.5, 0.0]])                    # t @ S = [.75, .75, 0]
    >>> simloss_with_targets(jnp.zeros((1, 3)), t, s)       # -log(1.5 / 3)
    Array([0.6931472], dtype=float32)

  Paper: Kobs et al., ISMIS 2020 (integer labels only; the soft-target row is our extension).
  """
  z, batch = _checks.class_rows(logits, axis)
  t = _checks.rows_like(targets, logits, axis, "targets")
  _check_similarity_for_logits(similarity, z)
  w = _checks.where_rows(where, batch)
  _check_epsilon(epsilon)
  rows = _checks.as_f32(t) @ _checks.as_f32(similarity)
  loss = _loss_from_rows(z, rows, epsilon)
  return _checks.apply_where(loss, w).reshape(batch)


# ----------------------------------------------------------------------------------------------
# Similarity builders and validation (host side)
# ----------------------------------------------------------------------------------------------


def _concrete(x):
  """NumPy value of ``x`` or None when ``x`` is traced (value checks are then skipped)."""
  if isinstance(x, jax.core.Tracer):
    return None
  return np.asarray(x)


def _check_unit_interval(value, name: str, what: str):
  v = _concrete(value)
  if v is None:
    return
  if v.shape != ():
    raise ValueError(f"`{name}` ({what}) must be a scalar, got shape {v.shape}.")
  v = float(v)
  if not (np.isfinite(v) and 0.0 <= v < 1.0):
    raise ValueError(f"`{name}` ({what}) must be in [0, 1), got {value!r}.")


def validate_similarity(similarity: ArrayLike, num_classes: Optional[int] = None, *,
                        atol: float = 1e-6) -> np.ndarray:
  """Checks a similarity matrix on the host and returns it as a float32 NumPy array.

  Requirements: square ``[C, C]`` (and ``C == num_classes`` when given), finite, entries in
  ``[0, 1]``, diagonal equal to 1 (within ``atol``).

  Args:
    similarity: array-like ``[C, C]``.
    num_classes: optional expected ``C``.
    atol: tolerance of the range and diagonal checks.

  Returns:
    ``np.ndarray`` float32 ``[C, C]``.

  Raises:
    ValueError naming what is wrong (shape, the first offending entry and its value).

  Example:
    >>> validate_similarity(np.eye(3)).shape
    (3, 3)
  """
  s = np.asarray(similarity)
  if s.ndim != 2 or s.shape[0] != s.shape[1]:
    raise ValueError(f"`similarity` must be a square [C, C] matrix, got shape {s.shape}.")
  if num_classes is not None and s.shape[0] != num_classes:
    raise ValueError(
        f"`similarity` must have shape [{num_classes}, {num_classes}] (num_classes={num_classes}), "
        f"got {s.shape}.")
  if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
    raise ValueError(f"`similarity` must be a real numeric matrix, got dtype {s.dtype}.")
  s = s.astype(np.float64)
  if not np.all(np.isfinite(s)):
    i, j = np.argwhere(~np.isfinite(s))[0]
    raise ValueError(f"`similarity` must be finite, got similarity[{i}, {j}] = {s[i, j]}.")
  bad = (s < -atol) | (s > 1.0 + atol)
  if np.any(bad):
    i, j = np.argwhere(bad)[0]
    raise ValueError(
        f"`similarity` entries must be in [0, 1], got similarity[{i}, {j}] = {s[i, j]}.")
  diag = np.diag(s)
  bad_diag = np.abs(diag - 1.0) > atol
  if np.any(bad_diag):
    i = int(np.argmax(bad_diag))
    raise ValueError(
        f"`similarity` must have a diagonal of 1 (a class is fully similar to itself), got "
        f"similarity[{i}, {i}] = {diag[i]}.")
  return np.clip(s, 0.0, 1.0).astype(np.float32)


def ordinal_similarity(num_classes: int, reduction_factor: float) -> jax.Array:
  """Ordinal similarity ``S[i, j] = r ** |i - j|`` (the paper's age-estimation matrix).

  Built as ``where(|i - j| == 0, 1, r ** |i - j|)`` so that ``r = 0`` gives the identity (plain
  cross-entropy) with a defined gradient w.r.t. ``r``.

  Args:
    num_classes: ``C >= 1``.
    reduction_factor: ``r`` in ``[0, 1)`` (a scalar; may be traced, e.g. under ``jax.grad``).

  Returns:
    ``[C, C]`` float32 ``jax.Array``.

  Raises:
    ValueError if ``num_classes < 1`` or ``r`` is outside ``[0, 1)``.

  Example:
    >>> ordinal_similarity(3, reduction_factor=0.5)
    Array([[1.  , 0.5 , 0.25],
           [0.5 , 1.  , 0.5 ],
           [0.25, 0.5 , 1.  ]], dtype=float32)
  """
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
      or num_classes < 1:
    raise ValueError(f"`num_classes` must be an integer >= 1, got {num_classes!r}.")
  _check_unit_interval(reduction_factor, "reduction_factor", "r of S = r ** |i - j|")
  idx = np.arange(num_classes)
  dist = np.abs(idx[:, None] - idx[None, :]).astype(np.float32)
  r = jnp.asarray(reduction_factor, jnp.float32)
  on_diag = dist == 0
  safe_dist = np.where(on_diag, 1.0, dist)           # no 0 ** 0 (and no 0 * inf gradient) at r = 0
  return jnp.where(on_diag, 1.0, r ** safe_dist).astype(jnp.float32)


def _check_fine_to_coarse(fine_to_coarse):
  f2c = _concrete(fine_to_coarse)
  if f2c is None:
    raise ValueError("`fine_to_coarse` must be a concrete host array, not a traced value.")
  if f2c.ndim != 1 or f2c.shape[0] < 1:
    raise ValueError(
        f"`fine_to_coarse` must be a 1-D [num_classes] array of superclass ids, got shape "
        f"{f2c.shape}.")
  if not np.issubdtype(f2c.dtype, np.integer):
    raise ValueError(
        f"`fine_to_coarse` must hold integer superclass ids, got dtype {f2c.dtype}.")
  if np.any(f2c < 0):
    raise ValueError(
        f"`fine_to_coarse` must hold superclass ids >= 0, got min {int(f2c.min())}.")
  return f2c.astype(np.int64)


def superclass_similarity(fine_to_coarse: ArrayLike, reduction_factor: float) -> jax.Array:
  """Superclass similarity: 1 on the diagonal, ``r`` within a superclass, 0 across superclasses.

  Our extension of the paper for datasets with a two-level hierarchy (e.g. CIFAR-100's 20
  superclasses): ``S[i, j] = 1 if i == j, r if coarse(i) == coarse(j), else 0``.

  Args:
    fine_to_coarse: ``[num_classes]`` integer superclass id of every class (host array).
    reduction_factor: ``r`` in ``[0, 1)`` (scalar; may be traced).

  Returns:
    ``[C, C]`` float32 ``jax.Array``.

  Raises:
    ValueError for a bad ``fine_to_coarse`` (rank, dtype, negative ids) or ``r`` outside ``[0, 1)``.

  Example:
    >>> superclass_similarity(np.array([0, 0, 1]), reduction_factor=0.3)
    Array([[1. , 0.3, 0. ],
           [0.3, 1. , 0. ],
           [0. , 0. , 1. ]], dtype=float32)
  """
  f2c = _check_fine_to_coarse(fine_to_coarse)
  _check_unit_interval(reduction_factor, "reduction_factor", "r within a superclass")
  c = f2c.shape[0]
  same = f2c[:, None] == f2c[None, :]
  eye = np.eye(c, dtype=bool)
  r = jnp.asarray(reduction_factor, jnp.float32)
  return jnp.where(eye, 1.0, jnp.where(same, r, 0.0)).astype(jnp.float32)


def embedding_similarity(embeddings: ArrayLike, lower_bound: float) -> np.ndarray:
  """Similarity from class embeddings: ``S = max(0, (cos - b) / (1 - b))``, diagonal 1.

  The paper's CIFAR-100 route (word2vec vectors of the class names). ``cos`` is the cosine
  similarity of the rows of ``embeddings``; ``b`` in ``[0, 1)`` is the lower bound below which two
  classes count as dissimilar. The result is clipped to ``[0, 1]`` against rounding.

  Args:
    embeddings: ``[num_classes, dim]`` real (host array), no all-zero row.
    lower_bound: ``b`` in ``[0, 1)``.

  Returns:
    ``[C, C]`` float32 ``np.ndarray``.

  Raises:
    ValueError for a bad shape, non-finite values, an all-zero row, or ``b`` outside ``[0, 1)``.

  Example:
    >>> embedding_similarity(np.array([[1., 0.], [1., 1.], [0., 1.]]), lower_bound=0.5).round(3)
    array([[1.   , 0.414, 0.   ],
           [0.414, 1.   , 0.414],
           [0.   , 0.414, 1.   ]], dtype=float32)
  """
  e = np.asarray(embeddings)
  if e.ndim != 2 or e.shape[0] < 1 or e.shape[1] < 1:
    raise ValueError(
        f"`embeddings` must be a [num_classes, dim] matrix, got shape {e.shape}.")
  if not np.issubdtype(e.dtype, np.number) or np.issubdtype(e.dtype, np.complexfloating):
    raise ValueError(f"`embeddings` must be real, got dtype {e.dtype}.")
  e = e.astype(np.float64)
  if not np.all(np.isfinite(e)):
    raise ValueError("`embeddings` must be finite, got NaN or inf entries.")
  norms = np.linalg.norm(e, axis=1)
  if np.any(norms == 0):
    raise ValueError(
        f"`embeddings` rows must be non-zero (cosine similarity is undefined), row "
        f"{int(np.argmin(norms))} is all zeros.")
  _check_unit_interval(lower_bound, "lower_bound", "b of S = max(0, (cos - b) / (1 - b))")
  b = float(lower_bound)
  unit = e / norms[:, None]
  cos = unit @ unit.T
  s = np.clip((cos - b) / (1.0 - b), 0.0, 1.0)
  np.fill_diagonal(s, 1.0)
  return s.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Baseline soft targets (cross-entropy against them: softmax_cross_entropy_with_targets)
# ----------------------------------------------------------------------------------------------


def _check_labels_1d(labels, name="labels"):
  _checks.check_integer(labels, name)
  _checks.check_rank(labels, 1, name, "[batch]")


def smoothed_targets(labels: ArrayLike, num_classes: int, *, alpha: ArrayLike) -> jax.Array:
  """Label-smoothing targets ``(1 - alpha) * onehot(y) + alpha / C`` (as ``optax.smooth_labels``).

  Args:
    labels: ``[batch]`` integer class indices.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    num_classes: ``C``.
    alpha: smoothing in ``[0, 1]``.

  Returns:
    ``[batch, C]`` float32 rows on the simplex.

  Example:
    >>> smoothed_targets(jnp.array([1]), 3, alpha=0.3)
    Array([[0.1, 0.8, 0.1]], dtype=float32)

  Paper: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016.
  """
  _check_labels_1d(labels)
  if (not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool)
      or num_classes < 1):
    raise ValueError(f"`num_classes` must be a Python int >= 1, got {num_classes!r}.")
  a = _concrete(alpha)
  if a is not None and not (a.shape == () and 0.0 <= float(a) <= 1.0):
    raise ValueError(f"`alpha` must be a scalar in [0, 1], got {alpha!r}.")
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return (1.0 - alpha) * onehot + alpha / num_classes


def label_smoothing_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, alpha: ArrayLike,
                                  axis: int = -1, where: Optional[ArrayLike] = None) -> jax.Array:
  """Cross-entropy against label-smoothing targets: ``-sum_c ((1-a) 1[c=y] + a/C) log p_c``.

  Args:
    logits: ``[..., num_classes]`` floating (class axis ``axis``).
    labels: ``[...]`` integer class indices (the batch shape).
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    alpha: smoothing in ``[0, 1]``.
    axis: the class axis (default -1).
    where: optional boolean mask of the batch shape (or broadcasting to it); masked examples give 0.

  Returns:
    ``[...]`` per-example losses (float32), the batch shape.

  Example:
    >>> label_smoothing_cross_entropy(jnp.zeros((1, 4)), jnp.array([2]), alpha=0.1)  # log 4
    Array([1.3862942], dtype=float32)

  Paper: Szegedy et al., CVPR 2016.
  """
  z, batch = _checks.class_rows(logits, axis)
  y = _checks.label_rows(labels, batch)
  w = _checks.where_rows(where, batch)
  t = smoothed_targets(y, z.shape[-1], alpha=alpha)
  logp = jax.nn.log_softmax(_checks.as_f32(z), axis=-1)
  return _checks.apply_where(-jnp.sum(t * logp, axis=-1), w).reshape(batch)


def sord_targets(labels: ArrayLike, num_classes: int, *, scale: ArrayLike) -> jax.Array:
  """SORD soft ordinal targets ``t_c = softmax_c(-scale * (c - y) ** 2)``.

  Diaz & Marathe, "Soft Labels for Ordinal Regression", CVPR 2019, with the squared distance
  ``phi(c, y) = scale * (c - y) ** 2`` between class indices. Train with
  ``softmax_cross_entropy_with_targets(logits, sord_targets(...))``.

  Args:
    labels: ``[batch]`` integer class indices.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    num_classes: ``C``.
    scale: ``> 0``; larger is closer to one-hot.

  Returns:
    ``[batch, C]`` float32 rows on the simplex.

  Example:
    >>> sord_targets(jnp.array([1]), 3, scale=1.0)       # [e^-1, 1, e^-1] / (1 + 2 e^-1)
    Array([[0.21194157, 0.5761169 , 0.21194157]], dtype=float32)
  """
  _check_labels_1d(labels)
  s = _concrete(scale)
  if s is not None and not (s.shape == () and np.isfinite(float(s)) and float(s) > 0):
    raise ValueError(f"`scale` must be a finite scalar > 0, got {scale!r}.")
  classes = jnp.arange(num_classes, dtype=jnp.float32)
  d = classes[None, :] - jnp.asarray(labels, jnp.float32)[:, None]
  return jax.nn.softmax(-jnp.asarray(scale, jnp.float32) * d * d, axis=-1)


def hierarchical_targets(labels: ArrayLike, fine_to_coarse: ArrayLike, *,
                         beta: ArrayLike) -> jax.Array:
  """Soft labels from a two-level hierarchy: ``t_c = softmax_c(-beta * d(c, y))``.

  Bertinetto et al., "Making Better Mistakes", CVPR 2020 (soft labels), with the tree distance of
  a two-level hierarchy: ``d = 0`` same class, ``1`` same superclass, ``2`` otherwise.

  Args:
    labels: ``[batch]`` integer class indices.
      Out-of-range values are not checked (jit): -1 scores the last class, C gives NaN; check
      with ``labelwise.losses.validate`` (the trainer checks its data once, when read).
    fine_to_coarse: ``[num_classes]`` integer superclass id of every class (host array).
    beta: ``>= 0``; larger is closer to one-hot (``beta = 0`` is uniform).

  Returns:
    ``[batch, C]`` float32 rows on the simplex.

  Example:
    >>> hierarchical_targets(jnp.array([0]), np.array([0, 0, 1]), beta=1.0)  # [1, e^-1, e^-2] / Z
    Array([[0.66524094, 0.24472848, 0.09003057]], dtype=float32)
  """
  _check_labels_1d(labels)
  f2c = _check_fine_to_coarse(fine_to_coarse)
  b = _concrete(beta)
  if b is not None and not (b.shape == () and np.isfinite(float(b)) and float(b) >= 0):
    raise ValueError(f"`beta` must be a finite scalar >= 0, got {beta!r}.")
  c = f2c.shape[0]
  dist = np.where(np.eye(c, dtype=bool), 0.0,
                  np.where(f2c[:, None] == f2c[None, :], 1.0, 2.0)).astype(np.float32)
  rows = jnp.take(jnp.asarray(dist), jnp.asarray(labels).astype(jnp.int32), axis=0)
  return jax.nn.softmax(-jnp.asarray(beta, jnp.float32) * rows, axis=-1)
