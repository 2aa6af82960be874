"""Tests of labelwise.losses.simloss against independent NumPy computations and known identities."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec as P
from jax.test_util import check_grads

# The re-exported API (`labelwise.losses.simloss` is the function, which shadows the module).
from labelwise import losses as sl
from labelwise.losses.classification import softmax_cross_entropy_with_targets


# ------------------------------------------------------------------ independent NumPy references


def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_simloss(z, y, s, eps=None):
  p = np_softmax(z)
  q = np.array([np.dot(np.asarray(s, np.float64)[yi], pi) for yi, pi in zip(y, p)])
  return -np.log(q if eps is None else q + eps)


def np_simloss_grad(z, y, s):
  """dL/dz = p - t, t_c = p_c S[y, c] / sum_k S[y, k] p_k (the method sheet's identity)."""
  p = np_softmax(z)
  rows = np.asarray(s, np.float64)[np.asarray(y)]
  t = p * rows / np.sum(p * rows, -1, keepdims=True)
  return p - t


def np_ordinal(c, r):
  return np.array([[1.0 if i == j else r ** abs(i - j) for j in range(c)] for i in range(c)])


def np_superclass(f2c, r):
  c = len(f2c)
  return np.array([[1.0 if i == j else (r if f2c[i] == f2c[j] else 0.0) for j in range(c)]
                   for i in range(c)])


def random_problem(seed, b=6, c=5, scale=3.0):
  rng = np.random.default_rng(seed)
  z = (scale * rng.standard_normal((b, c))).astype(np.float32)
  y = rng.integers(0, c, size=b).astype(np.int32)
  return z, y


F2C = np.array([0, 0, 1, 1, 1])


def _x64():
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # older jax
  return enable_x64()


# ------------------------------------------------------------------ the loss


def test_identity_similarity_equals_optax_cross_entropy():
  z, y = random_problem(0, b=8, c=7)
  got = sl.simloss(z, y, jnp.eye(7))
  want = optax.softmax_cross_entropy_with_integer_labels(z, y)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_hand_numbers():
  # zero logits, C = 3: p = 1/3; row 0 of the r = .5 ordinal matrix is [1, .5, .25].
  s = sl.ordinal_similarity(3, reduction_factor=0.5)
  got = sl.simloss(jnp.zeros((2, 3)), jnp.array([0, 1]), s)
  np.testing.assert_allclose(got, [-np.log(1.75 / 3), -np.log(2.0 / 3)], rtol=1e-6)


@pytest.mark.parametrize("kind", ["ordinal", "superclass", "embedding"])
def test_values_against_numpy(kind):
  z, y = random_problem(1)
  if kind == "ordinal":
    s = sl.ordinal_similarity(5, reduction_factor=0.6)
  elif kind == "superclass":
    s = sl.superclass_similarity(F2C, reduction_factor=0.4)
  else:
    emb = np.random.default_rng(2).standard_normal((5, 4))
    s = sl.embedding_similarity(emb, lower_bound=0.2)
  got = sl.simloss(z, y, s)
  np.testing.assert_allclose(got, np_simloss(z, y, np.asarray(s)), rtol=1e-5, atol=1e-6)


def test_gradient_is_p_minus_t():
  z, y = random_problem(3)
  s = np_superclass(F2C, 0.7).astype(np.float32)
  g = jax.grad(lambda z: jnp.sum(sl.simloss(z, y, s)))(z)
  np.testing.assert_allclose(g, np_simloss_grad(z, y, s), rtol=1e-4, atol=1e-6)


def test_check_grads_logits_and_similarity():
  z, y = random_problem(4, b=3, c=4, scale=1.0)
  s = np_ordinal(4, 0.5)
  with _x64():
    z64, s64 = jnp.asarray(z, jnp.float64), jnp.asarray(s, jnp.float64)
    f = lambda z, s: sl.simloss(z, y, s)
    check_grads(f, (z64, s64), order=1, modes=("rev",))


def test_gradient_wrt_similarity_is_minus_p_over_q_also_where_zero():
  z, y = random_problem(5)
  s = np_superclass(F2C, 0.5).astype(np.float32)          # many exact zeros
  g = jax.grad(lambda s: jnp.sum(sl.simloss(z, y, s)))(jnp.asarray(s))
  p = np_softmax(z)
  want = np.zeros_like(s, dtype=np.float64)
  for yi, pi in zip(y, p):
    want[yi] += -pi / np.dot(s[yi], pi)
  np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)
  assert np.any(s == 0) and np.all(g[s == 0][np.abs(want[s == 0]) > 0] != 0)


