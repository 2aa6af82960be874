"""End-to-end runs of the attribution methods on the crosses dataset (tiny runlocal configs)."""

import os

import jax
import numpy as np
import pytest

from labelwise.train import trainer
from labelwise.train.methods import attribution as methods_attr
from tests.helpers import load_config, max_abs_diff

assert jax.device_count() == 4, "tests/conftest.py must set 4 fake CPU devices"


def _config(method, **kw):
  c = load_config("crosses_attribution", f"method={method},runlocal", **kw)
  c.model_kwargs.channels = (4,)
  c.model_kwargs.dense = 16
  c.attribution_eval.max_examples = 8
  c.attribution_eval.ig_steps = 2
  c.attribution_eval.picture_examples = 2
  return c


@pytest.mark.parametrize("method", ["classify_masked", "actdiff", "rrr", "adversarial"])
def test_one_step_end_to_end(method, tmp_path):
  config = _config(method, total_steps=1, log_every=1, batch_size=8,
                   evaluators=("classification",))
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 1
  assert np.isfinite(results["train/loss"])
  assert 0.0 <= results["eval/accuracy"] <= 1.0


def test_one_step_end_to_end_with_attribution_evaluator(tmp_path):
  config = _config("gradmask", total_steps=1, log_every=1, batch_size=8)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 1
  assert np.isfinite(results["train/loss"])
  for split in ("valid_id", "valid_shift", "test_id", "test_shift", "test_nodistractor"):
    assert 0.0 <= results[f"eval/{split}/accuracy"] <= 1.0
    assert 0.0 <= results[f"eval/{split}/auc"] <= 1.0
  for key in ("grad_iou", "grad_iop", "grad_mass", "ig_iou", "ig_mass"):
    assert 0.0 <= results[f"eval/saliency/{key}"] <= 1.0
  assert os.path.getsize(tmp_path / "saliency_test_shift.png") > 1000


def test_gradmask_four_devices_equal_one_device(tmp_path):
  """The per-masked-example normalization uses the global count: pmap on 4 devices = 1 device."""
  kw = dict(total_steps=2, log_every=1, batch_size=16, evaluators=("classification",))
  ref_cfg = _config("gradmask", parallel="jit", num_devices=1, **kw)
  ref_cfg.gradmask.mask_fraction = 0.5
  ref = trainer.Trainer(ref_cfg, str(tmp_path / "one"))
  ref_results = ref.run()
  cfg = _config("gradmask", parallel="pmap", num_devices=4, **kw)
  cfg.gradmask.mask_fraction = 0.5
  t = trainer.Trainer(cfg, str(tmp_path / "pmap"))
  results = t.run()
  assert max_abs_diff(t.host_state.params, ref.host_state.params) < 1e-5
  assert results["train/loss"] == pytest.approx(ref_results["train/loss"], abs=1e-5)
  # the penalty moved the parameters: a CE run from the same seed ends elsewhere
  ce = trainer.Trainer(_config("ce", parallel="jit", num_devices=1, **kw), str(tmp_path / "ce"))
  ce.run()
  assert max_abs_diff(ce.host_state.params, ref.host_state.params) > 1e-4


@pytest.mark.slow
def test_zero_mask_fraction_is_cross_entropy(tmp_path):
  """With no masked training example every penalty vanishes: RRR trains exactly like CE."""
  kw = dict(total_steps=2, log_every=1, batch_size=8, evaluators=("classification",),
            parallel="jit", num_devices=1)
  cfg = _config("rrr", **kw)
  cfg.rrr.mask_fraction = 0.0
  a = trainer.Trainer(cfg, str(tmp_path / "rrr"))
  a.run()
  b = trainer.Trainer(_config("ce", **kw), str(tmp_path / "ce"))
  b.run()
  assert max_abs_diff(a.host_state.params, b.host_state.params) < 1e-6


