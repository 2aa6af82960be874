"""FIERCE through the trainer: one-step end-to-end runs, codebook checkpointing, 4 devices = 1."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise import losses
from labelwise.train import trainer
from labelwise.train.checkpoint import Checkpointer
from labelwise.train.methods import get_method
from labelwise.train.writers import read_metrics
from tests.helpers import load_config


def test_fierce_one_step_end_to_end_and_codebook_checkpointed(tmp_path):
  config = load_config("digits_fierce", "runlocal,lam=1,tau=0.5", total_steps=2, log_every=1,
                       checkpoint_every=1)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 2 and np.isfinite(results["train/loss"])
  for key in ("eval/accuracy", "eval/fine_knn_accuracy", "eval/fine_probe_accuracy"):
    assert 0.0 <= results[key] <= 1.0
  assert 0.0 <= results["eval/feature_entropy_bits"] <= math.log2(100) + 1e-6
  logged = [m for m in read_metrics(str(tmp_path)) if "train/loss" in m]
  for m in logged:
    assert 0.0 < m["train/entropy_bits"] <= math.log2(32) + 1e-5    # runlocal batch 32
    assert 0.0 <= m["train/entropy_bits_noiseless"] <= math.log2(32) + 1e-5
    # loss = CE - lambda * H (the trained, noisy H), as logged.
    assert m["train/loss"] == pytest.approx(m["train/ce"] - m["train/entropy_bits"], abs=1e-4)

  # The codebook: drawn from the config seed, [100, 64] (the MLP's last hidden width) and restored
  # from the checkpoint into a template whose codes are zeros.
  t = trainer.Trainer(config, str(tmp_path))
  fresh = t.initial_state()
  codes = np.asarray(fresh.buffers["codes"])
  assert codes.shape == (100, 64) and np.all(np.abs(codes) <= 0.01) and codes.std() > 0
  template = fresh.replace(buffers={"codes": jnp.zeros_like(fresh.buffers["codes"])})
  ckpt = Checkpointer(str(tmp_path))
  step, restored = ckpt.restore(template)
  ckpt.close()
  assert step == 2
  np.testing.assert_array_equal(np.asarray(restored.buffers["codes"]), codes)
  # A different seed draws a different codebook.
  other = trainer.Trainer(load_config("digits_fierce", "runlocal,seed=1"), str(tmp_path / "o"))
  assert not np.allclose(np.asarray(other.initial_state().buffers["codes"]), codes)


@pytest.mark.parametrize("arm", ["method=ce", "method=label_smoothing"])
def test_baseline_arms_one_step(arm, tmp_path):
  config = load_config("digits_fierce", f"runlocal,{arm},coarse=pairs", total_steps=1,
                       log_every=1, checkpoint_every=-1)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(results["train/loss"])
  assert 0.0 <= results["eval/fine_knn_accuracy"] <= 1.0
  assert "eval/feature_entropy_bits" not in results   # no codebook outside FIERCE


def test_method_options_are_validated():
  with pytest.raises(ValueError, match="koleo"):
    get_method(load_config("digits_fierce", "runlocal,estimator=koleo,form=convex"))
  with pytest.raises(ValueError, match="temperature"):
    get_method(load_config("digits_fierce", "runlocal,tau=0"))
  with pytest.raises(ValueError, match="unknown option"):
    c = load_config("digits_fierce", "runlocal")
    c.fierce["lamda"] = 1.0   # misspelt option
    get_method(c)


def test_lambda_zero_step_equals_ce_step(tmp_path):
  """With lambda = 0 the FIERCE method trains exactly like CE (same init, same batches)."""
  a = load_config("digits_fierce", "runlocal,lam=0", total_steps=2, log_every=1,
                  checkpoint_every=-1, evaluators=("classification",))
  b = load_config("digits_fierce", "runlocal,method=ce", total_steps=2, log_every=1,
                  checkpoint_every=-1, evaluators=("classification",))
  ra = trainer.train_and_evaluate(a, str(tmp_path / "a"))
  rb = trainer.train_and_evaluate(b, str(tmp_path / "b"))
  assert ra["train/loss"] == pytest.approx(rb["train/loss"], rel=1e-5)
  assert ra["eval/accuracy"] == pytest.approx(rb["eval/accuracy"])