def test_epsilon_mode_equals_authors_formula():
  z, y = random_problem(6, scale=8.0)
  s = np_ordinal(5, 0.3).astype(np.float32)
  got = sl.simloss(z, y, s, epsilon=1e-8)
  np.testing.assert_allclose(got, np_simloss(z, y, s, eps=1e-8), rtol=1e-5, atol=1e-6)
  # The eps form caps a badly wrong example near -log(1e-8); the stable default does not.
  bad = jnp.array([[0.0, 200.0]])
  eye = jnp.eye(2)
  capped = sl.simloss(bad, jnp.array([0]), eye, epsilon=1e-8)[0]
  np.testing.assert_allclose(capped, -np.log(1e-8), rtol=1e-4)
  np.testing.assert_allclose(sl.simloss(bad, jnp.array([0]), eye)[0], 200.0, rtol=1e-5)


def test_finite_at_extreme_logits():
  z = jnp.array([[1e4, -1e4, 0.0, 0.0, 5e3], [0.0, 3e4, 0.0, 1.0, -1.0]], jnp.float32)
  y = jnp.array([1, 2])
  s = jnp.asarray(np_superclass(F2C, 0.5), jnp.float32)
  f = lambda z, s: jnp.sum(sl.simloss(z, y, s))
  per_ex = sl.simloss(z, y, s)
  gz, gs = jax.grad(f, argnums=(0, 1))(z, s)
  assert np.all(np.isfinite(per_ex)) and np.all(np.isfinite(gz)) and np.all(np.isfinite(gs))
  # Example 0: p_0 ~ 1 and S[1, 0] = .5, so q = .5 and t = p: zero gradient.
  np.testing.assert_allclose(per_ex[0], -np.log(0.5), rtol=1e-5)
  np.testing.assert_allclose(gz[0], np.zeros(5), atol=1e-6)
  # Example 1: the winner (class 1) is dissimilar to y = 2; q = sum_{c in {2,3,4}} S[2,c] e^z_c / Z.
  mass = 1.0 + 0.5 * np.e + 0.5 / np.e
  np.testing.assert_allclose(per_ex[1], 3e4 - np.log(mass), rtol=1e-6)
  t = np.array([0.0, 0.0, 1.0, 0.5 * np.e, 0.5 / np.e]) / mass
  np.testing.assert_allclose(gz[1], np.array([0.0, 1.0, 0.0, 0.0, 0.0]) - t, atol=1e-6)
  # The eps form would cap example 1 near 18.42; the stable default does not.
  np.testing.assert_allclose(sl.simloss(z, y, s, epsilon=1e-8)[1], -np.log(1e-8), rtol=1e-4)


def test_bfloat16_logits_computed_in_float32():
  z, y = random_problem(7)
  s = np_ordinal(5, 0.5).astype(np.float32)
  zb = jnp.asarray(z, jnp.bfloat16)
  got = sl.simloss(zb, y, s)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_simloss(np.asarray(zb, np.float32), y, s), rtol=1e-5)


