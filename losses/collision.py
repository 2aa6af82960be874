"""Collision cross-entropy, its self-labeling EM, and the clustering baselines.

Zhang & Boykov, "Collision Cross-entropy for Soft Class Labels and Deep Clustering", arXiv 2303.07321
(v1: "Collision Cross-entropy and EM Algorithm for Self-labeled Classification").

For a target distribution ``y`` and a prediction ``sigma = softmax(z)`` the collision cross-entropy is

    H2(y, sigma) = -log sum_k y_k sigma_k

(minus the log-probability that two independent draws, one from each distribution, "collide"). It is
symmetric, equals Shannon's cross-entropy for one-hot ``y``, and is constant (``log K``, zero gradient)
for a uniform target: uncertain targets simply teach less.

Self-labeled clustering estimates pseudo-labels ``Y = (y_1..y_N)`` jointly with the network:

    L(theta, Y) = (1/N) sum_i H2(y_i, sigma_i(theta)) + lambda * fairness(ybar),   ybar = mean_i y_i

with ``fairness = KL(u || ybar)`` ("strong", infinite when a cluster empties) or the classic
``KL(ybar || u) = log K - H(ybar)``. For fixed ``sigma`` the ``Y`` step is solved by an EM
(majorize-minimize) algorithm that runs fully on device in ``lax.while_loop``.

Readings chosen here (the paper's full text was not readable when this was written; see
docs/collision.md):
- The EM is derived from Jensen's inequality on both ``log(sigma_i . y_i)`` and ``log ybar_k``; for the
  strong fairness term this gives the closed-form update
  ``y_ik <- y_ik w_ik / sum_c y_ic w_ic`` with ``w_ik = sigma_ik / (sigma_i . y_i) + lambda u_k / ybar_k``,
  which never increases the objective.
- The classic fairness term ``KL(ybar || u)`` is convex in ``ybar`` and has no such closed-form
  majorizer; for it the same multiplicative update is used with
  ``w_ik = sigma_ik / (sigma_i . y_i) - lambda log ybar_k`` (the negative gradient shifted to be
  positive), safeguarded by backtracking along the segment so that the objective never increases.
- The stopping rule is the relative decrease of the objective, ``(F_prev - F) / |F| < tol``.
- ``lambda`` defaults to 1; the paper's value is not confirmed.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from labelwise.losses import _checks
from labelwise.losses import _weighted_lse

_FAIRNESS = ("strong", "classic")
_CROSS_ENTROPY = ("collision", "shannon")
# Floor for the EM's start point and for logs of probabilities that underflowed to 0.
_TINY = 1e-30


# ----------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_simplex(x, name: str, atol: float = 1e-3) -> None:
  """Raises ValueError if concrete ``x`` has negative entries or rows that do not sum to 1.

  Under ``jit`` the values are not known; the check is then skipped (shapes are still checked).
  The tolerance grows with the rounding of low-precision dtypes (bfloat16 rows are off by ~1e-2).
  """
  if not _is_concrete(x):
    return
  if jnp.issubdtype(jnp.result_type(x), jnp.floating):
    atol = max(atol, 2.0 * float(jnp.finfo(jnp.result_type(x)).eps))
  a = np.asarray(x, dtype=np.float64)
  if a.size == 0:
    return
  if not np.all(np.isfinite(a)):
    raise ValueError(f"`{name}` must be finite probabilities, got non-finite values "
                     f"(shape {a.shape}).")
  if a.min() < -atol:
    raise ValueError(f"`{name}` must be probabilities on the simplex (entries >= 0), got a minimum "
                     f"entry {a.min():.4g} (shape {a.shape}).")
  sums = a.sum(axis=-1)
  worst = np.abs(sums - 1.0).max()
  if worst > atol:
    raise ValueError(f"`{name}` must be probabilities on the simplex (rows summing to 1 along the "
                     f"last axis), got a row sum of {sums.flat[np.abs(sums - 1.0).argmax()]:.6g} "
                     f"(shape {a.shape}).")


def _check_probs(probs, name: str = "probs") -> None:
  _checks.check_rank(probs, 2, name, "[batch, num_classes]")
  _checks.check_nonempty(probs, name)
  _checks.check_floating(probs, name)
  if _checks.shape_of(probs)[1] < 2:
    raise ValueError(f"`{name}` must have at least 2 classes, got shape {_checks.shape_of(probs)}.")
  _check_simplex(probs, name)


def _check_solver_args(fairness_weight, fairness, tol, max_iter) -> None:
  if fairness not in _FAIRNESS:
    raise ValueError(f"`fairness` must be one of {_FAIRNESS}, got {fairness!r}.")
  if _is_concrete(fairness_weight):
    fw = np.asarray(fairness_weight)
    if fw.shape != ():
      raise ValueError(f"`fairness_weight` must be a scalar, got shape {fw.shape}.")
    if not np.isfinite(fw) or fw < 0:
      raise ValueError(f"`fairness_weight` must be a finite number >= 0, got {float(fw)}.")
  if not isinstance(tol, (int, float)) or not np.isfinite(tol) or tol < 0:
    raise ValueError(f"`tol` must be a Python float >= 0 (0 runs exactly `max_iter` iterations), "
                     f"got {tol!r}.")
  if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
    raise ValueError(f"`max_iter` must be a Python int >= 1, got {max_iter!r}.")


def _solver_weights(where, batch: int, axis_name):
  """``(w [batch], kept)`` for the pseudo-label solvers: a concrete ``where`` must keep a row;
  ``kept`` (the global count of kept rows) lets a traced all-False mask give its start point."""
  w = _weights(where, batch)
  if where is not None and _is_concrete(where) and not np.asarray(where).any() and axis_name is None:
    raise ValueError(f"`where` keeps no example (all {batch} entries are False): there is nothing "
                     f"to pseudo-label.")
  return w, _gsum(jnp.sum(w), axis_name)


def _or_start_point(result, sigma, kept):
  """A solver's ``(y, iterations)``, or ``(sigma, 0)`` where no row was kept (instead of NaN)."""
  y, n = result
  return jnp.where(kept > 0, y, sigma), jnp.where(kept > 0, n, 0).astype(n.dtype)