def test_select_masked_examples_and_option_errors():
  has = methods_attr.select_masked_examples(500, 0.25, seed=3)
  assert has.sum() == 125
  np.testing.assert_array_equal(has, methods_attr.select_masked_examples(500, 0.25, seed=3))
  assert not np.array_equal(has, methods_attr.select_masked_examples(500, 0.25, seed=4))
  assert methods_attr.select_masked_examples(10, 0.0, seed=0).sum() == 0
  from labelwise.train.methods import get_method
  cfg = _config("gradmask")
  cfg.gradmask.mask_fraction = 1.5
  with pytest.raises(ValueError, match="mask_fraction"):
    get_method(cfg)
  cfg = _config("rrr")
  cfg.rrr.normalization = "mean"
  with pytest.raises(ValueError, match="normalization"):
    get_method(cfg)


@pytest.mark.slow
def test_masked_folder_config_end_to_end(tmp_path, monkeypatch):
  """configs/masked_folder.py on a tiny generated folder (ResNet-18 width 8, GroupNorm, GradMask)."""
  from PIL import Image
  from labelwise.data.builders import masked_folder as MF
  root = tmp_path / "images"
  rng = np.random.default_rng(0)
  for split in MF._SPLITS:  # the splits registered at import (train/test without the env var)
    for cls in ("a", "b"):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(4):
        Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(d / f"{i}.png")
        m = np.zeros((12, 12), np.uint8)
        m[2:8, 2:8] = 1
        Image.fromarray(m * 255).save(d / f"{i}_mask.png")
  monkeypatch.setenv(MF.ENV_ROOT, str(root))
  monkeypatch.setenv(MF.ENV_SIZE, "12")
  config = load_config("masked_folder", "method=gradmask,runlocal", total_steps=1, log_every=1,
                       batch_size=4)
  config.data.data_dir = str(tmp_path / "tfds")
  results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(results["train/loss"])
  assert 0.0 <= results["eval/test/auc"] <= 1.0
  assert 0.0 <= results["eval/saliency/grad_iou"] <= 1.0


def _method_loss_setup(method_name, options, extra_heads=None):
  import jax.numpy as jnp
  from labelwise.models import get_model
  from labelwise.train.methods import METHODS
  from labelwise.train.methods.base import RunInfo, StepContext
  rng = np.random.default_rng(0)
  b = 6
  x = rng.normal(size=(b, 8, 8, 1)).astype(np.float32)
  m = np.ones((b, 8, 8), np.float32)
  m[:4, :, 4:] = 0.0  # examples 0-3 have a mask (right half outside), 4-5 none
  y = rng.integers(0, 2, b).astype(np.int32)
  batch = {"input": jnp.asarray(x), "label": jnp.asarray(y), "mask": jnp.asarray(m),
           "index": jnp.arange(b, dtype=jnp.int32)}
  model = get_model("attribution_cnn", num_classes=2, channels=(3,), dense=8,
                    extra_heads=extra_heads)
  params = model.init(jax.random.PRNGKey(0), batch["input"], train=False)["params"]

  class Cfg(dict):
    def get(self, k, d=None):
      return dict.get(self, k, d)

  method = METHODS[method_name](Cfg({"seed": 0, method_name: options}))
  info = RunInfo(num_classes=2, num_fine_classes=2, num_coarse_classes=None,
                 num_train_examples=b, input_shape=(8, 8, 1))
  buffers = method.init_buffers(jax.random.PRNGKey(1), info=info)
  key = jax.random.PRNGKey(3)
  ctx = StepContext(params=params, model_state={}, buffers=buffers, batch=batch, key=key,
                    train=True, axis_name=None, apply_fn=model.apply)
  return method, ctx, model, params, x, m, y, key


def _np_ce(z, y):
  z = np.asarray(z, np.float64)
  lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
  return float(np.mean(lse - z[np.arange(len(y)), y]))