def test_where_mask_zeroes_values_and_gradients():
  z, y = random_problem(8)
  s = np_ordinal(5, 0.5).astype(np.float32)
  where = np.array([True, False, True, True, False, True])
  got = sl.simloss(z, y, s, where=where)
  want = np.where(where, np_simloss(z, y, s), 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  g = jax.grad(lambda z: jnp.sum(sl.simloss(z, y, s, where=where)))(z)
  assert np.all(np.asarray(g)[~where] == 0)


def test_jit_and_no_retrace_for_new_reduction_factor():
  traces = []

  @jax.jit
  def f(z, y, s):
    traces.append(1)
    return sl.simloss(z, y, s)

  z, y = random_problem(9)
  for r in (0.0, 0.3, 0.9):
    got = f(z, y, sl.ordinal_similarity(5, reduction_factor=r))
    np.testing.assert_allclose(got, np_simloss(z, y, np_ordinal(5, r)), rtol=1e-5, atol=1e-6)
  for r in (0.2, 0.8):
    f(z, y, sl.superclass_similarity(F2C, reduction_factor=r))
  assert len(traces) == 1


def test_vmap_over_similarity_matrices():
  z, y = random_problem(10)
  rs = np.array([0.0, 0.4, 0.8], np.float32)
  stack = jax.vmap(lambda r: sl.ordinal_similarity(5, r))(jnp.asarray(rs))
  got = jax.vmap(lambda s: sl.simloss(z, y, s))(stack)
  for i, r in enumerate(rs):
    np.testing.assert_allclose(got[i], np_simloss(z, y, np_ordinal(5, float(r))), rtol=1e-5,
                               atol=1e-6)


def test_four_devices_equal_one_device_pmap_and_shard_map():
  assert jax.device_count() >= 4
  z, y = random_problem(11, b=8)
  s = jnp.asarray(np_ordinal(5, 0.5), jnp.float32)
  single = sl.simloss(z, y, s)

  def local_mean(z, y, s):
    return jax.lax.pmean(jnp.mean(sl.simloss(z, y, s)), "data")

  out = jax.pmap(local_mean, axis_name="data", in_axes=(0, 0, None))(
      z.reshape(4, 2, 5), y.reshape(4, 2), s)
  out = jax.block_until_ready(out)
  np.testing.assert_allclose(out, np.full(4, np.mean(single)), rtol=1e-5)

  mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
  per_ex = jax.jit(jax.shard_map(
      lambda z, y, s: sl.simloss(z, y, s), mesh=mesh,
      in_specs=(P("data"), P("data"), P()), out_specs=P("data")))(z, y, s)
  per_ex = jax.block_until_ready(per_ex)
  np.testing.assert_allclose(per_ex, single, rtol=1e-6)


def test_shape_and_dtype_errors():
  z = jnp.zeros((2, 4))
  y = jnp.array([0, 1])
  with pytest.raises(ValueError, match=r"\[4, 4\].*\(2, 4\).*\(3, 3\)"):
    sl.simloss(z, y, jnp.eye(3))
  with pytest.raises(ValueError, match=r"\(4,\)"):
    sl.simloss(z, y, jnp.ones(4))
  with pytest.raises(ValueError, match="labels"):
    sl.simloss(z, jnp.array([0, 1, 2]), jnp.eye(4))
  with pytest.raises(TypeError, match="labels"):
    sl.simloss(z, jnp.array([0.0, 1.0]), jnp.eye(4))
  with pytest.raises(ValueError, match="where"):
    sl.simloss(z, y, jnp.eye(4), where=jnp.ones(3, bool))
  with pytest.raises(ValueError, match="epsilon"):
    sl.simloss(z, y, jnp.eye(4), epsilon=-1.0)
  with pytest.raises(ValueError, match="similarity"):
    sl.simloss_with_targets(z, jnp.ones((2, 4)) / 4, jnp.eye(5))
  with pytest.raises(ValueError, match="targets"):
    sl.simloss_with_targets(z, jnp.ones((2, 3)) / 3, jnp.eye(4))


# ------------------------------------------------------------------ soft-target variant


def test_soft_targets_one_hot_equals_integer_labels():
  z, y = random_problem(12)
  s = np_ordinal(5, 0.7).astype(np.float32)
  t = jax.nn.one_hot(y, 5)
  np.testing.assert_allclose(sl.simloss_with_targets(z, t, s), sl.simloss(z, y, s), rtol=1e-6)


def test_soft_targets_against_numpy_expected_row():
  z, _ = random_problem(13)
  t = np.random.default_rng(14).dirichlet(np.ones(5), size=6).astype(np.float32)
  s = np_superclass(F2C, 0.6).astype(np.float32)
  p = np_softmax(z)
  want = -np.log(np.sum((t.astype(np.float64) @ s) * p, -1))
  got = sl.simloss_with_targets(z, t, s)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(sl.simloss_with_targets(z, t, s, epsilon=1e-8), -np.log(
      np.exp(-want) + 1e-8), rtol=1e-5)
  # S = I: -log sum_c t_c p_c.
  np.testing.assert_allclose(sl.simloss_with_targets(z, t, np.eye(5, dtype=np.float32)),
                             -np.log(np.sum(t * p, -1)), rtol=1e-5)


# ------------------------------------------------------------------ builders


def test_ordinal_similarity_values():
  for r in (0.0, 0.25, 0.9):
    np.testing.assert_allclose(sl.ordinal_similarity(6, reduction_factor=r), np_ordinal(6, r),
                               rtol=1e-6)
  np.testing.assert_array_equal(sl.ordinal_similarity(4, reduction_factor=0.0), np.eye(4))


def test_ordinal_similarity_gradient_in_r_defined_at_zero():
  z, y = random_problem(15, scale=1.0)

  def f(r):
    return jnp.sum(sl.simloss(z, y, sl.ordinal_similarity(5, r)))

  # At r = 0 only the |i - j| = 1 entries have a derivative: dL/dr = -sum_i (p_{y-1} + p_{y+1}) / p_y.
  p = np_softmax(z)
  want0 = -sum(((p[i, yi - 1] if yi > 0 else 0.0) + (p[i, yi + 1] if yi < 4 else 0.0)) / p[i, yi]
               for i, yi in enumerate(y))
  g0 = jax.grad(f)(jnp.float32(0.0))
  assert np.isfinite(g0)
  np.testing.assert_allclose(g0, want0, rtol=1e-4)
  h = 1e-5
  fd = (np.sum(np_simloss(z, y, np_ordinal(5, 0.5 + h))) -
        np.sum(np_simloss(z, y, np_ordinal(5, 0.5 - h)))) / (2 * h)
  np.testing.assert_allclose(jax.grad(f)(jnp.float32(0.5)), fd, rtol=1e-3)


def test_superclass_similarity_values():
  np.testing.assert_allclose(sl.superclass_similarity(F2C, reduction_factor=0.3),
                             np_superclass(F2C, 0.3), rtol=1e-6)


def test_embedding_similarity_values():
  emb = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
  b = 0.5
  got = sl.embedding_similarity(emb, lower_bound=b)
  c = np.sqrt(0.5)  # cos 45 degrees
  want = np.array([
      [1, (c - b) / (1 - b), 0, 0],
      [(c - b) / (1 - b), 1, (c - b) / (1 - b), 0],
      [0, (c - b) / (1 - b), 1, 0],
      [0, 0, 0, 1]])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  # b = 0: plain positive part of the cosine.
  np.testing.assert_allclose(sl.embedding_similarity(emb, lower_bound=0.0)[0, 1], c, rtol=1e-6)
  # Scaling an embedding does not change the cosine.
  np.testing.assert_allclose(sl.embedding_similarity(emb * [[3.0], [0.5], [2.0], [7.0]], 0.5), want,
                             rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("r", [1.0, -0.1, 1.5, float("nan")])
def test_reduction_factor_outside_unit_interval_raises(r):
  with pytest.raises(ValueError, match=r"reduction_factor.*\[0, 1\)"):
    sl.ordinal_similarity(5, reduction_factor=r)
  with pytest.raises(ValueError, match=r"reduction_factor.*\[0, 1\)"):
    sl.superclass_similarity(F2C, reduction_factor=r)


@pytest.mark.parametrize("b", [1.0, -0.2])
def test_lower_bound_outside_unit_interval_raises(b):
  with pytest.raises(ValueError, match=r"lower_bound.*\[0, 1\)"):
    sl.embedding_similarity(np.eye(3), lower_bound=b)


def test_builder_input_errors():
  with pytest.raises(ValueError, match="num_classes"):
    sl.ordinal_similarity(0, reduction_factor=0.5)
  with pytest.raises(ValueError, match="fine_to_coarse.*1-D"):
    sl.superclass_similarity(np.zeros((2, 2), np.int32), reduction_factor=0.5)
  with pytest.raises(ValueError, match="fine_to_coarse.*integer"):
    sl.superclass_similarity(np.array([0.0, 1.0]), reduction_factor=0.5)
  with pytest.raises(ValueError, match="fine_to_coarse.*>= 0"):
    sl.superclass_similarity(np.array([0, -1]), reduction_factor=0.5)
  with pytest.raises(ValueError, match="embeddings.*shape"):
    sl.embedding_similarity(np.ones(3), lower_bound=0.5)
  with pytest.raises(ValueError, match="row 1"):
    sl.embedding_similarity(np.array([[1.0, 0.0], [0.0, 0.0]]), lower_bound=0.5)
  with pytest.raises(ValueError, match="finite"):
    sl.embedding_similarity(np.array([[1.0, np.nan], [0.0, 1.0]]), lower_bound=0.5)


def test_validate_similarity():
  good = np_ordinal(4, 0.5)
  out = sl.validate_similarity(good, num_classes=4)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, good, rtol=1e-7)
  with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
    sl.validate_similarity(np.ones((3, 4)))
  with pytest.raises(ValueError, match=r"\[5, 5\].*\(4, 4\)"):
    sl.validate_similarity(good, num_classes=5)
  bad_diag = good.copy()
  bad_diag[2, 2] = 0.9
  with pytest.raises(ValueError, match=r"diagonal.*similarity\[2, 2\] = 0.9"):
    sl.validate_similarity(bad_diag)
  too_big = good.copy()
  too_big[0, 3] = 1.2
  with pytest.raises(ValueError, match=r"\[0, 1\].*similarity\[0, 3\] = 1.2"):
    sl.validate_similarity(too_big)
  negative = good.copy()
  negative[1, 0] = -0.1
  with pytest.raises(ValueError, match=r"\[0, 1\].*similarity\[1, 0\] = -0.1"):
    sl.validate_similarity(negative)
  nan = good.copy()
  nan[0, 1] = np.nan
  with pytest.raises(ValueError, match="finite"):
    sl.validate_similarity(nan)


def test_builders_pass_validation():
  for s in (sl.ordinal_similarity(7, 0.8), sl.superclass_similarity(F2C, 0.9),
            sl.embedding_similarity(np.random.default_rng(0).standard_normal((6, 3)), 0.0)):
    sl.validate_similarity(s)


# ------------------------------------------------------------------ baselines


def test_smoothed_targets_and_label_smoothing_equal_optax():
  z, y = random_problem(16)
  want_t = optax.smooth_labels(jax.nn.one_hot(y, 5), 0.2)
  np.testing.assert_allclose(sl.smoothed_targets(y, 5, alpha=0.2), want_t, rtol=1e-6)
  np.testing.assert_allclose(sl.label_smoothing_cross_entropy(z, y, alpha=0.2),
                             optax.softmax_cross_entropy(z, want_t), rtol=1e-5)
  np.testing.assert_allclose(sl.label_smoothing_cross_entropy(z, y, alpha=0.0),
                             optax.softmax_cross_entropy_with_integer_labels(z, y), rtol=1e-5)
  with pytest.raises(ValueError, match="alpha"):
    sl.smoothed_targets(y, 5, alpha=1.5)
  # Both ends of [0, 1]: a negative smoothing (targets off the simplex) is refused too, and the
  # ends themselves are accepted (1: the uniform row).
  with pytest.raises(ValueError, match=r"`alpha` must be a scalar in \[0, 1\], got -0.5"):
    sl.smoothed_targets(y, 5, alpha=-0.5)
  np.testing.assert_allclose(sl.smoothed_targets(y, 5, alpha=1.0), np.full((len(y), 5), 0.2),
                             rtol=1e-6)


def test_sord_targets_against_numpy():
  y = np.array([0, 2, 4], np.int32)
  scale = 0.7
  got = sl.sord_targets(y, 5, scale=scale)
  want = np.array([[np.exp(-scale * (c - yi) ** 2) for c in range(5)] for yi in y])
  want /= want.sum(1, keepdims=True)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Large scale gives one-hot: cross-entropy against it equals plain cross-entropy.
  z, yy = random_problem(17)
  np.testing.assert_allclose(
      softmax_cross_entropy_with_targets(z, sl.sord_targets(yy, 5, scale=1e4)),
      optax.softmax_cross_entropy_with_integer_labels(z, yy), rtol=1e-5)
  with pytest.raises(ValueError, match="scale"):
    sl.sord_targets(y, 5, scale=0.0)


def test_hierarchical_targets_against_numpy():
  y = np.array([0, 3], np.int32)
  beta = 1.3
  got = sl.hierarchical_targets(y, F2C, beta=beta)
  want = []
  for yi in y:
    d = np.array([0 if c == yi else (1 if F2C[c] == F2C[yi] else 2) for c in range(5)])
    w = np.exp(-beta * d)
    want.append(w / w.sum())
  np.testing.assert_allclose(got, np.array(want), rtol=1e-5)
  np.testing.assert_allclose(sl.hierarchical_targets(y, F2C, beta=0.0), np.full((2, 5), 0.2),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="beta"):
    sl.hierarchical_targets(y, F2C, beta=-1.0)


def test_baselines_under_jit_with_traced_hyperparameters():
  y = jnp.array([1, 3])
  f = jax.jit(lambda a, s, b: (sl.smoothed_targets(y, 5, alpha=a), sl.sord_targets(y, 5, scale=s),
                              sl.hierarchical_targets(y, F2C, beta=b)))
  a, s, h = f(0.1, 2.0, 1.0)
  np.testing.assert_allclose(a, sl.smoothed_targets(y, 5, alpha=0.1), rtol=1e-6)
  np.testing.assert_allclose(s, sl.sord_targets(y, 5, scale=2.0), rtol=1e-6)
  np.testing.assert_allclose(h, sl.hierarchical_targets(y, F2C, beta=1.0), rtol=1e-6)


def test_validate_similarity_names_the_first_non_finite_entry():
  """The message names the first NaN/inf entry (row-major) and its value, not the first finite
  one. (Killed mutant: ``argwhere(~isfinite(s))`` -> ``argwhere(isfinite(s))``.)"""
  s = np.eye(3)
  s[1, 2], s[2, 0] = np.nan, np.inf
  with pytest.raises(ValueError, match=r"must be finite, got similarity\[1, 2\] = nan"):
    sl.validate_similarity(s)


def test_embedding_similarity_of_one_class_and_of_one_dimension():
  """One class gives [[1]]; 1-d embeddings are valid: cos is the sign product, so with
  lower_bound 0 the classes on one side of 0 are similar (1) and the others 0 (hand numbers).
  (Killed mutants: the shape check's ``< 1`` -> ``< 2`` on either axis.)"""
  np.testing.assert_array_equal(sl.embedding_similarity(np.ones((1, 3)), lower_bound=0.5),
                                [[1.0]])
  s = sl.embedding_similarity(np.array([[1.0], [2.0], [-1.0]]), lower_bound=0.0)
  np.testing.assert_allclose(s, [[1, 1, 0], [1, 1, 0], [0, 0, 1]], atol=1e-7)


def test_embedding_similarity_never_exceeds_one():
  """Parallel embeddings whose float64 cosine rounds to 1 + 2.2e-16, with a lower bound close to
  1 that magnifies it to ~1 + 2e-7, still give exactly 1: the similarity is clipped to [0, 1].
  (Killed mutant: ``clip(..., 0.0, 1.0)`` -> ``clip(..., 0.0, 2.0)``.)"""
  v = np.array([0.9034701816518086, 0.09401229776087457, -0.7434992493538084])
  u = v / np.linalg.norm(v)
  w = 3 * v / np.linalg.norm(3 * v)
  assert u @ w > 1.0          # the rounding this test is about (numpy float64)
  s = sl.embedding_similarity(np.stack([v, 3 * v, -v]), lower_bound=1.0 - 1e-9)
  assert s.max() == 1.0 and s[0, 1] == 1.0 and s[0, 2] == 0.0
