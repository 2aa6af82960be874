"""Tests for labelwise.losses.collision against independent numpy computations and identities."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec as P
from jax.test_util import check_grads

from labelwise.losses import collision as C


# ------------------------------------------------------------------------------------------------
# Independent numpy references (float64), written from the formulas, not from the implementation.
# ------------------------------------------------------------------------------------------------


def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_collision(z, y):
  return -np.log(np.sum(np.asarray(y, np.float64) * np_softmax(z), -1))


def np_objective(sigma, y, lam, fairness="strong", ce="collision"):
  sigma = np.asarray(sigma, np.float64)
  y = np.asarray(y, np.float64)
  k = sigma.shape[1]
  if ce == "collision":
    data = -np.mean(np.log(np.sum(sigma * y, 1)))
  else:
    data = -np.mean(np.sum(y * np.log(sigma), 1))
  ybar = y.mean(0)
  u = np.full(k, 1.0 / k)
  if fairness == "strong":
    fair = np.sum(u * np.log(u / ybar))
  else:
    fair = np.sum(ybar * np.log(ybar / u))
  return data + lam * fair


def np_em_strong(sigma, lam, iters):
  """E-step / M-step of the method sheet, written with S and M explicitly."""
  sigma = np.asarray(sigma, np.float64)
  n, k = sigma.shape
  u = np.full(k, 1.0 / k)
  y = sigma.copy()
  for _ in range(iters):
    s = sigma * y / np.sum(sigma * y, 1, keepdims=True)
    ybar = y.mean(0)
    m = y / (n * ybar)
    y = (s + lam * n * u * m) / (1.0 + lam * n * np.sum(u * m, 1, keepdims=True))
  return y


def np_grad_y(sigma, y, lam, fairness="strong"):
  """N * dF/dy_ik for the collision objective."""
  sigma = np.asarray(sigma, np.float64)
  y = np.asarray(y, np.float64)
  k = sigma.shape[1]
  ybar = y.mean(0)
  g = -sigma / np.sum(sigma * y, 1, keepdims=True)
  if fairness == "strong":
    g = g - lam / (k * ybar)
  else:
    g = g + lam * (np.log(ybar) + 1.0)
  return g


def random_probs(seed, n, k, scale=3.0):
  rng = np.random.default_rng(seed)
  return np_softmax(rng.normal(size=(n, k)) * scale).astype(np.float32)


def dirichlet(seed, n, k):
  return np.random.default_rng(seed).dirichlet(np.ones(k), size=n).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Collision cross-entropy
# ------------------------------------------------------------------------------------------------


def test_collision_matches_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(16, 7)).astype(np.float32) * 2
  y = dirichlet(1, 16, 7)
  np.testing.assert_allclose(C.collision_cross_entropy(z, y), np_collision(z, y), rtol=1e-5)


def test_hand_numbers_extreme_logits():
  z = jnp.array([[100.0, -100.0, 0.0]])
  for y, value, grad in [([0.0, 0.0, 1.0], 100.0, [1.0, 0.0, -1.0]),
                         ([0.0, 1.0, 0.0], 200.0, [1.0, -1.0, 0.0]),
                         ([1.0, 0.0, 0.0], 0.0, [0.0, 0.0, 0.0])]:
    y = jnp.array([y])
    loss = C.collision_cross_entropy(z, y)
    g = jax.grad(lambda z: C.collision_cross_entropy(z, y).sum())(z)
    np.testing.assert_allclose(loss, [value], atol=1e-5)
    np.testing.assert_allclose(g, [grad], atol=1e-6)
  # Mixed support where the naive sum underflows: y = (0.5, 0.5, 0) on z = (-100, -110, 100).
  z2 = jnp.array([[-100.0, -110.0, 100.0]])
  expected = 200.0 - np.log(0.5 * (1 + np.exp(-10.0)))
  np.testing.assert_allclose(C.collision_cross_entropy(z2, jnp.array([[0.5, 0.5, 0.0]])),
                             [expected], rtol=1e-6)


def test_one_hot_equals_optax_cross_entropy():
  rng = np.random.default_rng(2)
  z = rng.normal(size=(12, 5)).astype(np.float32) * 4
  labels = rng.integers(0, 5, size=12)
  y = np.eye(5, dtype=np.float32)[labels]
  np.testing.assert_allclose(C.collision_cross_entropy(z, y),
                             optax.softmax_cross_entropy_with_integer_labels(z, labels), rtol=1e-5,
                             atol=1e-6)
  g1 = jax.grad(lambda z: C.collision_cross_entropy(z, y).sum())(z)
  g2 = jax.grad(lambda z: optax.softmax_cross_entropy_with_integer_labels(z, labels).sum())(z)
  np.testing.assert_allclose(g1, g2, atol=1e-6)


def test_uniform_target_is_log_k_with_zero_gradient():
  z = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32) * 5
  y = np.full((6, 4), 0.25, np.float32)
  np.testing.assert_allclose(C.collision_cross_entropy(z, y), np.full(6, np.log(4.0)), rtol=1e-6)
  g = jax.grad(lambda z: C.collision_cross_entropy(z, y).sum())(z)
  np.testing.assert_allclose(g, 0.0, atol=1e-6)


def test_gradient_identity_sigma_minus_s():
  z = np.random.default_rng(4).normal(size=(8, 6)).astype(np.float32)
  y = dirichlet(5, 8, 6)
  sigma = np_softmax(z)
  s = y * sigma / np.sum(y * sigma, 1, keepdims=True)
  g = jax.grad(lambda z: C.collision_cross_entropy(z, y).sum())(z)
  np.testing.assert_allclose(g, sigma - s, atol=1e-6)
  # Gradient with respect to the targets: -sigma_k / (y . sigma), also off the support.
  y0 = y.copy()
  y0[:, 0] = 0.0
  y0 /= y0.sum(1, keepdims=True)
  gy = jax.grad(lambda t: C.collision_cross_entropy(z, t).sum())(y0)
  np.testing.assert_allclose(gy, -sigma / np.sum(y0 * sigma, 1, keepdims=True), rtol=1e-5)


def test_check_grads():
  z = np.random.default_rng(6).normal(size=(3, 4))
  y = dirichlet(7, 3, 4)
  check_grads(lambda z: C.collision_cross_entropy(z, y), (jnp.asarray(z, jnp.float32),), order=1,
              modes=("rev",), atol=2e-2, rtol=2e-2)
  t = np.random.default_rng(8).normal(size=(3, 4))
  check_grads(C.collision_cross_entropy_with_logits,
              (jnp.asarray(z, jnp.float32), jnp.asarray(t, jnp.float32)), order=1,
              modes=("rev", "fwd"), atol=2e-2, rtol=2e-2)


def test_symmetry_and_logits_variant():
  rng = np.random.default_rng(9)
  a = rng.normal(size=(10, 5)).astype(np.float32)
  b = rng.normal(size=(10, 5)).astype(np.float32)
  pa, pb = np_softmax(a).astype(np.float32), np_softmax(b).astype(np.float32)
  h_ab = C.collision_cross_entropy(a, pb)
  h_ba = C.collision_cross_entropy(b, pa)
  np.testing.assert_allclose(h_ab, h_ba, rtol=1e-5)
  np.testing.assert_allclose(C.collision_cross_entropy_with_logits(a, b), h_ab, rtol=1e-5)
  np.testing.assert_allclose(C.collision_cross_entropy_with_logits(b, a), h_ab, rtol=1e-5)
  # Jensen: collision CE <= Shannon CE.
  shannon = -np.sum(pb * np.log(pa), 1)
  assert np.all(np.asarray(h_ab) <= shannon + 1e-5)


def test_where_jit_vmap():
  rng = np.random.default_rng(10)
  z = rng.normal(size=(3, 5, 4)).astype(np.float32)
  y = dirichlet(11, 15, 4).reshape(3, 5, 4)
  where = np.array([True, False, True, True, False])
  out = C.collision_cross_entropy(z[0], y[0], where=where)
  np.testing.assert_allclose(out, np.where(where, np_collision(z[0], y[0]), 0.0), rtol=1e-5)
  jitted = jax.jit(C.collision_cross_entropy)(z[0], y[0])
  np.testing.assert_allclose(jitted, np_collision(z[0], y[0]), rtol=1e-5)
  vm = jax.vmap(C.collision_cross_entropy)(z, y)
  np.testing.assert_allclose(vm, np_collision(z.reshape(15, 4), y.reshape(15, 4)).reshape(3, 5),
                             rtol=1e-5)


def test_bfloat16_inputs_compute_in_float32():
  z = jnp.array([[1.0, 2.0, 3.0]], jnp.bfloat16)
  y = jnp.array([[0.2, 0.3, 0.5]], jnp.float32)
  out = C.collision_cross_entropy(z, y)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, np_collision(np.array([[1.0, 2.0, 3.0]]), y), rtol=1e-5)


@pytest.mark.parametrize("fn", ["ce", "ce_logits"])
def test_loss_value_errors(fn):
  z = np.zeros((4, 3), np.float32)
  f = C.collision_cross_entropy if fn == "ce" else C.collision_cross_entropy_with_logits
  with pytest.raises(ValueError, match="target"):
    f(z, np.full((4, 2), 0.5, np.float32))
  with pytest.raises(ValueError, match="logits"):  # no class axis ([C] is one example: allowed)
    f(np.zeros((), np.float32), np.zeros((), np.float32))
  with pytest.raises(ValueError, match="where"):
    f(z, np.full((4, 3), 1 / 3, np.float32), where=np.ones(3, bool))
  if fn == "ce":
    with pytest.raises(ValueError, match="simplex"):
      f(z, np.full((4, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="simplex"):
      f(z, np.array([[1.5, -0.5, 0.0]] * 4, np.float32))
  with pytest.raises(TypeError, match="logits"):
    f(np.zeros((4, 3), np.int32), np.full((4, 3), 1 / 3, np.float32))


# ------------------------------------------------------------------------------------------------
# Self-labeling objective and the EM
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fairness", ["strong", "classic"])
@pytest.mark.parametrize("ce", ["collision", "shannon"])
def test_objective_matches_numpy(fairness, ce):
  sigma = random_probs(12, 20, 5)
  y = dirichlet(13, 20, 5)
  got = C.self_labeling_objective(sigma, y, fairness_weight=0.7, fairness=fairness,
                                  cross_entropy=ce)
  np.testing.assert_allclose(got, np_objective(sigma, y, 0.7, fairness, ce), rtol=1e-5)
  where = np.arange(20) % 3 != 0
  got = C.self_labeling_objective(sigma, y, fairness_weight=0.7, fairness=fairness,
                                  cross_entropy=ce, where=where)
  np.testing.assert_allclose(got, np_objective(sigma[where], y[where], 0.7, fairness, ce),
                             rtol=1e-5)


def test_em_equals_numpy_em_at_fixed_iterations():
  sigma = random_probs(14, 40, 6)
  y, n = C.collision_pseudo_labels(sigma, fairness_weight=1.5, tol=0.0, max_iter=30)
  assert int(n) == 30
  np.testing.assert_allclose(y, np_em_strong(sigma, 1.5, 30), atol=2e-5)


@pytest.mark.parametrize("fairness", ["strong", "classic"])
def test_em_rows_on_simplex_and_objective_never_increases(fairness):
  sigma = random_probs(15, 50, 8)
  values = [np_objective(sigma, sigma, 1.0, fairness)]
  for iters in (1, 2, 5, 20, 60):
    y, n = C.collision_pseudo_labels(sigma, fairness=fairness, tol=0.0, max_iter=iters)
    y = np.asarray(y, np.float64)
    assert int(n) == iters
    assert y.min() >= 0.0
    np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
    values.append(np_objective(sigma, y, 1.0, fairness))
  assert all(b <= a + 1e-6 for a, b in zip(values, values[1:])), values
  assert values[-1] < values[0] - 1e-2


def _long_numpy_optimum(sigma, lam):
  y = np_em_strong(sigma, lam, 20000)
  return y, np_objective(sigma, y, lam)


def test_em_reaches_long_numpy_optimum_and_kkt():
  sigma = random_probs(16, 32, 5, scale=2.0)
  lam = 1.0
  y_ref, f_ref = _long_numpy_optimum(sigma, lam)
  y, n = C.collision_pseudo_labels(sigma, fairness_weight=lam, tol=1e-7, max_iter=5000)
  f = np_objective(sigma, y, lam)
  assert 0 < int(n) < 5000
  assert abs(f - f_ref) / abs(f_ref) < 1e-4
  np.testing.assert_allclose(np.asarray(y).mean(0), y_ref.mean(0), atol=2e-3)
  # KKT on the simplex: with w = -N dF/dy and wbar_i = sum_k y_ik w_ik, w_ik = wbar_i on the
  # support and w_ik <= wbar_i off it.
  w = -np_grad_y(sigma, y_ref, lam)
  wbar = np.sum(y_ref * w, 1, keepdims=True)
  assert np.max(np.sum(y_ref * np.abs(w - wbar), 1) / wbar[:, 0]) < 1e-3
  assert np.max((w - wbar) / wbar) < 1e-2
  w = -np_grad_y(sigma, np.asarray(y, np.float64), lam)
  wbar = np.sum(np.asarray(y, np.float64) * w, 1, keepdims=True)
  assert np.max(np.sum(np.asarray(y) * np.abs(w - wbar), 1) / wbar[:, 0]) < 2e-2


def test_em_classic_kkt_at_convergence():
  sigma = random_probs(17, 32, 4, scale=2.0)
  y, _ = C.collision_pseudo_labels(sigma, fairness="classic", fairness_weight=2.0, tol=1e-7,
                                   max_iter=3000)
  y = np.asarray(y, np.float64)
  w = -np_grad_y(sigma, y, 2.0, "classic") + 2.0 * (1.0 - np.log(np.mean(y, 0)).min())
  wbar = np.sum(y * w, 1, keepdims=True)
  assert np.max(np.sum(y * np.abs(w - wbar), 1) / wbar[:, 0]) < 2e-2


# ------------------------------------------------------------------------------------------------
# The backtracking safeguard of the classic-fairness EM (_backtrack)
# ------------------------------------------------------------------------------------------------


def np_backtrack(objective, y, proposal, max_halvings=30):
  """Independent reference: alpha = 1, 1/2, 1/4, ... (at most ``max_halvings`` halvings), the first
  with F(y + alpha d) <= F(y) is taken; none: y is kept. Returns (point, alpha)."""
  y = np.asarray(y, np.float64)
  d = np.asarray(proposal, np.float64) - y
  f = objective(y)
  alpha = 1.0
  for _ in range(max_halvings + 1):
    if objective(y + alpha * d) <= f:
      return y + alpha * d, alpha
    alpha /= 2.0
  return y, 0.0


def _jit_backtrack(objective, max_halvings=None):
  """The line search under jit; ``max_halvings=None``: its default (30, which the EM uses)."""
  kw = {} if max_halvings is None else {"max_halvings": max_halvings}
  return jax.jit(lambda y, f, p: C._backtrack(objective, y, f, p, **kw))


@pytest.mark.parametrize("p, alpha", [
    (1.5, 1.0),            # the full step decreases F: taken as is
    (10.0, 0.125),         # overshoots: 1, 1/2, 1/4 increase F, 1/8 is the first that does not
    (-3.0, 0.0),           # an ascent direction: no alpha works, y is kept
    (1.5 * 2.0 ** 30, 2.0 ** -30),   # accepted at the 30th (last) halving
    (1.5 * 2.0 ** 31, 0.0),          # would need a 31st halving: y is kept
])
def test_backtrack_halves_until_the_objective_does_not_increase(p, alpha):
  """F(y) = y (y - 2) from y = 0 toward ``p``: F(alpha p) <= F(0) = 0 iff 0 <= alpha p <= 2, so
  the accepted alpha is the first power of 1/2 at or below 2/p (hand numbers; the sign of F is
  exact in float32, so rounding accepts nothing it should not).
  A factor other than 1/2 (e.g. the mutant -1/2: 1, -1/2, 1/4, -1/8, ...), another acceptance
  test or another number of halvings takes another point (checked: `alpha * -0.5` gives 0.625
  instead of 1.25 for p = 10; `k <= max_halvings` accepts the last row's 2^-31)."""
  objective = lambda y: jnp.sum(y * (y - 2.0))
  y = jnp.zeros((1,), jnp.float32)
  proposal = jnp.full((1,), p, jnp.float32)
  got = _jit_backtrack(objective)(y, objective(y), proposal)
  np.testing.assert_array_equal(np.asarray(got), np.float32([alpha * p]))
  ref, ref_alpha = np_backtrack(lambda v: float(np.sum(v * (v - 2.0))), [0.0], [p])
  assert ref_alpha == alpha
  np.testing.assert_array_equal(np.asarray(got), ref.astype(np.float32))


def test_backtrack_accepts_an_equal_objective_and_counts_halvings():
  """Acceptance is F(try) <= F(y), not <: a flat objective takes the full step (with < it would
  halve 30 times and keep y). ``max_halvings`` bounds the halvings: with 3, alpha = 1/8 is the
  last one tried (p = 10 above is accepted at 1/8, p = 20 needs 1/16 and keeps y)."""
  flat = lambda y: jnp.sum(y * 0.0)
  y = jnp.asarray([0.2, 0.8], jnp.float32)
  proposal = jnp.asarray([0.9, 0.1], jnp.float32)
  full_step = np.asarray(y) + np.float32(1.0) * (np.asarray(proposal) - np.asarray(y))
  np.testing.assert_array_equal(np.asarray(_jit_backtrack(flat)(y, flat(y), proposal)), full_step)
  quad = lambda v: jnp.sum(v * (v - 2.0))
  y0 = jnp.zeros((1,), jnp.float32)
  np.testing.assert_array_equal(
      np.asarray(_jit_backtrack(quad, 3)(y0, quad(y0), jnp.full((1,), 10.0, jnp.float32))),
      np.float32([1.25]))
  np.testing.assert_array_equal(
      np.asarray(_jit_backtrack(quad, 3)(y0, quad(y0), jnp.full((1,), 20.0, jnp.float32))),
      np.float32([0.0]))


def test_backtrack_on_the_classic_objective_matches_numpy():
  """The safeguard on the classic self-labeling objective itself, from y = sigma toward a proposal
  that overshoots (every row put on the one cluster that the predictions like least: the full step
  raises F): the accepted point and step equal the numpy line search on ``np_objective``, and F
  does not increase. (The multiplicative classic step did not overshoot in 300 random problems
  tried, so the EM alone does not exercise the halving.)"""
  sigma = random_probs(41, 12, 4, scale=2.0)
  lam = 2.0
  worst = np.argmin(sigma.mean(0))
  # mostly on the worst cluster, a little elsewhere so the collision term stays finite
  proposal = np.full_like(sigma, 0.02)
  proposal[:, worst] = 1.0 - 0.02 * 3
  sig = jnp.asarray(sigma)
  w = jnp.ones((12,), jnp.float32)
  objective = lambda y: C._objective(sig, y, w, 12.0, jnp.float32(lam), "classic", "collision",
                                     None)
  ref, ref_alpha = np_backtrack(lambda v: np_objective(sigma, v, lam, "classic"), sigma, proposal)
  assert 0.0 < ref_alpha < 0.5, ref_alpha  # it did backtrack, at least twice, and found a step
  y0 = jnp.asarray(sigma)
  got = np.asarray(_jit_backtrack(objective)(y0, objective(y0), jnp.asarray(proposal)))
  np.testing.assert_allclose(got, ref, atol=1e-6)
  assert np_objective(sigma, got, lam, "classic") <= np_objective(sigma, sigma, lam,
                                                                  "classic") + 1e-6


def test_strong_fairness_keeps_every_cluster_populated():
  # Every example prefers cluster 0 (and never 3): without fairness clusters empty, with it not.
  rng = np.random.default_rng(18)
  logits = rng.normal(size=(64, 4)) * 0.5
  logits[:, 0] += 3.0
  logits[:, 3] -= 2.0
  sigma = np_softmax(logits).astype(np.float32)
  y0, _ = C.collision_pseudo_labels(sigma, fairness_weight=0.0, tol=1e-6, max_iter=2000)
  assert np.asarray(y0).mean(0)[3] < 0.01
  y, _ = C.collision_pseudo_labels(sigma, fairness_weight=5.0, tol=1e-6, max_iter=2000)
  hard = np.bincount(np.asarray(y).argmax(1), minlength=4)
  assert np.all(np.asarray(y).mean(0) > 0.15), np.asarray(y).mean(0)
  assert np.all(hard > 0), hard


def _pmap_em(sigma, **kw):
  ndev = 4
  fn = jax.pmap(functools.partial(C.collision_pseudo_labels, axis_name="data", **kw),
                axis_name="data")
  y, n = fn(sigma.reshape(ndev, -1, sigma.shape[-1]))
  y = jax.block_until_ready(y)
  return np.asarray(y).reshape(sigma.shape), np.asarray(n)


@pytest.mark.parametrize("fairness", ["strong", "classic"])
def test_em_pmap_equals_concatenated_batch(fairness):
  assert len(jax.devices()) == 4
  sigma = random_probs(19, 32, 5)
  y_single, _ = C.collision_pseudo_labels(sigma, fairness=fairness, tol=0.0, max_iter=40)
  y_pmap, n = _pmap_em(sigma, fairness=fairness, tol=0.0, max_iter=40)
  assert np.all(n == 40)
  np.testing.assert_allclose(y_pmap, y_single, atol=1e-5)
  # With the default stopping rule every device stops at the same iteration.
  y_single, n_single = C.collision_pseudo_labels(sigma, fairness=fairness)
  y_pmap, n = _pmap_em(sigma, fairness=fairness)
  assert np.all(n == n[0]) and abs(int(n[0]) - int(n_single)) <= 1
  # At the same iteration count the pseudo-labels agree (the relative-decrease test can flip by one
  # iteration between psum-ed and single-device sums when it sits on the boundary, and one EM step
  # there moves y by ~1e-3).
  y_same, _ = C.collision_pseudo_labels(sigma, fairness=fairness, tol=0.0, max_iter=int(n[0]))
  np.testing.assert_allclose(y_pmap, y_same, atol=1e-5)


def test_em_shard_map_and_objective_equal_single_device():
  sigma = random_probs(20, 32, 5)
  mesh = Mesh(np.array(jax.devices()), ("data",))

  def local(s):
    y, n = C.collision_pseudo_labels(s, tol=0.0, max_iter=25, axis_name="data")
    f = C.self_labeling_objective(s, y, axis_name="data")
    return y, n, f

  fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=(P("data"), P(), P())))
  y, n, f = jax.block_until_ready(fn(sigma))
  y_single, _ = C.collision_pseudo_labels(sigma, tol=0.0, max_iter=25)
  np.testing.assert_allclose(y, y_single, atol=1e-5)
  assert int(n) == 25
  np.testing.assert_allclose(f, np_objective(sigma, y_single, 1.0), rtol=1e-5)