def _weights(where, batch: int):
  _checks.check_where(where, batch)
  if where is None:
    return jnp.ones((batch,), jnp.float32)
  return jnp.asarray(where, bool).astype(jnp.float32)


def _gsum(x, axis_name):
  """Sum over the data axis (identity without one)."""
  return x if axis_name is None else lax.psum(x, axis_name)


# ----------------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------------


def collision_cross_entropy(logits: ArrayLike, targets: ArrayLike, *, axis: int = -1,
                            where: Optional[ArrayLike] = None) -> jax.Array:
  """Collision cross-entropy of a softmax prediction against probability targets.

  ``H2(y, sigma) = -log sum_k y_k softmax(z)_k``, computed as ``-logsumexp(log_softmax(z), b=y)``
  with the maximum taken over the support of ``y``, so extreme logits give exact finite values
  (``z = [100, -100, 0]``, ``y = [0, 0, 1]`` gives 100 with gradient ``[1, 0, -1]``). Equals Shannon's
  cross-entropy for one-hot targets and ``log K`` with zero gradient for uniform targets. The gradient
  with respect to the logits is ``sigma - s`` with ``s = y * sigma / (y . sigma)``.

  Args:
    logits: ``[..., num_classes]`` floating (any leading batch dimensions; class axis ``axis``).
    targets: the shape of ``logits``, rows on the probability simplex along ``axis`` (checked
      when concrete).
    axis: the class axis (default -1).
    where: optional boolean mask of the batch shape (or broadcasting to it); masked examples give 0.

  Returns:
    ``[...]`` per-example losses (float32), the batch shape.

  Example:
    >>> collision_cross_entropy(jnp.array([[100., -100., 0.]]), jnp.array([[0., 0., 1.]]))
    Array([100.], dtype=float32)

  Paper: Zhang & Boykov, "Collision Cross-entropy for Soft Class Labels and Deep Clustering",
  arXiv 2303.07321.
  """
  z, batch = _checks.class_rows(logits, axis)
  y = _checks.rows_like(targets, logits, axis, "targets")
  w = _checks.where_rows(where, batch)
  _check_simplex(y, "targets")
  x = _checks.as_f32(z)
  x = x - lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  # -log(y . softmax(x)) = logsumexp(x) - log(sum_k y_k e^x_k), shifted by the largest logit on the
  # support of y (no underflow), one exponential per entry, with a hand-written derivative (shared
  # with SimLoss): sigma - s for the logits, -sigma_k / (y . sigma) for the targets (finite off
  # the support, capped at exp(80)).
  loss = _weighted_lse.weighted_log_ratio(x, _checks.as_f32(y))
  return _checks.apply_where(loss, w).reshape(batch)


