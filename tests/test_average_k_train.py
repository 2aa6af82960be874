"""Average-K methods through the trainer: one short run per method, and data-parallel equivalence."""

import jax
import numpy as np
import pytest

from labelwise.train import trainer
from labelwise.train.methods import METHODS, get_method
from tests.helpers import load_config, max_abs_diff

# Options of two_head (rule A, oracle pseudo-labels) run in `make test-slow` only.
VARIANTS = ["two_head", pytest.param("two_head_a", marks=pytest.mark.slow),
            pytest.param("oracle", marks=pytest.mark.slow), "ce", "assume_negative", "epr"]


def _config(variant, **overrides):
  c = load_config("gaussians_avgk", f"method={variant},runlocal", **overrides)
  c.avgk_eval.ks = (2.0,)
  return c


@pytest.mark.parametrize("variant", VARIANTS)
def test_runlocal_end_to_end(variant, tmp_path):
  c = _config(variant, total_steps=2, log_every=1)
  results = trainer.train_and_evaluate(c, str(tmp_path))
  assert results["step"] == 2 and np.isfinite(results["train/loss"])
  heads = {"two_head": ["softmax", "multilabel"], "two_head_a": ["softmax", "multilabel"],
           "oracle": ["softmax", "multilabel"], "ce": ["softmax"],
           "assume_negative": ["multilabel"], "epr": ["multilabel"]}[variant]
  for head in heads + ["oracle"]:
    # Calibrated on validation[:1000]: 2000 scores kept, mean set size 2 there.
    assert results[f"eval/avgk/{head}/K2/cal_set_size"] == pytest.approx(2.0, abs=2e-3)
    assert 0.0 <= results[f"eval/avgk/{head}/K2/accuracy"] <= 1.0
    assert 0.5 < results[f"eval/avgk/{head}/K2/set_size"] < 4.0
  for head in heads:
    assert results[f"eval/avgk/{head}/K2/regret"] == pytest.approx(
        results["eval/avgk/oracle/K2/accuracy"] - results[f"eval/avgk/{head}/K2/accuracy"])


def test_method_options_are_validated():
  for bad in (dict(k=0.0), dict(weight=-1.0), dict(pseudo_labels="labels")):
    c = _config("two_head")
    c.two_head.update(bad)
    with pytest.raises(ValueError):
      get_method(c)
  c = _config("epr")
  c.epr.k = -2.0
  with pytest.raises(ValueError, match="k"):
    get_method(c)
  assert {"two_head", "assume_negative", "epr"} <= set(METHODS)


def _run(config, workdir):
  t = trainer.Trainer(config, str(workdir))
  results = t.run()
  return t.host_state, results


@pytest.mark.parametrize("variant, modes", [
    ("two_head", ("pmap",)),
    pytest.param("two_head", ("shard_map",), marks=pytest.mark.slow),
    pytest.param("epr", ("pmap", "shard_map"), marks=pytest.mark.slow)])
def test_global_batch_statistics_match_one_device(variant, modes, tmp_path):
  """The pseudo-label threshold (two_head) and the EPR mean (epr) span the global batch: training
  on 4 devices (pmap, shard_map) gives the parameters of one device on the whole batch."""
  assert jax.device_count() == 4

  def cfg(**kw):
    c = _config(variant, total_steps=3, checkpoint_every=-1, batch_size=16, log_every=1, **kw)
    c.optimizer.learning_rate = 0.05
    c.evaluators = ("classification",)
    return c

  one, one_results = _run(cfg(parallel="jit", num_devices=1), tmp_path / "one")
  for mode in modes:
    state, results = _run(cfg(parallel=mode, num_devices=4), tmp_path / mode)
    assert max_abs_diff(state.params, one.params) < 1e-5, mode
    assert results["train/loss"] == pytest.approx(one_results["train/loss"], abs=1e-5), mode