def test_em_where_mask_equals_subset_and_vmap_over_problems():
  sigma = random_probs(21, 24, 4)
  where = np.arange(24) % 4 != 1
  y, _ = C.collision_pseudo_labels(sigma, where=where, tol=0.0, max_iter=15)
  np.testing.assert_allclose(np.asarray(y)[where], np_em_strong(sigma[where], 1.0, 15), atol=2e-5)
  # vmap over independent problems (not over rows): each equals its own run, same iterations.
  stack = np.stack([random_probs(s, 16, 4) for s in (22, 23, 24)])
  ys, ns = jax.vmap(lambda s: C.collision_pseudo_labels(s, tol=1e-4))(stack)
  for i in range(3):
    yi, ni = C.collision_pseudo_labels(stack[i], tol=1e-4)
    assert int(ns[i]) == int(ni)
    np.testing.assert_allclose(ys[i], yi, atol=1e-6)
  # jit gives the same as eager.
  yj, nj = jax.jit(functools.partial(C.collision_pseudo_labels, tol=1e-4))(stack[0])
  np.testing.assert_allclose(yj, ys[0], atol=1e-6)


def test_deadlock_identical_predictions():
  # A zero-initialized head predicts the uniform distribution for every input ...
  sigma = np.asarray(jax.nn.softmax(jnp.zeros((10, 5))))
  y, _ = C.collision_pseudo_labels(sigma, tol=1e-6, max_iter=2000)
  # ... the pseudo-labels then stay uniform (sigma_i / (sigma_i . y_i) and u / ybar are constant) ...
  np.testing.assert_allclose(y, 0.2, atol=1e-6)
  # ... and collision CE against a uniform target has zero gradient: the training step is stuck.
  zero_logits = jnp.zeros((10, 5))
  g = jax.grad(lambda z: C.collision_cross_entropy(z, jnp.full((10, 5), 0.2)).mean())(zero_logits)
  np.testing.assert_allclose(g, 0.0, atol=1e-7)
  with pytest.raises(ValueError, match="deadlock"):
    C.check_not_deadlocked(jax.nn.softmax(zero_logits))
  C.check_not_deadlocked(random_probs(26, 10, 5))  # distinct rows pass