def collision_cross_entropy_with_logits(logits: ArrayLike, target_logits: ArrayLike, *,
                                        axis: int = -1,
                                        where: Optional[ArrayLike] = None) -> jax.Array:
  """Collision cross-entropy between two softmax distributions, both given as logits.

  ``H2(softmax(t), softmax(z)) = -logsumexp(log_softmax(z) + log_softmax(t))``: symmetric, stable for
  any finite logits, and differentiable with respect to both sides (use it when the target
  distribution is itself learned, e.g. a second head or a teacher being trained).

  Args:
    logits: ``[..., num_classes]`` floating (class axis ``axis``).
    target_logits: the shape of ``logits``, floating.
    axis: the class axis (default -1).
    where: optional boolean mask of the batch shape (or broadcasting to it); masked examples give 0.

  Returns:
    ``[...]`` per-example losses (float32), the batch shape.

  Example:
    >>> collision_cross_entropy_with_logits(jnp.zeros((1, 4)), jnp.zeros((1, 4)))  # log 4
    Array([1.3862944], dtype=float32)

  Paper: Zhang & Boykov, arXiv 2303.07321.
  """
  z, batch = _checks.class_rows(logits, axis)
  q = _checks.rows_like(target_logits, logits, axis, "target_logits")
  w = _checks.where_rows(where, batch)
  logp = jax.nn.log_softmax(_checks.as_f32(z), axis=-1)
  logq = jax.nn.log_softmax(_checks.as_f32(q), axis=-1)
  loss = -jax.nn.logsumexp(logp + logq, axis=-1)
  return _checks.apply_where(loss, w).reshape(batch)


# ----------------------------------------------------------------------------------------------------
# The self-labeling objective
# ----------------------------------------------------------------------------------------------------


def _fairness_value(ybar, fairness):
  k = ybar.shape[-1]
  if fairness == "strong":  # KL(u || ybar) = -log K - (1/K) sum_k log ybar_k
    return -jnp.log(k) - jnp.mean(jnp.log(ybar), axis=-1)
  # classic: KL(ybar || u) = sum_k ybar_k log ybar_k + log K
  return jnp.sum(jnp.where(ybar > 0, ybar * jnp.log(jnp.where(ybar > 0, ybar, 1.0)), 0.0),
                 axis=-1) + jnp.log(k)


def _objective(sigma, y, w, n, lam, fairness, cross_entropy, axis_name):
  """F(Y) on (possibly device-local) rows; global through ``axis_name``."""
  if cross_entropy == "collision":
    per_row = -jnp.log(jnp.maximum(jnp.sum(sigma * y, axis=-1), _TINY))
  else:
    per_row = -jnp.sum(y * jnp.log(jnp.maximum(sigma, _TINY)), axis=-1)
  data = _gsum(jnp.sum(w * per_row), axis_name) / n
  ybar = _gsum(jnp.sum(w[:, None] * y, axis=0), axis_name) / n
  return data + lam * _fairness_value(ybar, fairness)


def self_labeling_objective(probs: ArrayLike, pseudo_labels: ArrayLike, *,
                            fairness_weight: ArrayLike = 1.0, fairness: str = "strong",
                            cross_entropy: str = "collision", axis_name: Optional[str] = None,
                            where: Optional[ArrayLike] = None) -> jax.Array:
  """Self-labeling objective ``(1/N) sum_i H(y_i, sigma_i) + lambda * fairness(ybar)``.

  ``H`` is the collision cross-entropy ``-log(y_i . sigma_i)`` (default) or Shannon's
  ``-sum_k y_ik log sigma_ik``; ``fairness`` is ``"strong"``: ``KL(u || ybar)`` or ``"classic"``:
  ``KL(ybar || u)``, with ``ybar = mean_i y_i`` and ``u`` uniform. With ``axis_name`` the rows are
  split across devices and the means are taken over the global batch (psum of sums and counts).

  Args:
    probs: ``[batch, num_classes]`` predictions ``sigma_i`` on the simplex.
    pseudo_labels: ``[batch, num_classes]`` pseudo-labels ``y_i`` on the simplex.
    fairness_weight: ``lambda >= 0``.
    fairness: ``"strong"`` or ``"classic"``.
    cross_entropy: ``"collision"`` or ``"shannon"``.
    axis_name: pmap/shard_map data axis for a global batch, or None.
    where: optional ``[batch]`` mask of the rows that count.

  Returns:
    Scalar objective (float32), the same on every device.

  Example:
    >>> p = jnp.full((2, 2), 0.5)
    >>> self_labeling_objective(p, p)  # log 2 + 0
    Array(0.6931472, dtype=float32)

  Paper: Zhang & Boykov, arXiv 2303.07321.
  """
  _check_probs(probs)
  _check_probs(pseudo_labels, "pseudo_labels")
  _checks.check_shape(pseudo_labels, _checks.shape_of(probs), "pseudo_labels")
  _check_solver_args(fairness_weight, fairness, 1e-5, 1)
  if cross_entropy not in _CROSS_ENTROPY:
    raise ValueError(f"`cross_entropy` must be one of {_CROSS_ENTROPY}, got {cross_entropy!r}.")
  w = _weights(where, _checks.shape_of(probs)[0])
  n = _gsum(jnp.sum(w), axis_name)
  return _objective(_checks.as_f32(probs), _checks.as_f32(pseudo_labels), w, n,
                    jnp.asarray(fairness_weight, jnp.float32), fairness, cross_entropy, axis_name)


