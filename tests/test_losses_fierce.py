"""Tests of the FIERCE losses against independent numpy computations (labelwise.losses.fierce)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from labelwise.losses import fierce_codes as eager_fierce_codes
from labelwise.losses import fierce_entropy as eager_fierce_entropy
from labelwise.losses import fierce_loss as eager_fierce_loss
from labelwise.losses import fierce_objective
from labelwise.losses import koleo_entropy as eager_koleo_entropy
from labelwise.losses.fierce import fierce_assignments
from labelwise.losses.fierce import fierce_logits


# Tests call jitted wrappers (one compilation per shape instead of one per eager primitive: the
# file must stay fast on 2 shared cores). Shape/value checks run at trace time, so the ValueError
# tests work through them too; test_jit_equals_eager compares with the eager functions.
_HYPER = ("temperature", "similarity", "logit_scale", "axis_name", "eps")
fierce_entropy = jax.jit(eager_fierce_entropy, static_argnames=_HYPER)
fierce_loss = jax.jit(eager_fierce_loss, static_argnames=_HYPER + ("lam", "form"))
koleo_entropy = jax.jit(eager_koleo_entropy, static_argnames=("axis_name", "eps"))


def fierce_codes(key, num_codes, dim, **kw):
  if kw.get("init") == "bins":
    return eager_fierce_codes(key, num_codes, dim, **kw)
  return jax.jit(eager_fierce_codes, static_argnums=(1, 2), static_argnames=("init", "scale"))(
      key, num_codes, dim, **kw)


# ---------------------------------------------------------------- numpy references (written here)

def np_logits(f, c, similarity, scale=1.0):
  f = np.asarray(f, np.float64)
  c = np.asarray(c, np.float64)
  if similarity == "cosine":
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    s = fn @ cn.T
  elif similarity == "dot":
    s = f @ c.T
  else:
    s = -(f.reshape(-1, 1) - c.reshape(1, -1)) ** 2
  return scale * s


def np_plugin_entropy_bits(assign, k, weights=None):
  weights = np.ones(len(assign)) if weights is None else np.asarray(weights, np.float64)
  counts = np.bincount(assign, weights=weights, minlength=k)
  p = counts / counts.sum()
  p = p[p > 0]
  return float(-(p * np.log2(p)).sum())


def np_softmax(s):
  s = s - s.max(axis=-1, keepdims=True)
  e = np.exp(s)
  return e / e.sum(axis=-1, keepdims=True)


def np_koleo(f, weights=None):
  f = np.asarray(f, np.float64)
  w = np.ones(len(f), bool) if weights is None else np.asarray(weights, bool)
  f = f[w]
  x = f / np.linalg.norm(f, axis=1, keepdims=True)
  vals = []
  for i in range(len(x)):
    d = [np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i]
    vals.append(np.log(min(d) + 1e-8))
  return float(np.mean(vals))


def rand(seed, shape, scale=1.0):
  # numpy draws: no compilation per shape (jax.random.normal would compile for each one).
  return jnp.asarray(scale * np.random.RandomState(seed).standard_normal(shape), jnp.float32)


def codebook(seed, k, d, scale=1.0):
  """A fixed random codebook for tests that are not about fierce_codes itself."""
  return jnp.asarray(np.random.RandomState(1000 + seed).uniform(-scale, scale, (k, d)),
                     jnp.float32)


# ---------------------------------------------------------------- codebook

def test_codes_inits_shapes_ranges_and_determinism():
  key = jax.random.PRNGKey(0)
  u = np.asarray(fierce_codes(key, 100, 16))
  assert u.shape == (100, 16) and u.dtype == np.float32
  assert np.all(np.abs(u) <= 0.01) and u.min() < -0.009 and u.max() > 0.009
  pos = np.asarray(fierce_codes(key, 50, 4, init="positive", scale=1.0))
  assert np.all(pos >= 0) and np.all(pos <= 1.0) and pos.mean() == pytest.approx(0.5, abs=0.1)
  nrm = np.asarray(fierce_codes(key, 400, 50, init="normal", scale=2.0))
  assert nrm.std() == pytest.approx(2.0, rel=0.05)
  bins = np.asarray(fierce_codes(None, 7, 1, init="bins"))
  np.testing.assert_array_equal(bins[:, 0], np.arange(1, 8))
  np.testing.assert_array_equal(u, np.asarray(fierce_codes(key, 100, 16)))
  assert not np.allclose(u, np.asarray(fierce_codes(jax.random.PRNGKey(1), 100, 16)))


# ---------------------------------------------------------------- entropy values

@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_noiseless_entropy_equals_numpy_plugin_of_argmax_histogram(similarity):
  f = rand(1, (64, 8))
  codes = codebook(2, 10, 8, scale=1.0)
  h = fierce_entropy(f, codes, similarity=similarity)
  assign = np_logits(f, codes, similarity).argmax(axis=1)
  assert h.dtype == jnp.float32 and h.shape == ()
  np.testing.assert_allclose(float(h), np_plugin_entropy_bits(assign, 10), rtol=1e-5)


def test_noiseless_entropy_hand_numbers():
  # Codes along the axes; features pick codes 0,0,1,2 -> p = (1/2, 1/4, 1/4), H = 1.5 bits.
  codes = jnp.eye(3)
  f = jnp.array([[2.0, 0.1, 0.0], [1.0, 0.0, 0.3], [0.0, 5.0, 1.0], [0.1, 0.0, 0.2]])
  assert float(fierce_entropy(f, codes)) == pytest.approx(1.5, abs=1e-6)
  assert float(fierce_entropy(f, codes, similarity="dot")) == pytest.approx(1.5, abs=1e-6)


def test_scalar_bins_variant_equals_numpy():
  s = jnp.array([0.9, 1.2, 2.6, 2.4, 5.1, 9.0, 0.0, 3.49])
  bins = fierce_codes(None, 5, 1, init="bins")
  # nearest bin (logit -(s-k)^2): 1,1,3,2,5,5,1,3 -> counts 3,1,2,0,2 over 8.
  expect = np_plugin_entropy_bits(np.array([0, 0, 2, 1, 4, 4, 0, 2]), 5)
  assert float(fierce_entropy(s, bins, similarity="bins")) == pytest.approx(expect, rel=1e-6)
  assert float(fierce_entropy(s[:, None], bins[:, 0], similarity="bins")) == pytest.approx(
      expect, rel=1e-6)
  assign = np_logits(s, bins, "bins").argmax(1)
  assert np_plugin_entropy_bits(assign, 5) == pytest.approx(expect)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_collapsed_features_give_zero_without_noise(similarity):
  f = jnp.tile(rand(3, (1, 12)), (40, 1))
  codes = codebook(4, 100, 12)
  assert float(fierce_entropy(f, codes, similarity=similarity)) == 0.0


def test_noisy_entropy_matches_numpy_with_the_same_gumbel_draw():
  f = rand(5, (32, 6))
  codes = codebook(6, 20, 6)
  key = jax.random.PRNGKey(7)
  g = np.asarray(jax.random.gumbel(key, (32, 20), jnp.float32), np.float64)
  s = np_logits(f, codes, "cosine", scale=3.0) + g
  expect = np_plugin_entropy_bits(s.argmax(1), 20)
  got = fierce_entropy(f, codes, key, logit_scale=3.0)
  np.testing.assert_allclose(float(got), expect, rtol=1e-5)


@pytest.mark.parametrize("b,k", [(8, 100), (256, 16), (64, 64)])
def test_noisy_entropy_bounds(b, k):
  codes = codebook(0, k, 5)
  for seed in range(3):
    f = rand(10 + seed, (b, 5))
    h = float(fierce_entropy(f, codes, jax.random.PRNGKey(seed)))
    assert 0.0 < h <= math.log2(min(b, k)) + 1e-5


def test_known_weakness_noise_dominates_at_tau_one():
  # The method sheet's pilot: at logit scale 1 the Gumbel noise swamps cosine logits, so collapsed
  # features look almost as "spread" as random ones (about 6.2 bits for B=256, K=100).
  codes = codebook(0, 100, 32)
  collapsed = jnp.tile(rand(1, (1, 32)), (256, 1))
  h_collapsed = float(fierce_entropy(collapsed, codes, jax.random.PRNGKey(2)))
  h_random = float(fierce_entropy(rand(3, (256, 32)), codes, jax.random.PRNGKey(2)))
  assert float(fierce_entropy(collapsed, codes)) == 0.0
  assert h_collapsed > 5.5 and abs(h_collapsed - h_random) < 0.6
  # A large logit scale lets the noisy estimator see the collapse.
  assert float(fierce_entropy(collapsed, codes, jax.random.PRNGKey(2), logit_scale=100.0)) < 1.0


def test_where_mask_equals_entropy_of_the_kept_examples():
  f = rand(8, (24, 4))
  codes = codebook(9, 12, 4, scale=1.0)
  where = np.arange(24) % 3 != 0
  got = fierce_entropy(f, codes, where=jnp.asarray(where))
  np.testing.assert_allclose(float(got), float(fierce_entropy(f[where], codes)), rtol=1e-6)
  assign = np_logits(f, codes, "cosine").argmax(1)
  np.testing.assert_allclose(float(got), np_plugin_entropy_bits(assign, 12, where), rtol=1e-5)


def test_eps_does_not_change_the_value_and_bfloat16_inputs_give_float32():
  f = rand(11, (16, 4))
  codes = codebook(12, 30, 4)
  h_ref = fierce_entropy(f, codes)
  np.testing.assert_allclose(float(fierce_entropy(f, codes, eps=0.0)), float(h_ref), rtol=1e-6)
  h_bf16 = fierce_entropy(f.astype(jnp.bfloat16), codes.astype(jnp.bfloat16))
  assert h_bf16.dtype == jnp.float32


# ---------------------------------------------------------------- gradients

def _np_straight_through_grad(f, codes, g, tau, scale, eps, fd=1e-5):
  """Chain rule by hand: dH/dp at the hard histogram, times finite differences of the soft part.

  The straight-through estimator differentiates p = mean_i softmax((s_i(f) + g_i) / tau) in place
  of the hard histogram p_hard, so grad = d/df sum_k a_k mean_i softmax(...)_k with
  a_k = dH/dp_k (p_hard) = -(log2(p_k + eps) + p_k / ((p_k + eps) ln 2)).
  """
  f0 = np.asarray(f, np.float64)
  c = np.asarray(codes, np.float64)
  b, k = f0.shape[0], c.shape[0]
  p_hard = np.bincount((np_logits(f0, c, "cosine", scale) + g).argmax(1), minlength=k) / b
  if eps > 0:
    a = -(np.log2(p_hard + eps) + p_hard / ((p_hard + eps) * np.log(2)))
  else:  # textbook 0 log 0 = 0: empty bins get no gradient
    safe = np.where(p_hard > 0, p_hard, 1.0)
    a = np.where(p_hard > 0, -(np.log2(safe) + 1 / np.log(2)), 0.0)

  def soft_part(ff):
    return (a * np_softmax((np_logits(ff, c, "cosine", scale) + g) / tau).mean(0)).sum()

  grad = np.zeros_like(f0)
  for idx in np.ndindex(*f0.shape):
    e = np.zeros_like(f0)
    e[idx] = fd
    grad[idx] = (soft_part(f0 + e) - soft_part(f0 - e)) / (2 * fd)
  return grad


@pytest.mark.parametrize("noisy,eps", [(False, 1e-21), (True, 1e-21), (True, 0.0)])
def test_straight_through_gradient_matches_numpy_finite_differences(noisy, eps):
  f = rand(13, (6, 3))
  codes = codebook(14, 8, 3, scale=1.0)  # 8 codes, 6 examples: empty bins
  key = jax.random.PRNGKey(15) if noisy else None
  g = (np.asarray(jax.random.gumbel(key, (6, 8), jnp.float32), np.float64) if noisy
       else np.zeros((6, 8)))
  tau, scale = 0.7, 2.0
  got = jax.jit(jax.grad(lambda x: fierce_entropy(x, codes, key, temperature=tau,
                                                  logit_scale=scale, eps=eps)))(f)
  expect = _np_straight_through_grad(f, codes, g, tau, scale, eps)
  np.testing.assert_allclose(np.asarray(got), expect, rtol=2e-3, atol=2e-4)


def test_gradient_reaches_features_never_codes():
  f = rand(16, (32, 8))
  codes = codebook(17, 100, 8)
  for key in (None, jax.random.PRNGKey(18)):
    gf, gc = jax.jit(jax.grad(lambda a, b: fierce_entropy(a, b, key), argnums=(0, 1)))(f, codes)
    assert np.abs(np.asarray(gf)).max() > 1e-3
    assert np.all(np.asarray(gc) == 0.0)
    assert np.all(np.isfinite(np.asarray(gf)))


def test_gradient_finite_at_zero_features():
  codes = codebook(0, 10, 4)
  g = jax.jit(jax.grad(lambda x: fierce_entropy(x, codes, jax.random.PRNGKey(1))))(
      jnp.zeros((5, 4)))
  assert np.all(np.isfinite(np.asarray(g)))


def test_koleo_gradients_check_grads_and_finite_at_duplicates():
  f = rand(19, (7, 3))
  check_grads(koleo_entropy, (f,), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)
  dup = jnp.concatenate([f, f[:2]], axis=0)
  g = jax.jit(jax.grad(koleo_entropy))(dup)
  assert np.all(np.isfinite(np.asarray(g)))


def test_loss_gradient_check_grads_wrt_logits():
  logits = rand(20, (8, 3))
  labels = jnp.arange(8) % 3
  f = rand(21, (8, 4))
  codes = codebook(22, 10, 4)
  fn = jax.jit(lambda z: eager_fierce_loss(z, labels, f, codes, jax.random.PRNGKey(0),
                                           lam=2.0).mean())
  check_grads(fn, (logits,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------- KoLeo values

def test_koleo_hand_numbers_and_numpy():
  # Orthonormal rows: every nearest distance is sqrt(2).
  assert float(koleo_entropy(jnp.eye(4))) == pytest.approx(math.log(math.sqrt(2) + 1e-8), 1e-6)
  # Scale-invariant (L2-normalized) and equal to a brute-force numpy loop.
  f = rand(23, (20, 5))
  np.testing.assert_allclose(float(koleo_entropy(f)), np_koleo(f), rtol=1e-4)
  np.testing.assert_allclose(float(koleo_entropy(7.0 * f)), np_koleo(f), rtol=1e-4)
  where = np.arange(20) % 4 != 1
  np.testing.assert_allclose(float(koleo_entropy(f, where=jnp.asarray(where))),
                             np_koleo(f, where), rtol=1e-4)


def test_koleo_spread_beats_collapsed():
  spread = rand(24, (32, 4))
  near = jnp.ones((32, 4)) + 1e-3 * rand(25, (32, 4))
  assert float(koleo_entropy(spread)) > float(koleo_entropy(near)) + 2.0


# ---------------------------------------------------------------- loss forms

def test_lambda_zero_equals_cross_entropy():
  logits = rand(26, (10, 4))
  labels = jnp.arange(10) % 4
  f = rand(27, (10, 6))
  codes = codebook(28, 100, 6)
  got = fierce_loss(logits, labels, f, codes, jax.random.PRNGKey(0), lam=0.0)
  z = np.asarray(logits, np.float64)
  ce = np.log(np.exp(z).sum(1)) - z[np.arange(10), np.asarray(labels)]
  np.testing.assert_allclose(np.asarray(got), ce, rtol=1e-5)


@pytest.mark.parametrize("form", ["difference", "convex"])
def test_loss_forms_equal_numpy(form):
  logits = rand(29, (12, 3))
  labels = (jnp.arange(12) * 7) % 3
  f = rand(30, (12, 5))
  codes = codebook(31, 16, 5)
  lam = 0.2 if form == "convex" else 1.5
  where = np.arange(12) != 4
  got = np.asarray(fierce_loss(logits, labels, f, codes, lam=lam, form=form,
                               where=jnp.asarray(where)))
  z = np.asarray(logits, np.float64)
  ce = np.log(np.exp(z).sum(1)) - z[np.arange(12), np.asarray(labels)]
  h = np_plugin_entropy_bits(np_logits(f, codes, "cosine").argmax(1), 16, where)
  if form == "difference":
    expect = ce - lam * h
  else:
    expect = ce / (1 + lam) + lam / (1 + lam) * (math.log2(16) - h)
  expect = np.where(where, expect, 0.0)
  np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)


def test_objective_difference_can_be_negative_convex_cannot():
  ce = jnp.array([0.01, 0.02])
  assert np.all(np.asarray(fierce_objective(ce, jnp.float32(3.0), lam=1.0)) < 0)
  assert np.all(np.asarray(fierce_objective(ce, jnp.float32(3.0), lam=1.0, form="convex",
                                            max_entropy=math.log2(8))) >= 0)


# ---------------------------------------------------------------- transformations

def test_jit_equals_eager():
  logits, labels = rand(32, (16, 3)), jnp.arange(16) % 3
  f = rand(33, (16, 4))
  codes = codebook(34, 20, 4)
  key = jax.random.PRNGKey(35)
  eager = eager_fierce_loss(logits, labels, f, codes, key, lam=1.0, temperature=0.5)
  jitted = fierce_loss(logits, labels, f, codes, key, lam=1.0, temperature=0.5)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6)
  np.testing.assert_allclose(float(koleo_entropy(f)), float(eager_koleo_entropy(f)), rtol=1e-6)


def test_vmap_over_independent_batches_equals_loop():
  fs = rand(36, (3, 16, 4))
  codes = codebook(37, 20, 4)
  keys = jax.random.split(jax.random.PRNGKey(38), 3)
  got = jax.jit(jax.vmap(lambda x, k: eager_fierce_entropy(x, codes, k)))(fs, keys)
  loop = [float(fierce_entropy(fs[i], codes, keys[i])) for i in range(3)]
  np.testing.assert_allclose(np.asarray(got), loop, rtol=1e-6)
  got_kl = jax.jit(jax.vmap(eager_koleo_entropy))(fs)
  np.testing.assert_allclose(np.asarray(got_kl), [np_koleo(fs[i]) for i in range(3)], rtol=1e-4)


# ---------------------------------------------------------------- 4 devices

def _mesh():
  assert len(jax.devices()) >= 4, "conftest should give 4 CPU devices"
  return jax.make_mesh((4,), ("data",))


def test_psum_histogram_on_4_devices_equals_whole_batch_pmap_and_shard_map():
  f = rand(40, (32, 6))
  codes = codebook(41, 16, 6, scale=1.0)
  where = np.arange(32) % 5 != 2
  whole = float(fierce_entropy(f, codes, where=jnp.asarray(where)))
  assert whole == pytest.approx(
      np_plugin_entropy_bits(np_logits(f, codes, "cosine").argmax(1), 16, where), rel=1e-5)
  # Per-device entropies differ from the global one: the psum matters.
  local = [float(fierce_entropy(f[8 * i:8 * i + 8], codes)) for i in range(4)]
  assert max(abs(v - whole) for v in local) > 0.1

  fn = lambda x, w: fierce_entropy(x, codes, axis_name="data", where=w)
  out = jax.block_until_ready(jax.pmap(fn, axis_name="data")(
      f.reshape(4, 8, 6), jnp.asarray(where).reshape(4, 8)))
  np.testing.assert_allclose(np.asarray(out), [whole] * 4, rtol=1e-6)

  mesh = _mesh()
  sh = NamedSharding(mesh, P("data"))
  sm = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P()))
  out = jax.block_until_ready(sm(jax.device_put(f, sh), jax.device_put(jnp.asarray(where), sh)))
  assert float(out) == pytest.approx(whole, rel=1e-6)


def test_koleo_on_4_devices_equals_whole_batch():
  f = rand(42, (24, 5))
  where = np.arange(24) % 7 != 3
  whole = float(koleo_entropy(f, where=jnp.asarray(where)))
  fn = lambda x, w: koleo_entropy(x, axis_name="data", where=w)
  out = jax.block_until_ready(jax.pmap(fn, axis_name="data")(
      f.reshape(4, 6, 5), jnp.asarray(where).reshape(4, 6)))
  np.testing.assert_allclose(np.asarray(out), [whole] * 4, rtol=1e-5)
  mesh = _mesh()
  sh = NamedSharding(mesh, P("data"))
  sm = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P()))
  out = jax.block_until_ready(sm(jax.device_put(f, sh), jax.device_put(jnp.asarray(where), sh)))
  assert float(out) == pytest.approx(whole, rel=1e-5)


@pytest.mark.parametrize("estimator", ["codes", "koleo"])
def test_parameter_gradient_on_4_devices_equals_single_device(estimator):
  """The trainer's pmean(grad(pmean(loss))) with the global histogram gives the whole-batch grad."""
  codes = codebook(0, 16, 5)
  x = rand(43, (32, 6))
  labels = jnp.arange(32) % 3
  params = (rand(44, (6, 5)), rand(45, (5, 3)))

  def objective(p, x, y, axis_name=None):
    feats = jnp.tanh(x @ p[0])
    logits = feats @ p[1]
    if estimator == "codes":
      return fierce_loss(logits, y, feats, codes, lam=1.0, temperature=0.5,
                         axis_name=axis_name).mean()
    from labelwise.losses import softmax_cross_entropy
    h = koleo_entropy(feats, axis_name=axis_name)
    return fierce_objective(softmax_cross_entropy(logits, y), h, lam=1.0).mean()

  whole = jax.grad(objective)(params, x, labels)

  def step(p, x, y):
    g = jax.grad(lambda q: jax.lax.pmean(objective(q, x, y, "data"), "data"))(p)
    return jax.lax.pmean(g, "data")

  gp = jax.block_until_ready(jax.pmap(step, axis_name="data", in_axes=(None, 0, 0))(
      params, x.reshape(4, 8, 6), labels.reshape(4, 8)))
  mesh = _mesh()
  sh = NamedSharding(mesh, P("data"))
  gs = jax.block_until_ready(jax.jit(jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P()))(
          params, jax.device_put(x, sh), jax.device_put(labels, sh)))
  for a, b, c in zip(gp, gs, whole):
    assert np.abs(np.asarray(c)).max() > 1e-4
    np.testing.assert_allclose(np.asarray(a)[0], np.asarray(c), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(b), np.asarray(c), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- errors

def _ok():
  return rand(0, (4, 3)), codebook(0, 5, 3)


@pytest.mark.parametrize("call,match", [
    (lambda f, c: fierce_entropy(f, c, similarity="euclid"), "similarity"),
    (lambda f, c: fierce_entropy(f, c, temperature=0.0), "temperature"),
    (lambda f, c: fierce_entropy(f, c, logit_scale=-1.0), "logit_scale"),
    (lambda f, c: fierce_entropy(f, c, eps=-1.0), "eps"),
    (lambda f, c: fierce_entropy(f[None], c), "features"),
    (lambda f, c: fierce_entropy(f, c[:, :2]), r"codes.*\[num_codes, 3\]"),
    (lambda f, c: fierce_entropy(f, c[0]), "codes"),
    (lambda f, c: fierce_entropy(f, c, where=jnp.ones((5,), bool)), "where"),
    (lambda f, c: fierce_entropy(f, c, similarity="bins"), "scalar feature"),
    (lambda f, c: fierce_codes(jax.random.PRNGKey(0), 0, 3), "num_codes"),
    (lambda f, c: fierce_codes(jax.random.PRNGKey(0), 5, 0), "dim"),
    (lambda f, c: fierce_codes(jax.random.PRNGKey(0), 5, 3, init="orthogonal"), "init"),
    (lambda f, c: fierce_codes(jax.random.PRNGKey(0), 5, 3, scale=0.0), "scale"),
    (lambda f, c: fierce_codes(None, 5, 3, init="bins"), "dim"),
    (lambda f, c: koleo_entropy(f[0]), "features"),
    (lambda f, c: koleo_entropy(f[:0]), "must not be empty"),
    (lambda f, c: fierce_entropy(f[:0], c), "must not be empty"),
    (lambda f, c: koleo_entropy(f, eps=0.0), "eps"),
    (lambda f, c: fierce_objective(jnp.ones(4), jnp.ones(()), form="sum"), "form"),
    (lambda f, c: fierce_objective(jnp.ones(4), jnp.ones(()), lam=-1.0), "lam"),
    (lambda f, c: fierce_objective(jnp.ones(4), jnp.ones(()), form="convex"), "max_entropy"),
    (lambda f, c: fierce_objective(jnp.ones(4), jnp.ones(4)), "entropy"),
    (lambda f, c: fierce_loss(jnp.zeros((4, 2)), jnp.zeros(4, jnp.int32), f[:3], c),
     "batch size 4"),
    (lambda f, c: fierce_loss(jnp.zeros((4, 2)), jnp.zeros(3, jnp.int32), f, c), "labels"),
])
def test_value_errors_name_the_argument(call, match):
  f, c = _ok()
  with pytest.raises(ValueError, match=match):
    call(f, c)


def test_type_errors():
  f, c = _ok()
  with pytest.raises(TypeError, match="features"):
    fierce_entropy(jnp.ones((4, 3), jnp.int32), c)
  with pytest.raises(TypeError, match="codes"):
    fierce_entropy(f, jnp.ones((5, 3), jnp.int32))


def test_assignments_are_one_hot_and_logits_shape():
  f, c = _ok()
  z = np.asarray(fierce_assignments(f, c, jax.random.PRNGKey(1)))
  assert z.shape == (4, 5)
  np.testing.assert_allclose(z.sum(1), 1.0, atol=1e-6)
  assert set(np.round(z, 5).ravel()) <= {0.0, 1.0}
  np.testing.assert_allclose(np.asarray(fierce_logits(f, c, similarity="dot")),
                             np_logits(f, c, "dot"), rtol=1e-5, atol=1e-6)


# --- found by mutation testing (docs/testing.md, third pass) ------------------------------------
def test_fierce_loss_defaults_to_the_difference_form_with_lambda_one():
  logits = rand(32, (9, 3))
  labels = jnp.arange(9) % 3
  f = rand(33, (9, 5))
  codes = codebook(34, 16, 5)
  got = np.asarray(eager_fierce_loss(logits, labels, f, codes))  # noiseless (key None)
  z = np.asarray(logits, np.float64)
  ce = np.log(np.exp(z).sum(1)) - z[np.arange(9), np.asarray(labels)]
  h = np_plugin_entropy_bits(np_logits(f, codes, "cosine").argmax(1), 16)
  assert h > 0.5  # so that lambda matters
  np.testing.assert_allclose(got, ce - 1.0 * h, rtol=1e-5, atol=1e-6)


def test_convex_max_entropy_must_be_finite_and_non_negative():
  ce, h = jnp.ones(4), jnp.float32(1.0)
  for bad in (-1.0, -0.01, float("inf"), float("nan")):
    with pytest.raises(ValueError, match=r"`max_entropy` \(the entropy's upper bound, log2 K\) "
                                         r"must be a finite number >= 0"):
      fierce_objective(ce, h, lam=1.0, form="convex", max_entropy=bad)
  np.testing.assert_allclose(fierce_objective(ce, h, lam=1.0, form="convex", max_entropy=0.0),
                             np.full(4, 0.5 * 1.0 + 0.5 * (0.0 - 1.0)))


def test_koleo_gradient_finite_at_exact_duplicates():
  """Rows whose normalized dot product is exactly 1 (axis-aligned duplicates: the nearest squared
  distance is exactly 0, which the random duplicates above only approach through rounding): the
  value is the hand number and the gradient is finite. (The sqrt's inner guard's constant,
  ``where(pos, nn2, 1.0)`` -> ``0.0``, is an equivalent mutant: the inner ``where`` already drops
  the unselected branch's cotangent, so this test passes with it too.)"""
  f = jnp.array([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
  # nearest distances: 0, 0 (the duplicates, left at log(0 + eps)), sqrt(2), sqrt(2)
  eps = 1e-8
  want = (2 * math.log(eps) + 2 * math.log(math.sqrt(2) + eps)) / 4
  assert float(koleo_entropy(f)) == pytest.approx(want, rel=1e-6)
  g = jax.jit(jax.grad(koleo_entropy))(f)
  assert np.all(np.isfinite(np.asarray(g)))


# --- found by the clean-clone make mutate pass (docs/testing.md, fifth pass) ---------------------
def test_assignments_default_temperature_one_gradient_matches_numpy():
  """``fierce_assignments`` without ``temperature``: the straight-through gradient of the softmax
  at T = 1, by hand: with s = f C^T (dot similarity) and L = sum_ik w_ik z_ik,
  dL/ds_i = p_i * (w_i - w_i . p_i), p = softmax(s_i), and dL/df = dL/ds C."""
  f, c = _ok()
  w = np.asarray(rand(3, (4, 5)), np.float64)
  got = jax.grad(lambda x: jnp.sum(jnp.asarray(w, jnp.float32)
                                   * fierce_assignments(x, c, similarity="dot")))(f)
  s = np_logits(f, c, "dot")
  p = np.exp(s - s.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  ds = p * (w - np.sum(w * p, 1, keepdims=True))
  np.testing.assert_allclose(np.asarray(got), ds @ np.asarray(c, np.float64), rtol=1e-4, atol=1e-6)


def test_scalar_features_are_refused_with_the_rank_message():
  """A 0-d ``features`` gets the rank error that names it, not an IndexError from the emptiness
  check (``len(shape) >= 1`` guards ``shape[0]``)."""
  c = codebook(0, 5, 3)
  with pytest.raises(ValueError, match=r"`features` must have rank 2 \(\[batch, dim\]\), got shape \(\)"):
    fierce_logits(jnp.float32(1.0), c)
  with pytest.raises(ValueError, match=r"`features` must not be empty"):
    fierce_logits(jnp.zeros((0, 3)), c)
