"""Models (outputs, heads, BatchNorm state) and optimizers (schedules, weight-decay mask)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from labelwise.configs import common
from labelwise.models import get_model
from labelwise.train import optim


@pytest.mark.parametrize("name,x_shape,kwargs", [
    ("mlp", (3, 8, 8, 1), {"hidden": (16,)}),
    ("small_cnn", (3, 8, 8, 1), {"channels": (4, 8), "dense": 16}),
    ("small_cnn", (3, 40), {"channels": (4,), "dense": 16}),      # 1-D signal
    ("resnet18", (3, 8, 8, 3), {"width": 4, "stage_sizes": (1, 1, 1, 1)}),
    ("resnet18", (3, 8, 8, 3), {"width": 4, "stage_sizes": (1, 1, 1, 1), "norm": "group"}),
])
def test_models_return_logits_features_and_extra_heads(name, x_shape, kwargs):
  model = get_model(name, num_classes=5, extra_heads={"multilabel": 5, "aux": 2}, **kwargs)
  x = jnp.ones(x_shape)
  variables = model.init(jax.random.PRNGKey(0), x)
  out = model.apply(variables, x)
  assert out["logits"].shape == (3, 5) and out["logits"].dtype == jnp.float32
  assert out["multilabel"].shape == (3, 5) and out["aux"].shape == (3, 2)
  assert out["features"].ndim == 2 and out["features"].shape[0] == 3
  # The classifier is linear in the features: logits = features @ W + b.
  head = variables["params"]["Heads_0"]["head"]
  np.testing.assert_allclose(out["logits"], out["features"] @ head["kernel"] + head["bias"],
                             rtol=1e-5, atol=1e-5)
  has_bn = name == "resnet18" and kwargs.get("norm", "batch") == "batch"
  assert ("batch_stats" in variables) == has_bn


def test_mlp_linear_features_is_the_last_layer_without_relu():
  x = jax.random.normal(jax.random.PRNGKey(2), (6, 5))
  kw = dict(num_classes=2, hidden=(8, 1))
  relu, linear = get_model("mlp", **kw), get_model("mlp", linear_features=True, **kw)
  variables = relu.init(jax.random.PRNGKey(0), x)   # same parameters for both
  p = variables["params"]
  h = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  pre = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
  assert (pre < 0).any() and (pre > 0).any()   # the ReLU matters on this input
  np.testing.assert_allclose(linear.apply(variables, x)["features"], pre, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(relu.apply(variables, x)["features"], jax.nn.relu(pre), rtol=1e-5,
                             atol=1e-6)


def test_resnet_batchnorm_updates_running_stats_in_train_mode_only():
  model = get_model("resnet18", num_classes=3, width=4, stage_sizes=(1, 1, 1, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3)) + 2.0
  v = model.init(jax.random.PRNGKey(0), x)
  _, new = model.apply(v, x, train=True, mutable=["batch_stats"])
  before = jax.tree_util.tree_leaves(v["batch_stats"])
  after = jax.tree_util.tree_leaves(new["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  with pytest.raises(ValueError, match="`norm` must be 'batch' or 'group'"):
    get_model("resnet18", num_classes=3, norm="layer").init(jax.random.PRNGKey(0), x)


def _opt(**kw):
  return ml_collections.ConfigDict(common.optimizer(**kw))


def test_schedules():
  s = optim.make_schedule(_opt(learning_rate=1.0, schedule="cosine", warmup_steps=10), 110)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0)
  assert float(s(60)) == pytest.approx(0.5, abs=1e-6)   # half-way through the cosine
  assert float(s(110)) == pytest.approx(0.0, abs=1e-6)
  st = optim.make_schedule(_opt(learning_rate=1.0, schedule="step", boundaries=(0.5, 0.75),
                                decay_factor=0.1), 100)
  assert [float(st(i)) for i in (49, 51, 76)] == pytest.approx([1.0, 0.1, 0.01])
  with pytest.raises(ValueError, match="optimizer.schedule"):
    optim.make_schedule(_opt(schedule="linear"), 10)


def test_weight_decay_skips_biases_and_norm_scales():
  params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))},
            "norm": {"scale": jnp.ones((2,))}}
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  for name in ("sgd", "adamw"):
    tx = optim.make_optimizer(_opt(name=name, learning_rate=0.1, weight_decay=0.5, momentum=0.0),
                              10)
    updates, _ = tx.update(zero, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert float(new["dense"]["kernel"][0, 0]) < 1.0          # decayed
    assert float(new["dense"]["bias"][0]) == 1.0              # not decayed
    assert float(new["norm"]["scale"][0]) == 1.0
  tx = optim.make_optimizer(_opt(name="sgd", learning_rate=0.1, weight_decay=0.5, momentum=0.0,
                                 exclude_from_weight_decay="none"), 10)
  updates, _ = tx.update(zero, tx.init(params), params)
  assert float(optax.apply_updates(params, updates)["dense"]["bias"][0]) == pytest.approx(0.95)


def test_sgd_nesterov_matches_hand_computation():
  p = {"w": jnp.array([1.0])}
  g = {"w": jnp.array([2.0])}
  tx = optim.make_optimizer(_opt(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True), 10)
  u, _ = tx.update(g, tx.init(p), p)
  # nesterov: v = g; update = -lr * (g + m * v) = -0.1 * (2 + 1.8)
  assert float(u["w"][0]) == pytest.approx(-0.38)