# ----------------------------------------------------------------------------------------------------
# Solvers for the pseudo-labels (fixed sigma)
# ----------------------------------------------------------------------------------------------------


def _run_solver(step, objective, y0, tol, max_iter, monotone=True, stats=None):
  """Iterates ``y <- step(y, F(y))`` in ``lax.while_loop`` until the relative decrease is < tol.

  Carries (y, F, aux, rel_decrease, iteration). ``tol <= 0`` runs exactly ``max_iter`` iterations.
  With ``monotone=False`` the stopping test uses the absolute relative change. ``tol`` and
  ``max_iter`` may be traced scalars (one compilation serves every value). With ``stats``,
  ``stats(y) -> (F(y), aux)`` replaces ``objective`` and the step is ``step(y, F, aux)``: the
  pieces of ``F(y)`` that the next step needs anyway (the EM's row dots and column means) are
  computed once per iteration instead of twice.
  """
  if stats is None:
    evaluate, advance = (lambda y: (objective(y), ())), (lambda y, f, aux: step(y, f))
  else:
    evaluate, advance = stats, step
  f0, aux0 = evaluate(y0)
  tol = jnp.asarray(tol, f0.dtype)

  def cond(carry):
    rel, it = carry[-2:]
    # NaN in rel stops the loop.
    return jnp.logical_and(it < max_iter, jnp.logical_or(tol <= 0, rel >= tol))

  def body(carry):
    y, f, aux, _, it = carry
    y_new = advance(y, f, aux)
    f_new, aux_new = evaluate(y_new)
    delta = f - f_new
    if not monotone:
      delta = jnp.abs(delta)
    rel = delta / jnp.maximum(jnp.abs(f_new), _TINY)
    return y_new, f_new, aux_new, rel, it + 1

  init = (y0, f0, aux0, jnp.asarray(jnp.inf, f0.dtype), jnp.asarray(0, jnp.int32))
  y, _, _, _, it = lax.while_loop(cond, body, init)
  return y, it


def _start_point(sigma):
  y0 = jnp.maximum(sigma, _TINY)
  return y0 / jnp.sum(y0, axis=-1, keepdims=True)


def _backtrack(objective, y, f, proposal, max_halvings=30):
  """Largest alpha in {1, 1/2, ...} with F(y + alpha (proposal - y)) <= F(y); keeps y if none."""
  d = proposal - y

  def cond(c):
    alpha, f_try, k = c
    return jnp.logical_and(k < max_halvings, jnp.logical_not(f_try <= f))

  def body(c):
    alpha, _, k = c
    alpha = alpha * 0.5
    return alpha, objective(y + alpha * d), k + 1

  alpha, f_try, _ = lax.while_loop(cond, body, (jnp.asarray(1.0, f.dtype), objective(proposal),
                                                jnp.asarray(0, jnp.int32)))
  alpha = jnp.where(f_try <= f, alpha, 0.0)
  return y + alpha * d


