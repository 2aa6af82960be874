"""pmap, shard_map and jit on 4 devices train exactly like one device; resume equals no interruption."""

import jax
import numpy as np
import pytest

from labelwise.train import trainer
from labelwise.train.writers import read_metrics
from tests.helpers import load_config, max_abs_diff

assert jax.device_count() == 4, "tests/conftest.py must set 4 fake CPU devices"


def _params_after(config, workdir):
  t = trainer.Trainer(config, str(workdir))
  results = t.run()
  return t.host_state, results


def _config(model, **kw):
  kw = {"total_steps": 3, "checkpoint_every": -1, "batch_size": 16, "log_every": 1, **kw}
  c = load_config("digits_ce", "runlocal", **kw)
  # SGD, not Adam: Adam's first step is lr * sign(g), which turns float32 summation-order noise
  # in near-zero gradients (e.g. zero-initialised BatchNorm scales) into lr-sized differences.
  c.optimizer.update(name="sgd", learning_rate=0.01, momentum=0.9)
  if model == "resnet18":  # BatchNorm, batch statistics averaged across devices
    c.model = "resnet18"
    c.model_kwargs = {"width": 4, "stage_sizes": (1, 1, 1, 1), "norm": "batch"}
  return c


@pytest.mark.parametrize("model", ["mlp", "resnet18"])
def test_parallel_modes_match_one_device(model, tmp_path):
  reference, ref_results = _params_after(_config(model, parallel="jit", num_devices=1),
                                         tmp_path / "one")
  for mode in ("pmap", "shard_map", "jit"):
    state, results = _params_after(_config(model, parallel=mode, num_devices=4), tmp_path / mode)
    assert max_abs_diff(state.params, reference.params) < 1e-5, mode
    if model == "resnet18":  # running BatchNorm statistics agree too
      assert max_abs_diff(state.model_state, reference.model_state) < 1e-5, mode
    assert results["train/loss"] == pytest.approx(ref_results["train/loss"], abs=1e-5), mode
    assert results["eval/accuracy"] == pytest.approx(ref_results["eval/accuracy"], abs=1e-6)


def test_gradient_is_not_scaled_by_device_count(tmp_path):
  """One SGD step (no momentum) moves the parameters by exactly lr * grad of the global mean loss."""
  c1 = _config("mlp", parallel="jit", num_devices=1, total_steps=1)
  c1.optimizer.update(name="sgd", momentum=0.0)
  one, _ = _params_after(c1, tmp_path / "one")
  for mode in ("pmap", "shard_map"):
    c = _config("mlp", parallel=mode, num_devices=4, total_steps=1)
    c.optimizer.update(name="sgd", momentum=0.0)
    state, _ = _params_after(c, tmp_path / mode)
    assert max_abs_diff(state.params, one.params) < 1e-6, mode


@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
def test_resume_equals_uninterrupted(parallel, tmp_path):
  def cfg(steps):
    return load_config("digits_ce", "runlocal", total_steps=steps, checkpoint_every=20,
                       log_every=10, parallel=parallel)
  full, full_results = _params_after(cfg(40), tmp_path / "full")
  _params_after(cfg(20), tmp_path / "split")            # "killed" after the checkpoint at 20
  resumed, resumed_results = _params_after(cfg(40), tmp_path / "split")
  assert int(resumed.step) == 40
  assert max_abs_diff(resumed.params, full.params) < 1e-6
  assert max_abs_diff(resumed.opt_state, full.opt_state) < 1e-6
  assert resumed_results["train/loss"] == pytest.approx(full_results["train/loss"], abs=1e-6)
  logged = [m["step"] for m in read_metrics(str(tmp_path / "split")) if "train/loss" in m]
  assert logged == [10, 20, 30, 40]  # the resumed run appends, nothing is logged twice


def test_resumed_finished_run_is_a_no_op(tmp_path):
  c = load_config("digits_ce", "runlocal", total_steps=5, checkpoint_every=5)
  first = trainer.train_and_evaluate(c, str(tmp_path))
  again = trainer.train_and_evaluate(c, str(tmp_path))
  assert again["step"] == 5
  assert again["train/loss"] == pytest.approx(first["train/loss"])
  assert again["eval/accuracy"] == pytest.approx(first["eval/accuracy"])


def test_eval_counts_every_example_once_on_four_devices(tmp_path):
  c = load_config("digits_ce", "runlocal", total_steps=2, checkpoint_every=-1,
                  eval_batch_size=48)
  t = trainer.Trainer(c, str(tmp_path))
  results = t.run()
  p = t.predictions("test")
  n = t.dataset.split("test").num_examples
  assert n % 48
  np.testing.assert_array_equal(np.sort(p["index"]), np.arange(n))
  assert results["eval/num_examples"] == n
  acc = np.mean(np.argmax(p["logits"], -1) == p["label"])
  assert results["eval/accuracy"] == pytest.approx(acc)