def test_solver_value_errors():
  good = random_probs(27, 8, 3)
  for solver in (C.collision_pseudo_labels, C.shannon_pseudo_labels,
                 functools.partial(C.pgd_pseudo_labels, step_size=0.1)):
    with pytest.raises(ValueError, match="probs"):
      solver(good[:, :, None])
    with pytest.raises(ValueError, match="simplex"):
      solver(good * 1.5)
    with pytest.raises(ValueError, match="simplex"):
      solver(np.array([[1.2, -0.2, 0.0]] * 4, np.float32))
    with pytest.raises(ValueError, match="fairness_weight"):
      solver(good, fairness_weight=-1.0)
    with pytest.raises(ValueError, match="fairness"):
      solver(good, fairness="weak")
    with pytest.raises(ValueError, match="tol"):
      solver(good, tol=-1e-3)
    with pytest.raises(ValueError, match="max_iter"):
      solver(good, max_iter=0)
    with pytest.raises(ValueError, match="where"):
      solver(good, where=np.ones(3, bool))
  with pytest.raises(ValueError, match="step_size"):
    C.pgd_pseudo_labels(good, step_size=0.0)
  with pytest.raises(ValueError, match="classic"):
    C.shannon_pseudo_labels(good, fairness="classic")
  with pytest.raises(ValueError, match="fairness_weight"):
    C.self_labeling_objective(good, good, fairness_weight=-0.5)
  with pytest.raises(ValueError, match="pseudo_labels"):
    C.self_labeling_objective(good, good[:4])
  with pytest.raises(ValueError, match="cross_entropy"):
    C.self_labeling_objective(good, good, cross_entropy="kl")