def collision_pseudo_labels(probs: ArrayLike, *, fairness_weight: ArrayLike = 1.0,
                            fairness: str = "strong", tol: float = 1e-5, max_iter: int = 500,
                            axis_name: Optional[str] = None,
                            where: Optional[ArrayLike] = None) -> Tuple[jax.Array, jax.Array]:
  """Pseudo-labels minimizing the collision self-labeling objective, by EM on device.

  Minimizes ``F(Y) = -(1/N) sum_i log(sigma_i . y_i) + lambda * fairness(ybar)`` over rows
  ``y_i`` on the simplex, for fixed predictions ``sigma``. Strong fairness (``KL(u || ybar)``):

      E-step  S_ik = sigma_ik y_ik / (sigma_i . y_i),   M_ik = y_ik / (N ybar_k)
      M-step  y_ik <- (S_ik + lambda N u_k M_ik) / (1 + lambda N sum_c u_c M_ic)

  i.e. ``y_ik <- y_ik w_ik / sum_c y_ic w_ic`` with ``w_ik = sigma_ik/(sigma_i . y_i) + lambda
  u_k/ybar_k``; ``F`` never increases. Classic fairness (``KL(ybar || u)``) uses
  ``w_ik = sigma_ik/(sigma_i . y_i) - lambda log ybar_k`` with a backtracking safeguard (our
  reading; no closed-form majorizer exists for that term). Starts from ``y0 = sigma`` (floored at
  1e-30: zeros are absorbing) and stops when ``(F_prev - F)/|F| < tol`` or after ``max_iter``
  iterations, all inside ``lax.while_loop``. Do not differentiate through it (use
  ``lax.stop_gradient`` on the result) and do not ``vmap`` it over rows (rows are coupled through
  ``ybar``); ``vmap`` over independent problems is fine.

  With ``axis_name`` (inside ``pmap``/``shard_map``) each device holds a slice of the rows and the
  column sums, counts and the objective are ``psum``-ed: the result equals the EM on the
  concatenated batch, and every device runs the same number of iterations.

  Args:
    probs: ``[batch, num_classes]`` predictions on the simplex (checked when concrete).
    fairness_weight: ``lambda >= 0``.
    fairness: ``"strong"`` (default) or ``"classic"``.
    tol: relative-decrease threshold; 0 runs exactly ``max_iter`` iterations.
    max_iter: maximum number of EM iterations (Python int >= 1).
    axis_name: data axis name for a global batch, or None.
    where: optional ``[batch]`` mask; masked rows are excluded from ``ybar`` and ``F``.

  Returns:
    ``(pseudo_labels [batch, num_classes], num_iterations int32 scalar)``.

  Example:
    >>> y, n = collision_pseudo_labels(jnp.array([[0.9, 0.1], [0.6, 0.4]]))
    >>> y.shape, bool(n > 0)
    ((2, 2), True)

  Paper: Zhang & Boykov, arXiv 2303.07321.
  """
  _check_probs(probs)
  _check_solver_args(fairness_weight, fairness, tol, max_iter)
  sigma = _checks.as_f32(probs)
  w, kept = _solver_weights(where, sigma.shape[0], axis_name)
  return _or_start_point(_collision_em(sigma, w, fairness_weight, tol, max_iter,
                                       fairness=fairness, axis_name=axis_name), sigma, kept)


@functools.partial(jax.jit, static_argnames=("fairness", "axis_name"))
def _collision_em(sigma, w, fairness_weight, tol, max_iter, *, fairness, axis_name):
  k = sigma.shape[1]
  n = _gsum(jnp.sum(w), axis_name)
  lam = jnp.asarray(fairness_weight, sigma.dtype)
  u = 1.0 / k

  def objective(y):
    return _objective(sigma, y, w, n, lam, fairness, "collision", axis_name)

  def dots_and_ybar(y):
    dots = jnp.maximum(jnp.sum(sigma * y, axis=-1), _TINY)
    return dots, _gsum(jnp.sum(w[:, None] * y, axis=0), axis_name) / n

  def multiplicative(y, dots, ybar):
    if fairness == "strong":
      weights = sigma / dots[:, None] + lam * u / ybar
    else:
      weights = sigma / dots[:, None] - lam * jnp.log(jnp.maximum(ybar, _TINY))
    y_new = y * weights
    return y_new / jnp.sum(y_new, axis=-1, keepdims=True)

  if fairness == "strong":
    # F(y) from the same row dots and column means that the next E/M step uses: one pass over
    # [N, K] for the statistics and one for the update per iteration (the objective is the
    # collision branch of _objective, term for term).
    def stats(y):
      dots, ybar = dots_and_ybar(y)
      data = _gsum(jnp.sum(w * -jnp.log(dots)), axis_name) / n
      return data + lam * _fairness_value(ybar, fairness), (dots, ybar)

    return _run_solver(lambda y, f, aux: multiplicative(y, *aux), None, _start_point(sigma), tol,
                       max_iter, stats=stats)
  step = lambda y, f: _backtrack(objective, y, f, multiplicative(y, *dots_and_ybar(y)))
  return _run_solver(step, objective, _start_point(sigma), tol, max_iter)


