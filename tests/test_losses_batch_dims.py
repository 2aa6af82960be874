"""Classification losses on ``[..., C]`` logits with ``axis=`` and a broadcasting ``where=`` (as optax)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise import losses

B, T, C = 2, 3, 5
Z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (B, T, C)), np.float32)
Y = np.array([[0, 4, 2], [1, 1, 3]], np.int32)
P = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (B, T, C))), np.float32)
Q = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (B, T, C)), np.float32)
S = np.asarray(losses.ordinal_similarity(C, reduction_factor=0.5), np.float32)

# name -> loss(logits, second argument, **kw) with the second argument for these shapes
LOSSES = {
    "softmax_cross_entropy": (lambda z, a, **kw: losses.softmax_cross_entropy(z, a, **kw), Y, False),
    "softmax_cross_entropy_with_targets": (
        lambda z, a, **kw: losses.softmax_cross_entropy_with_targets(z, a, **kw), P, True),
    "label_smoothing_cross_entropy": (
        lambda z, a, **kw: losses.label_smoothing_cross_entropy(z, a, alpha=0.1, **kw), Y, False),
    "simloss": (lambda z, a, **kw: losses.simloss(z, a, S, **kw), Y, False),
    "simloss_with_targets": (lambda z, a, **kw: losses.simloss_with_targets(z, a, S, **kw), P, True),
    "collision_cross_entropy": (lambda z, a, **kw: losses.collision_cross_entropy(z, a, **kw), P, True),
    "collision_cross_entropy_with_logits": (
        lambda z, a, **kw: losses.collision_cross_entropy_with_logits(z, a, **kw), Q, True),
}


def _logsumexp(x):
  m = x.max(-1, keepdims=True)
  return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


def test_cross_entropy_on_batch_dims_matches_numpy():
  z = Z.astype(np.float64)
  expected = _logsumexp(z) - np.take_along_axis(z, Y[..., None], -1)[..., 0]
  np.testing.assert_allclose(losses.softmax_cross_entropy(Z, Y), expected, rtol=1e-5)
  logp = z - _logsumexp(z)[..., None]
  np.testing.assert_allclose(losses.softmax_cross_entropy_with_targets(Z, P),
                             -(P * logp).sum(-1), rtol=1e-5)
  # collision CE: -log sum_k y_k p_k
  np.testing.assert_allclose(losses.collision_cross_entropy(Z, P),
                             -np.log((P * np.exp(logp)).sum(-1)), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_leading_dims_equal_the_flattened_batch(name):
  fn, a, _ = LOSSES[name]
  out = fn(Z, a)
  assert out.shape == (B, T) and out.dtype == jnp.float32
  flat = fn(Z.reshape(B * T, C), a.reshape((B * T,) + a.shape[2:]))
  np.testing.assert_allclose(out.reshape(-1), flat, rtol=1e-6, atol=1e-6)
  single = fn(Z[1, 2], a[1, 2])  # [C] logits: one example, a scalar loss
  assert single.shape == ()
  np.testing.assert_allclose(single, out[1, 2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_axis_moves_the_class_axis(name):
  fn, a, same_shape = LOSSES[name]
  moved = fn(np.moveaxis(Z, -1, 0), np.moveaxis(a, -1, 0) if same_shape else a, axis=0)
  np.testing.assert_allclose(moved, fn(Z, a), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_where_broadcasts_and_gradients_under_jit(name):
  fn, a, _ = LOSSES[name]
  keep = np.array([[True], [False]])  # [B, 1]: the whole second row masked
  out = jax.jit(lambda z: fn(z, a, where=keep))(Z)
  np.testing.assert_allclose(out, np.where(np.broadcast_to(keep, (B, T)), fn(Z, a), 0.0),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(fn(Z, a, where=True), fn(Z, a), rtol=1e-6)  # a scalar broadcasts
  g = jax.jit(jax.grad(lambda z: fn(z, a, where=keep).sum()))(Z)
  assert np.all(np.asarray(g[1]) == 0) and np.abs(np.asarray(g[0])).sum() > 0
  with pytest.raises(ValueError, match=r"`where` must have shape \[2, 3\], got \(3, 2\)"):
    fn(Z, a, where=np.ones((T, B), bool))