# ------------------------------------------------------------------------------------------------
# Shannon self-labeling, simplex projection and PGD
# ------------------------------------------------------------------------------------------------


def test_shannon_pseudo_labels_monotone_and_kkt():
  sigma = random_probs(28, 40, 5, scale=2.0)
  lam = 1.0
  values = [np_objective(sigma, sigma, lam, ce="shannon")]
  for iters in (1, 3, 10):
    y, _ = C.shannon_pseudo_labels(sigma, fairness_weight=lam, tol=0.0, max_iter=iters)
    np.testing.assert_allclose(np.asarray(y).sum(1), 1.0, atol=1e-5)
    values.append(np_objective(sigma, y, lam, ce="shannon"))
  assert all(b <= a + 1e-6 for a, b in zip(values, values[1:])), values
  y, n = C.shannon_pseudo_labels(sigma, fairness_weight=lam, tol=1e-7, max_iter=3000)
  y = np.asarray(y, np.float64)
  # KKT: g_ik = -log sigma_ik - lam u_k / ybar_k equals mu_i on the support, >= mu_i off it.
  g = -np.log(sigma.astype(np.float64)) - lam / (5 * y.mean(0))
  mu = np.sum(y * g, 1, keepdims=True)
  assert np.max(np.sum(y * np.abs(g - mu), 1)) < 2e-2
  assert np.min(g - mu) > -5e-2