def shannon_pseudo_labels(probs: ArrayLike, *, fairness_weight: ArrayLike = 1.0,
                          fairness: str = "strong", tol: float = 1e-5, max_iter: int = 500,
                          axis_name: Optional[str] = None, where: Optional[ArrayLike] = None,
                          bisection_steps: int = 40) -> Tuple[jax.Array, jax.Array]:
  """Pseudo-labels for Shannon self-labeling (the baseline), by majorize-minimize on device.

  Minimizes ``F(Y) = -(1/N) sum_ik y_ik log sigma_ik + lambda KL(u || ybar)``. Bounding
  ``-log ybar_k`` by Jensen (as in the collision EM) leaves, per row, ``min_y sum_k a_k y_k -
  sum_k b_k log y_k`` on the simplex with ``a_k = -log sigma_ik`` and ``b_k = lambda u_k y_ik /
  ybar_k``, solved exactly by ``y_k = b_k / (a_k + mu)`` with the scalar ``mu`` found by bisection.
  ``F`` never increases. Only the strong fairness term is supported: with the classic
  ``KL(ybar || u)`` the Y-step of a linear loss is a transport linear program (hard balanced
  assignments), not an EM.

  Args:
    probs: ``[batch, num_classes]`` predictions on the simplex.
    fairness_weight: ``lambda > 0``.
    fairness: must be ``"strong"``.
    tol: relative-decrease threshold; 0 runs exactly ``max_iter`` iterations.
    max_iter: maximum number of iterations.
    axis_name: data axis name for a global batch, or None.
    where: optional ``[batch]`` mask.
    bisection_steps: bisection steps (on ``log mu``) per iteration.

  Returns:
    ``(pseudo_labels [batch, num_classes], num_iterations int32 scalar)``.

  Example:
    >>> y, n = shannon_pseudo_labels(jnp.array([[0.9, 0.1], [0.6, 0.4]]))
    >>> y.shape
    (2, 2)

  Paper: the Shannon self-labeling baseline of Zhang & Boykov, arXiv 2303.07321.
  """
  _check_probs(probs)
  _check_solver_args(fairness_weight, fairness, tol, max_iter)
  if fairness != "strong":
    raise ValueError("`fairness` must be 'strong' for shannon_pseudo_labels (with 'classic' the "
                     f"Y-step of a linear loss is a linear program), got {fairness!r}.")
  if _is_concrete(fairness_weight) and float(fairness_weight) <= 0:
    raise ValueError("`fairness_weight` must be > 0 for shannon_pseudo_labels (with 0 the "
                     f"optimum is the one-hot argmax), got {float(fairness_weight)}.")
  if (not isinstance(bisection_steps, (int, np.integer)) or isinstance(bisection_steps, bool)
      or bisection_steps < 1):
    raise ValueError(f"`bisection_steps` must be a Python int >= 1, got {bisection_steps!r}.")
  sigma = _checks.as_f32(probs)
  w, kept = _solver_weights(where, sigma.shape[0], axis_name)
  return _or_start_point(_shannon_mm(sigma, w, fairness_weight, tol, max_iter,
                                     axis_name=axis_name, bisection_steps=bisection_steps),
                         sigma, kept)


@functools.partial(jax.jit, static_argnames=("axis_name", "bisection_steps"))
def _shannon_mm(sigma, w, fairness_weight, tol, max_iter, *, axis_name, bisection_steps):
  fairness = "strong"
  k = sigma.shape[1]
  n = _gsum(jnp.sum(w), axis_name)
  lam = jnp.asarray(fairness_weight, sigma.dtype)
  a = -jnp.log(jnp.maximum(sigma, _TINY))
  a = a - jnp.min(a, axis=-1, keepdims=True)  # shifting a per row only shifts mu

  def objective(y):
    return _objective(sigma, y, w, n, lam, fairness, "shannon", axis_name)

  def step(y, f):
    ybar = _gsum(jnp.sum(w[:, None] * y, axis=0), axis_name) / n
    b = lam * y / (k * ybar)
    # t = mu + min_k a_k in [max b at argmin a, sum b]; sum_k b_k / (a_k + t) decreases in t.
    at_min = jnp.sum(jnp.where(a == 0, b, 0.0), axis=-1)
    lo = jnp.log(jnp.maximum(at_min, _TINY))
    hi = jnp.log(jnp.maximum(jnp.sum(b, axis=-1), _TINY))

    def bisect(_, c):
      lo, hi = c
      mid = 0.5 * (lo + hi)
      s = jnp.sum(b / (a + jnp.exp(mid)[:, None]), axis=-1)
      too_big = s > 1.0
      return jnp.where(too_big, mid, lo), jnp.where(too_big, hi, mid)

    lo, hi = lax.fori_loop(0, bisection_steps, bisect, (lo, hi))
    y_new = b / (a + jnp.exp(0.5 * (lo + hi))[:, None])
    return y_new / jnp.sum(y_new, axis=-1, keepdims=True)

  return _run_solver(step, objective, _start_point(sigma), tol, max_iter)


