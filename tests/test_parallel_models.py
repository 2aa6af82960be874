"""Every parallel mode on 1 device and on 4 devices, for every registered model, with the chunked
(scanned) patch-matmul convolution gradient: one training step equals the 1-device ``jit`` step.

Issue 16: ``--config.parallel=shard_map`` on a one-device machine crashed in the convolution's
kernel gradient (a scan carry that did not vary over the mesh like the data); the 4-device tests
missed it because there each device's batch was small enough for a single chunk.
"""

import jax
import numpy as np
import pytest

from labelwise.models import conv as conv_lib
from labelwise.train import trainer
from tests.helpers import load_config, max_abs_diff

MODELS = {
    "mlp": {"hidden": (16,)},
    "small_cnn": {"channels": (4, 8), "dense": 8},
    "attribution_cnn": {},
    "resnet18": {"width": 4, "stage_sizes": (1, 1, 1, 1), "norm": "batch"},
}


def _one_step(model, parallel, num_devices, workdir, **kw):
  c = load_config("digits_ce", "runlocal", model=model, parallel=parallel, num_devices=num_devices,
                  batch_size=8, checkpoint_every=-1, **kw)
  c.model_kwargs = MODELS[model]
  c.optimizer.update(name="sgd", learning_rate=0.1, momentum=0.0)
  t = trainer.Trainer(c, str(workdir))
  dstate = t.parallel.put_state(t.initial_state())
  feed = t.batch_feed(0, 1)
  _, batch = feed.next()
  dstate, _, metrics = t.apply_train_step(dstate, t.new_guard(), batch)
  feed.close()
  return t.parallel.get_state(dstate), t.parallel.metrics_to_host(metrics)


# small_cnn (the README's failing command) in `make test`; the other models with `make test-slow`.
@pytest.mark.parametrize("model", [m if m == "small_cnn" else pytest.param(m, marks=pytest.mark.slow)
                                   for m in MODELS])
def test_every_parallel_mode_on_one_and_four_devices(model, tmp_path, monkeypatch):
  monkeypatch.setattr(conv_lib, "TARGET_ROWS", 8)  # several chunks per device: the scan path
  ref, ref_metrics = _one_step(model, "jit", 1, tmp_path / "ref", conv_impl="xla")
  for parallel in ("pmap", "shard_map", "jit"):
    for n in (1, 4):
      state, metrics = _one_step(model, parallel, n, tmp_path / f"{parallel}{n}")
      where = f"{model} {parallel} on {n} device(s)"
      assert max_abs_diff(state.params, ref.params) < 1e-5, where
      assert metrics["loss"] == pytest.approx(ref_metrics["loss"], abs=1e-5), where
      assert np.isfinite(metrics["loss"]), where


def test_conv_impl_is_a_config_key(tmp_path):
  c = load_config("digits_ce", "runlocal", model="small_cnn", conv_impl="xla")
  c.model_kwargs = {}
  assert trainer.Trainer(c, str(tmp_path)).model.conv_impl == "xla"
  with pytest.raises(ValueError,
                     match=r"`conv_impl` must be one of \['auto', 'xla', 'matmul', 'patches'\]"):
    trainer.validate_config(load_config("digits_ce", "runlocal", conv_impl="fast"))