def np_shannon_mm_step(sigma, y, lam):
  """One majorize-minimize step of Shannon self-labeling in float64: per row, y_k = b_k / (a_k + mu)
  with a = -log sigma, b = lam y / (K ybar) and mu solving sum_k b_k / (a_k + mu) = 1 (bisection on
  mu itself, 200 steps; independent of the solver's bisection on log mu)."""
  sigma, y = np.asarray(sigma, np.float64), np.asarray(y, np.float64)
  k = sigma.shape[1]
  a = -np.log(sigma)
  b = lam * y / (k * y.mean(0))
  out = []
  for ai, bi in zip(a, b):
    lo, hi = -ai.min() + 1e-300, -ai.min() + bi.sum() + 1.0  # sum at lo is +inf, at hi < 1
    for _ in range(200):
      mid = 0.5 * (lo + hi)
      if np.sum(bi / (ai + mid)) > 1.0:
        lo = mid
      else:
        hi = mid
    yi = bi / (ai + 0.5 * (lo + hi))
    out.append(yi / yi.sum())
  return np.array(out)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_shannon_pseudo_labels_one_and_two_steps_match_numpy(lam):
  """The solver's first two iterations against the float64 step above, from y0 = sigma."""
  sigma = random_probs(29, 12, 4, scale=2.0)
  y1 = np_shannon_mm_step(sigma, sigma, lam)
  y2 = np_shannon_mm_step(sigma, y1, lam)
  got1, n1 = C.shannon_pseudo_labels(sigma, fairness_weight=lam, tol=0.0, max_iter=1)
  got2, n2 = C.shannon_pseudo_labels(sigma, fairness_weight=lam, tol=0.0, max_iter=2)
  assert int(n1) == 1 and int(n2) == 2
  np.testing.assert_allclose(got1, y1, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got2, y2, rtol=1e-4, atol=1e-6)