def simplex_projection(v: ArrayLike) -> jax.Array:
  """Euclidean projection of each row of ``v`` onto the probability simplex.

  ``argmin_{x >= 0, sum x = 1} ||x - v||^2 = max(v - theta, 0)`` with ``theta`` from the sorted
  values (Held et al. 1974; Duchi et al. 2008).

  Args:
    v: ``[..., num_classes]`` floating.

  Returns:
    Array of the same shape, rows on the simplex.

  Example:
    >>> simplex_projection(jnp.array([2.0, 0.0]))
    Array([1., 0.], dtype=float32)
  """
  _checks.check_floating(v, "v")
  if len(_checks.shape_of(v)) < 1:
    raise ValueError(f"`v` must have rank >= 1 ([..., num_classes]), got shape {_checks.shape_of(v)}.")
  v = _checks.as_f32(v)
  # The projection is invariant to adding a constant to a row: shifting by the row maximum keeps
  # the sums below from losing the "- 1" of the constraint on huge inputs (zeros, NaN gradients).
  v = v - jax.lax.stop_gradient(jnp.max(v, axis=-1, keepdims=True))
  k = v.shape[-1]
  s = -jnp.sort(-v, axis=-1)  # descending
  css = jnp.cumsum(s, axis=-1) - 1.0
  idx = jnp.arange(1, k + 1, dtype=v.dtype)
  cond = s - css / idx > 0
  rho = jnp.sum(cond, axis=-1, keepdims=True)  # >= 1 always
  theta = jnp.take_along_axis(css, rho - 1, axis=-1) / rho.astype(v.dtype)
  return jnp.maximum(v - theta, 0.0)


def pgd_pseudo_labels(probs: ArrayLike, *, step_size: ArrayLike, fairness_weight: ArrayLike = 1.0,
                      fairness: str = "strong", tol: float = 1e-5, max_iter: int = 500,
                      axis_name: Optional[str] = None,
                      where: Optional[ArrayLike] = None) -> Tuple[jax.Array, jax.Array]:
  """Pseudo-labels for the collision objective by projected gradient descent on the simplex.

  The generic alternative to the EM: ``y_i <- P(y_i - step_size * N dF/dy_i)`` (the gradient is
  scaled by N so that the step size does not depend on the batch size), ``P`` the Euclidean
  simplex projection. Not monotone in general; it stops when ``|F_prev - F|/|F| < tol``. The step
  size must be tuned (too large oscillates or empties a cluster, making the strong fairness
  term infinite; too small crawls).

  Args:
    probs: ``[batch, num_classes]`` predictions on the simplex.
    step_size: positive step size.
    fairness_weight: ``lambda >= 0``.
    fairness: ``"strong"`` or ``"classic"``.
    tol: relative-change threshold; 0 runs exactly ``max_iter`` iterations.
    max_iter: maximum number of iterations.
    axis_name: data axis name for a global batch, or None.
    where: optional ``[batch]`` mask.

  Returns:
    ``(pseudo_labels [batch, num_classes], num_iterations int32 scalar)``.

  Example:
    >>> y, n = pgd_pseudo_labels(jnp.array([[0.9, 0.1], [0.6, 0.4]]), step_size=0.1)
    >>> y.shape
    (2, 2)
  """
  _check_probs(probs)
  _check_solver_args(fairness_weight, fairness, tol, max_iter)
  if _is_concrete(step_size) and not (np.isfinite(float(step_size)) and float(step_size) > 0):
    raise ValueError(f"`step_size` must be a finite number > 0, got {step_size!r}.")
  sigma = _checks.as_f32(probs)
  w, kept = _solver_weights(where, sigma.shape[0], axis_name)
  return _or_start_point(_pgd(sigma, w, fairness_weight, step_size, tol, max_iter,
                              fairness=fairness, axis_name=axis_name), sigma, kept)


@functools.partial(jax.jit, static_argnames=("fairness", "axis_name"))
def _pgd(sigma, w, fairness_weight, step_size, tol, max_iter, *, fairness, axis_name):
  n = _gsum(jnp.sum(w), axis_name)
  lam = jnp.asarray(fairness_weight, sigma.dtype)

  def objective(y):
    return _objective(sigma, y, w, n, lam, fairness, "collision", axis_name)

  def step(y, f):
    dots = jnp.maximum(jnp.sum(sigma * y, axis=-1, keepdims=True), _TINY)
    ybar = _gsum(jnp.sum(w[:, None] * y, axis=0), axis_name) / n
    k = sigma.shape[-1]
    if fairness == "strong":
      g_fair = -lam / (k * jnp.maximum(ybar, _TINY))
    else:
      g_fair = lam * (jnp.log(jnp.maximum(ybar, _TINY)) + 1.0)
    grad = -sigma / dots + g_fair  # N dF/dy_i for a row that counts
    grad = w[:, None] * grad
    return simplex_projection(y - step_size * grad)

  return _run_solver(step, objective, _start_point(sigma), tol, max_iter, monotone=False)


