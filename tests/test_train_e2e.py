"""One end-to-end run per offline config (runlocal) through ``train_and_evaluate``."""

import json
import os

import numpy as np
import pytest

from labelwise.train import trainer
from labelwise.train.writers import read_metrics
from tests.helpers import load_config


@pytest.mark.parametrize("module", ["digits_ce", "mnist1d_ce"])
def test_runlocal_end_to_end(module, tmp_path):
  config = load_config(module, "runlocal", total_steps=6, log_every=2, checkpoint_every=3)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  # results.json is written and agrees with the returned dict.
  with open(tmp_path / "results.json") as f:
    on_disk = json.load(f)
  assert on_disk == pytest.approx(results)
  assert results["step"] == 6
  assert np.isfinite(results["train/loss"])
  assert 0.0 <= results["eval/accuracy"] <= 1.0
  # metrics.jsonl: one line per logging step with a step key, then the eval line.
  logged = read_metrics(str(tmp_path))
  assert [m["step"] for m in logged if "train/loss" in m] == [2, 4, 6]
  assert logged[-1]["step"] == 6 and "eval/accuracy" in logged[-1]
  # The final train/loss is the loss of the last step.
  assert results["train/loss"] == pytest.approx(logged[-2]["train/loss"])
  # Checkpoints at 3 and 6.
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [3, 6]


def test_training_reduces_loss(tmp_path):
  """Not a smoke test: 60 steps of Adam on digits must clearly beat chance."""
  config = load_config("digits_ce", "runlocal", total_steps=60, log_every=60,
                       checkpoint_every=-1, batch_size=64)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert results["eval/accuracy"] > 0.6  # chance is 0.1
  assert results["train/loss"] < np.log(10) * 0.7