def test_shannon_fairness_weight_must_be_positive():
  """0 is refused by the Shannon solver itself (the collision EM accepts it); negatives already
  by the shared check."""
  p = random_probs(5, 8, 3)
  with pytest.raises(ValueError, match=r"`fairness_weight` must be > 0 for shannon_pseudo_labels"):
    C.shannon_pseudo_labels(p, fairness_weight=0.0)
  with pytest.raises(ValueError, match=r"`fairness_weight` must be a finite number >= 0"):
    C.shannon_pseudo_labels(p, fairness_weight=-0.5)
  y, _ = C.shannon_pseudo_labels(p, fairness_weight=1e-3)
  np.testing.assert_allclose(np.asarray(y).sum(1), 1.0, atol=1e-5)


def np_projection_bisection(v):
  """Simplex projection by bisection on theta (independent of the sort-based formula)."""
  out = []
  for row in np.asarray(v, np.float64):
    lo, hi = row.min() - 1.0, row.max()
    for _ in range(200):
      mid = 0.5 * (lo + hi)
      if np.maximum(row - mid, 0).sum() > 1:
        lo = mid
      else:
        hi = mid
    out.append(np.maximum(row - 0.5 * (lo + hi), 0))
  return np.array(out)


def test_simplex_projection():
  v = np.random.default_rng(29).normal(size=(20, 6)).astype(np.float32) * 2
  p = C.simplex_projection(v)
  np.testing.assert_allclose(p, np_projection_bisection(v), atol=1e-5)
  # Points already on the simplex are fixed; batched leading axes work; jit works.
  q = dirichlet(30, 5, 6)
  np.testing.assert_allclose(C.simplex_projection(q), q, atol=1e-6)
  np.testing.assert_allclose(jax.jit(C.simplex_projection)(v.reshape(4, 5, 6)),
                             np_projection_bisection(v).reshape(4, 5, 6), atol=1e-5)


def test_pgd_reaches_em_optimum():
  sigma = random_probs(31, 32, 5, scale=2.0)
  _, f_ref = _long_numpy_optimum(sigma, 1.0)
  y, n = C.pgd_pseudo_labels(sigma, step_size=0.5, tol=1e-8, max_iter=3000)
  np.testing.assert_allclose(np.asarray(y).sum(1), 1.0, atol=1e-5)
  assert abs(np_objective(sigma, y, 1.0) - f_ref) / abs(f_ref) < 1e-3


# ------------------------------------------------------------------------------------------------
# Mutual-information clustering loss
# ------------------------------------------------------------------------------------------------


def np_mi_loss(z, weight=1.0):
  p = np_softmax(z)
  cond = -np.mean(np.sum(p * np.log(p), 1))
  m = p.mean(0)
  return cond - weight * (-np.sum(m * np.log(m)))