@pytest.mark.parametrize("apply_lambda", [True, False])
def test_actdiff_method_loss_matches_independent_computation(apply_lambda):
  from labelwise.losses import shuffle_outside_mask
  method, ctx, model, params, x, m, y, key = _method_loss_setup(
      "actdiff", {"lam": 0.3, "apply_lambda": apply_lambda})
  import dataclasses
  loss = jax.jit(lambda p: method.loss(dataclasses.replace(ctx, params=p)).loss)(params)
  xs = np.asarray(shuffle_outside_mask(key, x, m))
  o1 = model.apply({"params": params}, x, train=False)
  o2 = model.apply({"params": params}, xs, train=False)
  d = np.linalg.norm(np.asarray(o1["features"], np.float64) - np.asarray(o2["features"]), axis=1)
  lam = 0.3 if apply_lambda else 1.0  # the authors' code never multiplies ActDiff by lambda
  expect = _np_ce(o1["logits"], y) + lam * d[:4].mean()  # mean over the 4 masked examples
  assert float(loss) == pytest.approx(expect, rel=1e-4)
  assert d[4:].max() == 0.0  # no mask: the shuffle leaves the image alone


def test_gradmask_method_loss_matches_finite_difference_input_gradients():
  method, ctx, model, params, x, m, y, key = _method_loss_setup("gradmask", {"lam": 0.5})
  out = method.loss(ctx)
  logits = jax.jit(lambda v: model.apply({"params": params}, v, train=False)["logits"])
  z = lambda v: np.asarray(logits(v), np.float64)
  # central differences of s_i = |z_i0 - z_i1| w.r.t. every pixel outside the masks
  eps = 1e-2
  l1 = np.zeros(6)
  for r in range(8):
    for c in range(4, 8):
      xp, xm = x.copy(), x.copy()
      xp[:, r, c, 0] += eps
      xm[:, r, c, 0] -= eps
      sp, sm = z(xp), z(xm)
      g = (np.abs(sp[:, 0] - sp[:, 1]) - np.abs(sm[:, 0] - sm[:, 1])) / (2 * eps)
      l1 += np.abs(g)
  expect = _np_ce(z(x), y) + 0.5 * l1[:4].mean()
  assert float(out.loss) == pytest.approx(expect, rel=2e-2)


def test_adversarial_gradient_reversal():
  """Head: gradient of +BCE; encoder: CE gradient minus lam times the BCE gradient."""
  import jax.numpy as jnp
  from labelwise.losses import shuffle_outside_mask
  lam = 0.7
  method, ctx, model, params, x, m, y, key = _method_loss_setup(
      "adversarial", {"lam": lam}, extra_heads={"discriminator": 1})
  assert method.extra_heads(None) == {"discriminator": 1}
  xs = shuffle_outside_mask(key, x, m)

  def parts(p):
    o1 = model.apply({"params": p}, x, train=False)
    o2 = model.apply({"params": p}, xs, train=False)
    ce = jnp.mean(-jax.nn.log_softmax(o1["logits"])[jnp.arange(6), y])
    bce = jnp.mean((jax.nn.softplus(-o1["discriminator"][:4, 0])
                    + jax.nn.softplus(o2["discriminator"][:4, 0])))  # 4 masked examples
    return ce, bce

  import dataclasses
  g_method = jax.jit(jax.grad(
      lambda p: method.loss(dataclasses.replace(ctx, params=p)).loss))(params)
  g_ce = jax.jit(jax.grad(lambda p: parts(p)[0]))(params)
  g_bce = jax.jit(jax.grad(lambda p: parts(p)[1]))(params)
  heads = g_method["Heads_0"]
  np.testing.assert_allclose(heads["head_discriminator"]["kernel"],
                             g_bce["Heads_0"]["head_discriminator"]["kernel"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(g_method["Dense_0"]["kernel"],
                             g_ce["Dense_0"]["kernel"] - lam * g_bce["Dense_0"]["kernel"],
                             rtol=1e-4, atol=1e-6)
  # the loss value itself is CE + BCE (the reversal only acts on gradients)
  ce, bce = jax.jit(parts)(params)
  value = jax.jit(lambda p: method.loss(dataclasses.replace(ctx, params=p)).loss)(params)
  assert float(value) == pytest.approx(float(ce + bce), rel=1e-5)