# ----------------------------------------------------------------------------------------------------
# Mutual-information clustering loss and the deadlock check
# ----------------------------------------------------------------------------------------------------


def mutual_information_loss(logits: ArrayLike, *, marginal_weight: ArrayLike = 1.0,
                            axis_name: Optional[str] = None,
                            where: Optional[ArrayLike] = None) -> jax.Array:
  """Negative mutual information between inputs and clusters (IMSAT / RIM style).

  ``L = mean_i H(sigma_i) - marginal_weight * H(mean_i sigma_i)`` with ``sigma_i = softmax(z_i)``.
  A batch-level statistic: the marginal ``mean_i sigma_i`` is over the global batch when
  ``axis_name`` is given (psum of sums and counts), so the value equals the single-device value on
  the concatenated batch and is the same on every device.

  Args:
    logits: ``[batch, num_classes]`` floating.
    marginal_weight: weight of the marginal-entropy term (1 gives the mutual information).
    axis_name: data axis name for a global batch, or None.
    where: optional ``[batch]`` mask of the rows that count.

  Returns:
    Scalar loss (float32).

  Example:
    >>> mutual_information_loss(jnp.array([[10., -10.], [-10., 10.]]))  # ~ -log 2
    Array(-0.6931..., dtype=float32)

  Paper: Hu et al., "Learning Discrete Representations via Information Maximizing
  Self-Augmented Training" (IMSAT), ICML 2017; Krause et al., "Discriminative Clustering by
  Regularized Information Maximization" (RIM), NeurIPS 2010.
  """
  _checks.check_rank(logits, 2, "logits", "[batch, num_classes]")
  _checks.check_nonempty(logits, "logits")
  _checks.check_floating(logits, "logits")
  if _is_concrete(marginal_weight) and not (np.ndim(marginal_weight) == 0 and np.isfinite(
      float(marginal_weight)) and float(marginal_weight) >= 0):
    raise ValueError(f"`marginal_weight` must be a finite number >= 0, got {marginal_weight!r}.")
  w = _weights(where, _checks.shape_of(logits)[0])
  logp = jax.nn.log_softmax(_checks.as_f32(logits), axis=-1)
  p = jnp.exp(logp)
  ent = -jnp.sum(p * logp, axis=-1)
  n = _gsum(jnp.sum(w), axis_name)
  cond_ent = _gsum(jnp.sum(w * ent), axis_name) / n
  marginal = _gsum(jnp.sum(w[:, None] * p, axis=0), axis_name) / n
  marg_ent = -jnp.sum(jnp.where(marginal > 0, marginal * jnp.log(jnp.where(marginal > 0, marginal,
                                                                             1.0)), 0.0))
  return cond_ent - marginal_weight * marg_ent


def check_not_deadlocked(probs: ArrayLike, *, atol: float = 1e-6) -> None:
  """Raises ValueError when every row of ``probs`` is the same prediction (host-side check).

  A zero-initialized output head gives the same ``sigma`` for every input; the self-labeling EM
  then returns the uniform ``y = u`` for every row, and collision cross-entropy against a uniform
  target has exactly zero gradient: training never moves. Initialize the head randomly.

  Args:
    probs: ``[batch, num_classes]`` concrete predictions (numpy or a concrete jax array).
    atol: rows whose maximum absolute difference from the first row is below ``atol`` count as
      identical.
  """
  a = np.asarray(probs, dtype=np.float64)
  if a.ndim != 2:
    raise ValueError(f"`probs` must have shape [batch, num_classes], got {a.shape}.")
  if a.shape[0] > 1 and np.max(np.abs(a - a[:1])) <= atol:
    raise ValueError(
        "Self-labeling deadlock: all predictions in the batch are identical (max deviation "
        f"{np.max(np.abs(a - a[:1])):.3g} <= atol={atol}), so the pseudo-labels are uniform and the "
        "collision cross-entropy gradient is exactly zero. The output head is probably "
        "zero-initialized: initialize it randomly (e.g. lecun_normal) for clustering.")