def test_mi_loss_value_grad_and_pmap():
  z = np.random.default_rng(32).normal(size=(16, 5)).astype(np.float32)
  np.testing.assert_allclose(C.mutual_information_loss(z), np_mi_loss(z), rtol=1e-5)
  np.testing.assert_allclose(C.mutual_information_loss(z, marginal_weight=2.0),
                             np_mi_loss(z, 2.0), rtol=1e-5)
  where = np.arange(16) % 2 == 0
  np.testing.assert_allclose(C.mutual_information_loss(z, where=where), np_mi_loss(z[where]),
                             rtol=1e-5)
  check_grads(C.mutual_information_loss, (jnp.asarray(z[:4]),), order=1, modes=("rev",),
              atol=2e-2, rtol=2e-2)
  # 4 devices: the value is global, and the trainer's pmean(grad(pmean(loss))) gives the
  # single-device gradient on the concatenated batch.
  w = np.random.default_rng(33).normal(size=(3, 5)).astype(np.float32)
  x = np.random.default_rng(34).normal(size=(16, 3)).astype(np.float32)

  def local_grad(w, x):
    loss_fn = lambda w: jax.lax.pmean(C.mutual_information_loss(x @ w, axis_name="data"), "data")
    value, g = jax.value_and_grad(loss_fn)(w)
    return value, jax.lax.pmean(g, "data")

  value, g = jax.pmap(local_grad, axis_name="data", in_axes=(None, 0))(w, x.reshape(4, 4, 3))
  value, g = jax.block_until_ready((value, g))
  v_single, g_single = jax.value_and_grad(lambda w: C.mutual_information_loss(x @ w))(w)
  np.testing.assert_allclose(value, np.full(4, v_single), rtol=1e-5)
  np.testing.assert_allclose(g[0], g_single, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Found by mutation testing (docs/testing.md, third pass)
# ------------------------------------------------------------------------------------------------


def test_pgd_stops_on_the_absolute_relative_change():
  """PGD is not monotone: its stopping test is |F_prev - F| / |F| < tol, so a step that raises F by
  more than tol does not stop it (a signed test would stop at the first increase). The expected
  count comes from the trajectory itself (tol = 0 runs exactly m iterations), scored by numpy."""
  sigma = random_probs(34, 16, 4, scale=2.0)
  kw = dict(step_size=6.0, fairness="classic", fairness_weight=1.0)
  tol, max_iter = 1e-3, 12
  f = [np_objective(sigma, sigma, 1.0, "classic")]
  ys = [None]
  for m in range(1, max_iter + 1):
    y_m, n_m = C.pgd_pseudo_labels(sigma, tol=0.0, max_iter=m, **kw)
    assert int(n_m) == m
    ys.append(np.asarray(y_m))
    f.append(np_objective(sigma, y_m, 1.0, "classic"))
  rel = np.abs(np.diff(f)) / np.abs(f[1:])
  want = next((m for m in range(1, max_iter + 1) if rel[m - 1] < tol), max_iter)
  assert any(f[m] > f[m - 1] for m in range(1, want + 1)), f  # F rose on the way: the case tested
  y, n = C.pgd_pseudo_labels(sigma, tol=tol, max_iter=max_iter, **kw)
  assert int(n) == want
  np.testing.assert_allclose(np.asarray(y), ys[want], atol=1e-6)


@pytest.mark.parametrize("solver", ["collision", "shannon", "pgd"])
def test_a_traced_mask_that_keeps_nothing_gives_the_start_point_and_zero_iterations(solver):
  """Under jit an all-False ``where`` cannot be refused: every solver returns its start point
  (the predictions) and 0 iterations, and with one row kept it iterates as on that row alone."""
  fn = {"collision": C.collision_pseudo_labels, "shannon": C.shannon_pseudo_labels,
        "pgd": functools.partial(C.pgd_pseudo_labels, step_size=0.1)}[solver]
  sigma = random_probs(36, 6, 3)
  run = jax.jit(lambda s, w: fn(s, where=w, tol=0.0, max_iter=7))
  y, n = run(sigma, np.zeros(6, bool))
  assert int(n) == 0
  np.testing.assert_array_equal(np.asarray(y), sigma)
  y, n = run(sigma, np.arange(6) == 2)
  y_alone, n_alone = fn(sigma[2:3], tol=0.0, max_iter=7)
  assert int(n) == int(n_alone) == 7
  np.testing.assert_allclose(np.asarray(y)[2], np.asarray(y_alone)[0], atol=1e-6)


def test_solvers_need_two_classes():
  one = np.ones((4, 1), np.float32)
  for solver in (C.collision_pseudo_labels, C.shannon_pseudo_labels,
                 functools.partial(C.pgd_pseudo_labels, step_size=0.1)):
    with pytest.raises(ValueError, match=r"`probs` must have at least 2 classes, got shape "
                                         r"\(4, 1\)"):
      solver(one)
  with pytest.raises(ValueError, match=r"`pseudo_labels` must have at least 2 classes"):
    C.self_labeling_objective(random_probs(37, 4, 2), one)
  y, n = C.collision_pseudo_labels(random_probs(37, 4, 2), tol=0.0, max_iter=3)  # 2 is enough
  assert np.asarray(y).shape == (4, 2) and int(n) == 3


def test_bfloat16_probabilities_get_a_tolerance_of_two_ulps():
  """The simplex check's tolerance grows to 2 eps of the dtype (bfloat16: 2 * 2^-7 = 0.0156): a row
  3 ulps (of [0.5, 1)) off sums to 1.0117 and passes, one 5 ulps off (1.0195) does not."""
  import ml_dtypes
  eps = float(np.finfo(ml_dtypes.bfloat16).eps)
  assert eps == 2.0 ** -7
  ok = np.array([[0.5, 0.5 + 3 * 2.0 ** -8], [0.25, 0.75]], ml_dtypes.bfloat16)
  bad = np.array([[0.5, 0.5 + 5 * 2.0 ** -8], [0.25, 0.75]], ml_dtypes.bfloat16)
  assert 1e-3 < float(ok.astype(np.float64).sum(1).max()) - 1 < 2 * eps
  assert 2 * eps < float(bad.astype(np.float64).sum(1).max()) - 1 < 3 * eps
  C.collision_pseudo_labels(ok, tol=0.0, max_iter=2)
  with pytest.raises(ValueError, match=r"`probs` must be probabilities on the simplex .*row sum "
                                       r"of 1.01953"):
    C.collision_pseudo_labels(bad, tol=0.0, max_iter=2)


def test_classic_fairness_gradient_is_finite_at_an_empty_cluster():
  """d/dy of the objective with a cluster no pseudo-label uses: 0 log 0 is taken as 0 without a NaN
  slope (the log's argument is guarded, not only its result); the other columns are numpy's."""
  sigma = random_probs(38, 6, 3)
  y = dirichlet(39, 6, 3)
  y[:, 2] = 0.0
  y /= y.sum(1, keepdims=True)
  g = np.asarray(jax.grad(lambda v: C.self_labeling_objective(
      sigma, v, fairness="classic", fairness_weight=2.0))(jnp.asarray(y)))
  assert np.all(np.isfinite(g)), g
  with np.errstate(divide="ignore"):  # numpy's column 2 is -inf: only columns 0 and 1 compared
    want = np_grad_y(sigma, y, 2.0, "classic")[:, :2] / 6
  np.testing.assert_allclose(g[:, :2], want, rtol=1e-4)


def test_mi_loss_refuses_a_negative_marginal_weight():
  z = np.random.default_rng(40).normal(size=(5, 3)).astype(np.float32)
  for bad in (-0.5, -1.0, float("nan")):
    with pytest.raises(ValueError, match=r"`marginal_weight` must be a finite number >= 0"):
      C.mutual_information_loss(z, marginal_weight=bad)
  np.testing.assert_allclose(C.mutual_information_loss(z, marginal_weight=0.0),
                             np_mi_loss(z, 0.0), rtol=1e-5)


def _skewed_probs(seed=3, n=40):
  """Two classes, most rows confident in class 0: the optimum's marginal is far from uniform,
  where strong (KL(u || ybar)) and classic (KL(ybar || u)) fairness pull differently (near the
  uniform marginal their gradients agree up to a constant, so balanced problems cannot tell them
  apart)."""
  rng = np.random.default_rng(seed)
  z = np.stack([rng.normal(2.0, 1.0, n), rng.normal(0.0, 1.0, n)], 1)
  return np_softmax(z).astype(np.float32)


def test_pgd_follows_its_fairness_on_a_skewed_problem():
  """PGD with strong fairness reaches the strong optimum (numpy EM, 20k iterations) and with
  classic fairness the classic EM's optimum, each to 1e-5 of its own objective; the two optima
  differ (marginals 0.84 vs 0.89 at lambda 0.3), so a PGD that used the other term's gradient
  fails. (Killed mutants: ``fairness == "strong"`` -> ``!=`` / ``not ==`` in ``_pgd``.)"""
  sigma, lam = _skewed_probs(), 0.3
  y_ref = np_em_strong(sigma, lam, 20000)
  f_ref = np_objective(sigma, y_ref, lam)
  y, _ = C.pgd_pseudo_labels(sigma, fairness_weight=lam, step_size=0.5, tol=1e-9, max_iter=5000)
  assert abs(np_objective(sigma, y, lam) - f_ref) / abs(f_ref) < 1e-5
  y_c, _ = C.pgd_pseudo_labels(sigma, fairness_weight=lam, fairness="classic", step_size=0.5,
                               tol=1e-9, max_iter=5000)
  y_em, _ = C.collision_pseudo_labels(sigma, fairness_weight=lam, fairness="classic", tol=1e-9,
                                      max_iter=5000)
  f_c = np_objective(sigma, y_em, lam, fairness="classic")
  assert abs(np_objective(sigma, y_c, lam, fairness="classic") - f_c) / abs(f_c) < 1e-5
  assert abs(np.asarray(y_c).mean(0)[0] - y_ref.mean(0)[0]) > 0.02   # the two optima differ


def test_mutual_information_loss_with_an_empty_cluster():
  """A class whose softmax underflows to exactly 0 in every row (logit -200): the loss is 0 (hand:
  every row is one-hot, the marginal [1, 0] has entropy 0) and its gradient is finite. (Killed
  mutants: the marginal's ``0 log 0`` term set to -1 instead of 0, and the inner guard
  ``marginal > 0`` -> ``> -1``, whose log(0) makes the gradient NaN.)"""
  z = jnp.array([[0.0, -200.0], [0.0, -200.0], [0.0, -200.0]])
  assert float(C.mutual_information_loss(z)) == 0.0
  g = jax.jit(jax.grad(C.mutual_information_loss))(z)
  assert np.all(np.isfinite(np.asarray(g)))


def test_shannon_bisection_steps_must_be_a_python_int():
  """A bool or a float count is refused (the check is ``not int or bool``). (Killed mutant:
  ``or`` -> ``and``, which let both through.)"""
  p = random_probs(5, 8, 3)
  for bad in (True, 3.0):
    with pytest.raises(ValueError, match=r"`bisection_steps` must be a Python int >= 1, got "
                                         + repr(bad)):
      C.shannon_pseudo_labels(p, bisection_steps=bad)
  y, _ = C.shannon_pseudo_labels(p, bisection_steps=np.int64(3))
  np.testing.assert_allclose(np.asarray(y).sum(1), 1.0, atol=1e-5)


def test_classic_fairness_of_an_empty_cluster_counts_0_log_0_as_0():
  """Every pseudo-label one-hot on class 0 of K = 2: classic fairness is KL(ybar || u) with
  ybar = [1, 0]: 1 log 1 + 0 log 0 + log 2 = log 2 (hand, 0 log 0 = 0); the collision term is
  -mean log sigma_i0. (Killed mutant: the empty cluster's term -1 instead of 0.)"""
  sigma = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], np.float32)
  y = np.array([[1.0, 0.0]] * 3, np.float32)
  want = -np.mean(np.log(sigma[:, 0].astype(np.float64))) + np.log(2.0)
  got = C.self_labeling_objective(sigma, y, fairness="classic", fairness_weight=1.0)
  np.testing.assert_allclose(float(got), want, rtol=1e-6)


@pytest.mark.parametrize("solver", [C.collision_pseudo_labels, C.shannon_pseudo_labels])
def test_a_mask_that_keeps_one_row_solves_that_row(solver):
  """``where`` keeping exactly one row: that row's pseudo-label is the solver's answer on the row
  alone (not the start point sigma, which is only returned when no row is kept), and the
  iteration count is the same. (Killed mutant: ``kept > 0`` -> ``kept > 1`` in
  ``_or_start_point``.)"""
  sigma = random_probs(7, 6, 4)
  where = np.array([False, False, True, False, False, False])
  y, n = solver(sigma, fairness_weight=1.0, where=where)
  y1, n1 = solver(sigma[2:3], fairness_weight=1.0)
  np.testing.assert_allclose(np.asarray(y)[2], np.asarray(y1)[0], atol=1e-6)
  assert int(n) == int(n1) > 0
  assert np.abs(np.asarray(y1)[0] - sigma[2]).max() > 1e-2   # the solver moved it
