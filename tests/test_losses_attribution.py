"""Tests for labelwise.losses.attribution (ActDiff, GradMask, RRR pieces).

Every value is checked against an independent computation: hand numbers, numpy re-implementations
written here, or closed-form input gradients of a linear model.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from labelwise.losses import attribution as A
from labelwise import losses as L


def _rng(seed=0):
  return np.random.default_rng(seed)


_jit_shuffle = jax.jit(A.shuffle_outside_mask)


def _random_masks(rng, b, h, w, p_inside=0.4):
  m = (rng.random((b, h, w)) < p_inside).astype(np.float32)
  m[:, 0, 0] = 1.0  # at least one inside pixel
  m[:, -1, -1] = 0.0  # and at least one outside pixel
  return m


# ----------------------------------------------------------------------------------------------
# shuffle_outside_mask
# ----------------------------------------------------------------------------------------------


def _check_shuffle(x, y, m):
  """Inside pixels unchanged; outside pixels a permutation (whole pixels) of the outside pixels."""
  x, y, m = np.asarray(x), np.asarray(y), np.asarray(m).reshape(x.shape[:3])
  for i in range(x.shape[0]):
    inside = m[i] == 1
    np.testing.assert_array_equal(y[i][inside], x[i][inside])
    xo = x[i][~inside].reshape(int((~inside).sum()), -1)
    yo = y[i][~inside].reshape(int((~inside).sum()), -1)
    # rows (pixels with all channels) are a permutation of each other
    xs = xo[np.lexsort(xo.T[::-1])]
    ys = yo[np.lexsort(yo.T[::-1])]
    np.testing.assert_array_equal(xs, ys)


def test_shuffle_inside_unchanged_outside_permuted():
  rng = _rng(1)
  x = rng.permutation(3 * 6 * 5 * 2).reshape(3, 6, 5, 2).astype(np.float32)  # distinct values
  m = _random_masks(rng, 3, 6, 5)
  y = A.shuffle_outside_mask(jax.random.PRNGKey(0), x, m)
  assert y.shape == x.shape and y.dtype == x.dtype
  _check_shuffle(x, y, m)
  # with distinct values and ~18 outside pixels, an identity permutation on every image is
  # essentially impossible: the outside really moves
  assert not np.array_equal(np.asarray(y), x)
  # channels of a pixel move together: channel 1 = channel 0 + 1 stays true
  x2 = np.stack([x[..., 0], x[..., 0] + 1000.0], -1)
  y2 = np.asarray(_jit_shuffle(jax.random.PRNGKey(3), x2, m))
  np.testing.assert_array_equal(y2[..., 1], y2[..., 0] + 1000.0)


def test_shuffle_keys_images_and_jit():
  rng = _rng(2)
  x = rng.permutation(2 * 7 * 7).reshape(2, 7, 7, 1).astype(np.float32)
  m = _random_masks(rng, 2, 7, 7, p_inside=0.2)
  f = _jit_shuffle
  y0 = np.asarray(f(jax.random.PRNGKey(0), x, m))
  y0_again = np.asarray(f(jax.random.PRNGKey(0), x, m))
  y1 = np.asarray(f(jax.random.PRNGKey(1), x, m))
  np.testing.assert_array_equal(y0, y0_again)  # deterministic given the key
  assert not np.array_equal(y0, y1)  # new key, new permutation
  np.testing.assert_array_equal(y0, np.asarray(A.shuffle_outside_mask(jax.random.PRNGKey(0), x, m)))
  _check_shuffle(x, y0, m)
  _check_shuffle(x, y1, m)
  # two identical images in one batch get different permutations (one key per image)
  xx = np.stack([x[0], x[0]])
  mm = np.stack([m[0], m[0]])
  yy = np.asarray(f(jax.random.PRNGKey(5), xx, mm))
  assert not np.array_equal(yy[0], yy[1])
  # [B, H, W, 1] masks are the same as [B, H, W]
  np.testing.assert_array_equal(y0, np.asarray(f(jax.random.PRNGKey(0), x, m[..., None])))
  # rank-3 (grayscale) images
  y3 = np.asarray(f(jax.random.PRNGKey(0), x[..., 0], m))
  _check_shuffle(x[..., 0], y3, m)


def test_shuffle_all_ones_mask_is_identity_and_no_gradient():
  rng = _rng(3)
  x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  y = _jit_shuffle(jax.random.PRNGKey(0), x, np.ones((2, 4, 4)))
  np.testing.assert_array_equal(np.asarray(y), x)
  m = _random_masks(rng, 2, 4, 4)
  g = jax.jit(jax.grad(lambda v: jnp.sum(A.shuffle_outside_mask(jax.random.PRNGKey(0), v, m))))
  np.testing.assert_array_equal(np.asarray(g(x)), 0.0)  # x~ is a constant for the loss


# ----------------------------------------------------------------------------------------------
# actdiff_penalty
# ----------------------------------------------------------------------------------------------


def test_actdiff_penalty_against_numpy_and_hand():
  np.testing.assert_allclose(A.actdiff_penalty(jnp.array([[3.0, 0.0]]), jnp.array([[0.0, 4.0]])),
                             [5.0])
  rng = _rng(4)
  f = rng.normal(size=(5, 7)).astype(np.float32)
  g = rng.normal(size=(5, 7)).astype(np.float32)
  expect = np.sqrt(((f.astype(np.float64) - g) ** 2).sum(-1))
  np.testing.assert_allclose(A.actdiff_penalty(f, g), expect, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(A.actdiff_penalty)(f, g), expect, rtol=1e-5)
  # features with extra dims are flattened per example
  np.testing.assert_allclose(A.actdiff_penalty(f.reshape(5, 7, 1), g.reshape(5, 7, 1)), expect,
                             rtol=1e-5)
  where = np.array([True, False, True, True, False])
  np.testing.assert_allclose(A.actdiff_penalty(f, g, where=where), expect * where, rtol=1e-5)
  # vmap over an extra leading axis equals the loop
  ff, gg = np.stack([f, g]), np.stack([g, f * 2])
  vm = jax.vmap(A.actdiff_penalty)(ff, gg)
  np.testing.assert_allclose(vm[1], np.sqrt(((g - 2 * f) ** 2).sum(-1)), rtol=1e-5)
  # bfloat16 in, float32 out
  assert A.actdiff_penalty(f.astype(jnp.bfloat16), g.astype(jnp.bfloat16)).dtype == jnp.float32


def test_actdiff_penalty_gradients():
  rng = _rng(5)
  f = rng.normal(size=(3, 4)).astype(np.float32)
  g = rng.normal(size=(3, 4)).astype(np.float32)
  check_grads(lambda a, b: A.actdiff_penalty(a, b), (f, g), order=2, modes=["rev"], eps=1e-2,
              atol=2e-2, rtol=2e-2)
  # d||a - b|| / da = (a - b) / ||a - b||
  ga = jax.grad(lambda a: jnp.sum(A.actdiff_penalty(a, g)))(f)
  d = f - g
  np.testing.assert_allclose(ga, d / np.linalg.norm(d, axis=-1, keepdims=True), rtol=1e-5)
  # identical features (all-ones mask): value 0 and a finite zero gradient, not NaN
  g0 = jax.grad(lambda a: jnp.sum(A.actdiff_penalty(a, f)))(f)
  assert np.all(np.isfinite(g0)) and np.all(np.asarray(g0) == 0)


# ----------------------------------------------------------------------------------------------
# gradient penalties
# ----------------------------------------------------------------------------------------------


def test_gradient_penalties_hand_numbers():
  g = jnp.array([[[1.0, -2.0]]])
  m = jnp.array([[[1, 0]]])
  np.testing.assert_allclose(A.gradmask_penalty(g, m), [2.0])
  np.testing.assert_allclose(A.rrr_penalty(g, m), [4.0])


@pytest.mark.parametrize("channels", [1, 3])
def test_gradient_penalties_against_numpy(channels):
  rng = _rng(6)
  g = rng.normal(size=(4, 5, 6, channels)).astype(np.float32)
  m = _random_masks(rng, 4, 5, 6)
  mbar = (1.0 - m)[..., None].astype(np.float64)
  l1 = np.abs(g * mbar).reshape(4, -1).sum(-1)
  l2 = ((g * mbar) ** 2).reshape(4, -1).sum(-1)
  for mm in (m, m[..., None], m.astype(bool), m.astype(np.int32)):
    np.testing.assert_allclose(A.gradmask_penalty(g, mm), l1, rtol=1e-5)
    np.testing.assert_allclose(A.rrr_penalty(g, mm), l2, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(A.gradmask_penalty)(g, m), l1, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(A.rrr_penalty)(g, m), l2, rtol=1e-5)
  where = np.array([1, 0, 1, 0], bool)
  np.testing.assert_allclose(A.rrr_penalty(g, m, where=where), l2 * where, rtol=1e-5)
  # the mask covers the image: no penalty
  ones = np.ones((4, 5, 6))
  np.testing.assert_array_equal(A.gradmask_penalty(g, ones), 0.0)
  np.testing.assert_array_equal(A.rrr_penalty(g, ones), 0.0)
  # vmap over a leading axis
  vm = jax.vmap(A.rrr_penalty)(np.stack([g, 2 * g]), np.stack([m, m]))
  np.testing.assert_allclose(vm[1], 4 * l2, rtol=1e-5)


def test_gradient_penalties_gradients():
  rng = _rng(7)
  g = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
  m = _random_masks(rng, 2, 3, 3)
  check_grads(lambda v: A.rrr_penalty(v, m), (g,), order=2, modes=["rev"], eps=1e-2, atol=2e-2,
              rtol=2e-2)
  check_grads(lambda v: A.gradmask_penalty(v, m), (g,), order=1, modes=["rev"], eps=1e-3,
              atol=2e-2, rtol=2e-2)
  mbar = (1.0 - m)[..., None]
  np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(A.rrr_penalty(v, m)))(g), 2 * g * mbar,
                             rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(A.gradmask_penalty(v, m)))(g),
                             np.sign(g) * mbar, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# scores and input gradients
# ----------------------------------------------------------------------------------------------


def _np_logsumexp(a, axis=-1):
  a = np.asarray(a, np.float64)
  mx = a.max(axis=axis, keepdims=True)
  return (mx + np.log(np.exp(a - mx).sum(axis=axis, keepdims=True))).squeeze(axis)


def test_scores_against_numpy():
  np.testing.assert_allclose(A.gradmask_score(jnp.array([[1.0, 3.0]])), [2.0])
  np.testing.assert_allclose(A.rrr_score(jnp.zeros((1, 2))), [2 * np.log(0.5)], rtol=1e-6)
  rng = _rng(8)
  z2 = rng.normal(size=(6, 2)).astype(np.float32)
  np.testing.assert_allclose(A.gradmask_score(z2), np.abs(z2[:, 0] - z2[:, 1]), rtol=1e-6)
  # with C = 2 the generalized formula reduces to the authors' score for any label
  np.testing.assert_allclose(A.gradmask_score(z2, np.array([0, 1, 1, 0, 1, 0])),
                             np.abs(z2[:, 0] - z2[:, 1]), rtol=1e-6)
  z = rng.normal(size=(6, 4)).astype(np.float32)
  y = np.array([0, 1, 2, 3, 2, 1])
  expect = []
  for i in range(6):
    others = np.delete(z[i].astype(np.float64), y[i])
    expect.append(abs(z[i, y[i]] - _np_logsumexp(others)))
  np.testing.assert_allclose(A.gradmask_score(z, y), expect, rtol=1e-5)
  logp = z - _np_logsumexp(z)[:, None]
  np.testing.assert_allclose(A.rrr_score(z), logp.sum(-1), rtol=1e-5)
  np.testing.assert_allclose(jax.jit(A.rrr_score)(z), logp.sum(-1), rtol=1e-5)


def _softmax(a):
  e = np.exp(a - a.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_input_gradients_closed_form_linear_model():
  """For z = flat(x) @ W: d/dx sum_k log p_k = W (1 - C p);  d/dx |z0 - z1| = sign * (W0 - W1)."""
  rng = _rng(9)
  b, h, w, c, k = 3, 4, 4, 1, 3
  x = rng.normal(size=(b, h, w, c)).astype(np.float32)
  W = rng.normal(size=(h * w * c, k)).astype(np.float32)
  model = lambda v, W: v.reshape(v.shape[0], -1) @ W
  g = A.input_gradients(lambda v: A.rrr_score(model(v, W)), x)
  p = _softmax(x.reshape(b, -1).astype(np.float64) @ W)
  expect = ((1.0 - k * p) @ W.T).reshape(x.shape)
  np.testing.assert_allclose(g, expect, rtol=1e-4, atol=1e-5)
  W2 = W[:, :2]
  g2, z2 = A.input_gradients(lambda v: (lambda z: (A.gradmask_score(z), z))(model(v, W2)), x,
                             has_aux=True)
  z2_np = x.reshape(b, -1) @ W2
  np.testing.assert_allclose(z2, z2_np, rtol=1e-5)
  s = np.sign(z2_np[:, 0] - z2_np[:, 1])
  expect2 = (s[:, None] * (W2[:, 0] - W2[:, 1])[None, :]).reshape(x.shape)
  np.testing.assert_allclose(g2, expect2, rtol=1e-5, atol=1e-6)


def _tiny_mlp(params, x):
  hdn = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
  return hdn @ params["w2"]


def _double_backprop_loss(params, x, y, m, *, kind, lam=1.0, axis_name=None):
  def score(v):
    z = _tiny_mlp(params, v)
    s = A.rrr_score(z) if kind == "rrr" else A.gradmask_score(z, y)
    return s, z

  g, z = A.input_gradients(score, x, has_aux=True)
  pen = A.rrr_penalty(g, m) if kind == "rrr" else A.gradmask_penalty(g, m)
  red = A.reduce_masked_penalty(pen, A.mask_weights(m), axis_name=axis_name)
  ce = jnp.mean(L.softmax_cross_entropy(z, y))
  return ce + lam * red


def _tiny_problem(seed=10, b=8, k=3):
  rng = _rng(seed)
  x = rng.normal(size=(b, 4, 4, 1)).astype(np.float32)
  y = rng.integers(0, k, size=(b,)).astype(np.int32)
  m = _random_masks(rng, b, 4, 4)
  m[1] = 1.0  # one example without a mask
  params = {"w1": rng.normal(size=(16, 5)).astype(np.float32) * 0.5,
            "b1": rng.normal(size=(5,)).astype(np.float32) * 0.1,
            "w2": rng.normal(size=(5, k)).astype(np.float32)}
  return params, x, y, m


@pytest.mark.parametrize("kind", ["rrr", "gradmask"])
def test_double_backprop_parameter_gradients(kind):
  params, x, y, m = _tiny_problem()
  loss = functools.partial(_double_backprop_loss, kind=kind)
  grads = jax.jit(jax.grad(loss))(params, x, y, m)
  # the penalty itself has non-zero parameter gradients (double backprop actually happens)
  pen_only = lambda p: loss(p, x, y, m) - jnp.mean(L.softmax_cross_entropy(_tiny_mlp(p, x), y))
  gp = jax.jit(jax.grad(pen_only))(params)
  for tree in (grads, gp):
    for leaf in jax.tree_util.tree_leaves(tree):
      assert np.all(np.isfinite(leaf))
    assert max(float(np.abs(l).max()) for l in jax.tree_util.tree_leaves(tree)) > 1e-4
  # against finite differences
  check_grads(jax.jit(lambda p: loss(p, x, y, m)), (params,), order=1, modes=["rev"], eps=1e-2,
              atol=5e-2, rtol=5e-2)
  # all-ones masks: the loss is plain cross-entropy
  ones = np.ones_like(m)
  np.testing.assert_allclose(
      jax.jit(loss)(params, x, y, ones), jnp.mean(L.softmax_cross_entropy(_tiny_mlp(params, x), y)),
      rtol=1e-6)


def test_double_backprop_under_pmap_equals_single_device():
  n = jax.device_count()
  assert n == 4
  params, x, y, m = _tiny_problem(b=8)
  m[4:] = 1.0  # devices 2 and 3 see no masks at all: the global count must be used
  loss = functools.partial(_double_backprop_loss, kind="rrr")
  ref_val, ref_grad = jax.value_and_grad(loss)(params, x, y, m)

  def per_device(p, xx, yy, mm):
    val, grad = jax.value_and_grad(
        lambda q: loss(q, xx, yy, mm, axis_name="data"))(p)
    return jax.lax.pmean(val, "data"), jax.lax.pmean(grad, "data")

  rep = jax.tree_util.tree_map(lambda a: np.stack([a] * n), params)
  sh = lambda a: a.reshape((n, -1) + a.shape[1:])
  val, grad = jax.pmap(per_device, axis_name="data")(rep, sh(x), sh(y), sh(m))
  val, grad = jax.block_until_ready((val, grad))
  np.testing.assert_allclose(val, np.full(n, ref_val), rtol=1e-5)
  for a, r in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(ref_grad)):
    np.testing.assert_allclose(a, np.stack([r] * n), rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(a))


# ----------------------------------------------------------------------------------------------
# batch reduction
# ----------------------------------------------------------------------------------------------


def test_mask_weights_and_reduction_hand_numbers():
  m = np.ones((3, 2, 2))
  m[0, 0, 0] = 0
  m[2, 1, 1] = 0
  np.testing.assert_array_equal(A.mask_weights(m), [1, 0, 1])
  np.testing.assert_array_equal(A.mask_weights(m[..., None], where=np.array([1, 1, 0])), [1, 0, 0])
  p = jnp.array([2.0, 4.0, 9.0])
  w = jnp.array([1.0, 1.0, 0.0])
  np.testing.assert_allclose(A.reduce_masked_penalty(p, w), 3.0)
  np.testing.assert_allclose(A.reduce_masked_penalty(p, w, normalization="per_example"), 2.0)
  np.testing.assert_allclose(A.reduce_masked_penalty(p, w, normalization="sum"), 6.0)
  # no example has a mask: 0, not NaN
  np.testing.assert_allclose(A.reduce_masked_penalty(p, jnp.zeros(3)), 0.0)
  # fractional weights: weighted mean
  np.testing.assert_allclose(A.reduce_masked_penalty(p, jnp.array([0.5, 0.0, 0.0])), 2.0)


@pytest.mark.parametrize("normalization", ["per_masked_example", "per_example", "sum"])
def test_reduction_on_four_devices_equals_concatenated_batch(normalization):
  n = jax.device_count()
  rng = _rng(11)
  p = rng.random(12).astype(np.float32)
  w = np.array([1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1], np.float32)
  ref = A.reduce_masked_penalty(p, w, normalization=normalization)
  f = lambda pp, ww: jax.lax.pmean(
      A.reduce_masked_penalty(pp, ww, normalization=normalization, axis_name="data"), "data")
  out = jax.block_until_ready(jax.pmap(f, axis_name="data")(p.reshape(n, -1), w.reshape(n, -1)))
  np.testing.assert_allclose(out, np.full(n, ref), rtol=1e-6)
  # same with shard_map over a 1-d mesh
  from jax.sharding import Mesh, PartitionSpec as P
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sm = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P()))
  np.testing.assert_allclose(jax.block_until_ready(sm(p, w)), ref, rtol=1e-6)
  # numpy reference of the three normalizations
  expect = {"per_masked_example": (w * p).sum() / w.sum(), "per_example": (w * p).sum() / 12,
            "sum": (w * p).sum()}[normalization]
  np.testing.assert_allclose(ref, expect, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


def test_errors_name_the_argument():
  x = np.zeros((2, 4, 4, 3), np.float32)
  good = np.ones((2, 4, 4))
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="masks.*shape"):
    A.shuffle_outside_mask(key, x, np.ones((2, 4, 4, 3)))  # per-channel mask
  with pytest.raises(ValueError, match="masks.*shape"):
    A.shuffle_outside_mask(key, x, np.ones((2, 4, 5)))
  with pytest.raises(ValueError, match="masks.*shape"):
    A.gradmask_penalty(x, np.ones((3, 4, 4)))
  with pytest.raises(ValueError, match="masks.*shape"):
    A.rrr_penalty(x[..., 0], np.ones((2, 4, 4, 1)))  # rank-3 grads need [B, H, W] masks
  with pytest.raises(ValueError, match="images"):
    A.shuffle_outside_mask(key, np.zeros((2, 4)), good)
  half = good.copy()
  half[0, 0, 0] = 0.5
  with pytest.raises(ValueError, match="masks.*binary"):
    A.shuffle_outside_mask(key, x, half)
  with pytest.raises(ValueError, match="masks.*binary"):
    A.gradmask_penalty(x, half)
  with pytest.raises(ValueError, match="masks.*binary"):
    A.rrr_penalty(x, 2 * good)
  with pytest.raises(ValueError, match="masks.*binary"):
    A.validate_masks(half)
  with pytest.raises(ValueError, match="masks"):
    A.mask_weights(np.ones((2, 4, 4, 3)))
  with pytest.raises(ValueError, match="where"):
    A.rrr_penalty(x, good, where=np.ones(3))
  with pytest.raises(ValueError, match="shuffled_features"):
    A.actdiff_penalty(np.zeros((2, 3)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="features"):
    A.actdiff_penalty(np.zeros((2,)), np.zeros((2,)))
  with pytest.raises(TypeError, match="input_grads"):
    A.rrr_penalty(np.zeros((2, 4, 4, 3), np.int32), good)
  with pytest.raises(ValueError, match="labels"):
    A.gradmask_score(np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match="logits"):
    A.gradmask_score(np.zeros((2, 1), np.float32))
  with pytest.raises(ValueError, match="labels"):
    A.gradmask_score(np.zeros((2, 2), np.float32), np.zeros(3, np.int32))
  with pytest.raises(ValueError, match="normalization"):
    A.reduce_masked_penalty(jnp.ones(2), jnp.ones(2), normalization="mean")
  with pytest.raises(ValueError, match="weights"):
    A.reduce_masked_penalty(jnp.ones(2), jnp.ones(3))
  with pytest.raises(ValueError, match="score_fn"):
    A.input_gradients(lambda v: v, jnp.ones((2, 3)))  # scores must be [batch]


def test_reexported_from_losses_package():
  for name in ("shuffle_outside_mask", "actdiff_penalty", "gradmask_penalty", "rrr_penalty",
               "gradmask_score", "rrr_score", "input_gradients", "mask_weights",
               "reduce_masked_penalty"):
    assert getattr(L, name) is getattr(A, name)


def test_input_gradients_with_aux_needs_a_pair():
  """has_aux=True wants (scores, aux): a tuple of another length (or a bare array) is a TypeError
  that says what came back; found by mutation testing (docs/testing.md, third pass)."""
  x = jnp.ones((2, 3))
  three = lambda v: (jnp.sum(v, -1), v, v)
  with pytest.raises(TypeError, match=r"`score_fn` must return a pair \(\[batch\] scores, aux\) "
                                      r"with has_aux=True, got a tuple of length 3"):
    A.input_gradients(three, x, has_aux=True)
  with pytest.raises(TypeError, match=r"got a list of length 1"):
    A.input_gradients(lambda v: [jnp.sum(v, -1)], x, has_aux=True)
  g, aux = A.input_gradients(lambda v: (jnp.sum(2.0 * v, -1), v), x, has_aux=True)
  np.testing.assert_allclose(g, np.full((2, 3), 2.0))
  np.testing.assert_array_equal(aux, x)
