"""experiments/tuning.py: an arm (grid x seeds) is one config.sweep; its choice equals the one made
from separate single runs of every point and seed, on the same validation split."""

import os

import numpy as np
import pytest

from labelwise.experiments import tuning
from labelwise.train import trainer
from tests.helpers import load_config

SEEDS = (0, 1)


def _digits(**kw):
  kw = {"total_steps": 6, "log_every": 3, "checkpoint_every": -1, "batch_size": 32,
        "parallel": "jit", "method": "ce", **kw}
  c = load_config("digits_ce", "runlocal", **kw)
  c.model_kwargs.hidden = (16,)
  return c


def _separately(arm, workdir, *, seeds, select, points=None,
                validation_fraction=tuning.VALIDATION_FRACTION):
  """The reference: one train_and_evaluate per point x seed (no sweep), choice by hand (numpy)."""
  metric, sign = tuning.parse_select(select)
  runs, points = [], points or arm.points()
  for i, point in enumerate(points):
    for seed in seeds:
      c = arm.config.copy_and_resolve_references()
      c.seed = seed
      for k, v in point.items():
        tuning.set_dotted(c, k, v)
      if arm.validation:   # the single run evaluated on the validation split instead of test
        c.data.eval_split = arm.validation
        val = trainer.train_and_evaluate(c, os.path.join(workdir, f"p{i}s{seed}"))
        res = {("val/" + k[5:] if k.startswith("eval/") else k): v for k, v in val.items()}
      else:
        c.data.validation_fraction = validation_fraction
        res = trainer.train_and_evaluate(c, os.path.join(workdir, f"p{i}s{seed}"))
      runs.append((point, seed, res))
  means = [np.mean([r[metric] for p, _, r in runs if p == point]) for point in points]
  best = points[int(np.argmax(sign * np.asarray(means)))]
  return runs, best


def _assert_same(result, runs, best, test_size):
  assert result["selected"]["point"] == best
  assert [r["overrides"] for r in result["replicas"]] == [{**p, "seed": s} for p, s, _ in runs]
  for rep, (_, _, single) in zip(result["replicas"], runs):
    # the tolerances of the sweep tests (tests/test_sweep_train.py)
    assert rep["train/loss"] == pytest.approx(single["train/loss"], rel=1e-4)
    if "eval/accuracy" in single:
      assert abs(rep["eval/accuracy"] - single["eval/accuracy"]) <= 1.0 / test_size + 1e-9
    val = [k for k in single if k.startswith("val/")]
    assert val, "the reference runs have validation metrics"
    for k in val:   # one example of the validation split; a loss within 1e-3 relative
      size = single["val/num_examples"]
      assert rep[k] == pytest.approx(single[k], rel=1e-3, abs=1.0 / size + 1e-9), k
  # the reported test numbers are the selected point's seeds
  sel = tuning.selected(result)
  assert [r["overrides"]["seed"] for r in sel] == list(SEEDS)
  assert result["selected"]["test"]["eval/accuracy"]["mean"] == pytest.approx(
      np.mean([r["eval/accuracy"] for r in sel]))


def test_arm_is_one_sweep_and_chooses_as_separate_runs(tmp_path, monkeypatch):
  arm = tuning.Arm("CE", _digits(), {"optimizer.learning_rate": (1e-4, 3e-2)})
  calls = []
  real = trainer.Trainer.run
  monkeypatch.setattr(trainer.Trainer, "run",
                      lambda self: calls.append(self.config.sweep) or real(self))
  res = tuning.run_arm(arm, str(tmp_path / "arm"), seeds=SEEDS, select="val/accuracy:max")
  assert calls == ["optimizer.learning_rate=0.0001,0.03;seed=0,1"]   # ONE trainer run
  assert res["sweeps"] == calls and len(res["replicas"]) == 4
  assert os.path.exists(tmp_path / "arm" / "results.json")
  monkeypatch.setattr(trainer.Trainer, "run", real)
  runs, best = _separately(arm, str(tmp_path / "single"), seeds=SEEDS, select="val/accuracy:max")
  test_size = trainer.Trainer(_digits(), str(tmp_path / "probe")).dataset.split(
      "test").num_examples
  _assert_same(res, runs, best, test_size)
  # the learning rates differ by 300x: the choice is not a tie
  means = [s["metrics"]["val/accuracy"]["mean"] for s in res["summary"]]
  assert means[0] != means[1]
  # read back, not retrained
  calls.clear()
  monkeypatch.setattr(trainer.Trainer, "run",
                      lambda self: calls.append(self.config.sweep) or real(self))
  again = tuning.run_arm(arm, str(tmp_path / "arm"), seeds=SEEDS, select="val/accuracy:max")
  assert calls == [] and again["selected"] == res["selected"]


def test_structural_key_runs_one_sweep_per_value(tmp_path, monkeypatch):
  """``batch_size`` cannot vary inside one program: one sweep per batch size, one choice."""
  arm = tuning.Arm("CE", _digits(),
                   {"batch_size": (16, 32), "optimizer.learning_rate": (1e-4, 3e-2)})
  assert tuning.split_grid(arm.config, arm.grid) == (
      {"optimizer.learning_rate": (1e-4, 3e-2)}, {"batch_size": (16, 32)})
  calls = []
  real = trainer.Trainer.run
  monkeypatch.setattr(trainer.Trainer, "run",
                      lambda self: calls.append((self.config.batch_size, self.config.sweep))
                      or real(self))
  res = tuning.run_arm(arm, str(tmp_path / "arm"), seeds=SEEDS, select="val/accuracy:max")
  monkeypatch.setattr(trainer.Trainer, "run", real)
  assert calls == [(16, "optimizer.learning_rate=0.0001,0.03;seed=0,1"),
                   (32, "optimizer.learning_rate=0.0001,0.03;seed=0,1")]
  assert [s["point"] for s in res["summary"]] == arm.points()
  # the choice over both sweeps, by hand
  means = [np.mean([r["val/accuracy"] for r in tuning.at_point(res, p)]) for p in arm.points()]
  assert res["selected"]["point"] == arm.points()[int(np.argmax(means))]
  # every batch size's sweep equals its single runs (one point of each, both seeds)
  points = [{"batch_size": 16, "optimizer.learning_rate": 3e-2},
            {"batch_size": 32, "optimizer.learning_rate": 1e-4}]
  runs, _ = _separately(arm, str(tmp_path / "single"), seeds=SEEDS, select="val/accuracy:max",
                        points=points)
  test_size = trainer.Trainer(_digits(), str(tmp_path / "probe")).dataset.split(
      "test").num_examples
  reps = [r for p in points for r in tuning.at_point(res, p)]
  assert len(reps) == len(runs) == 4
  for rep, (_, _, single) in zip(reps, runs):
    assert rep["train/loss"] == pytest.approx(single["train/loss"], rel=1e-4)
    assert abs(rep["eval/accuracy"] - single["eval/accuracy"]) <= 1.0 / test_size + 1e-9
    assert rep["val/accuracy"] == pytest.approx(single["val/accuracy"],
                                                abs=1.0 / single["val/num_examples"] + 1e-9)


def test_the_datasets_own_validation_split(tmp_path):
  """``Arm.validation``: the replicas evaluated on the dataset's validation split (``val/``),
  the choice made there; equal to single runs evaluated on that split."""
  config = load_config("hierarchy_simloss", "runlocal,method=simloss", total_steps=8,
                       log_every=4, parallel="jit")
  arm = tuning.Arm("SimLoss", config, {"simloss.reduction_factor": (0.0, 0.9)}, "validation")
  res = tuning.run_arm(arm, str(tmp_path / "arm"), seeds=SEEDS, select="val/accuracy:max")
  assert res["sweeps"] == ["simloss.reduction_factor=0.0,0.9;seed=0,1"]
  assert {"val/accuracy", "val/failed_superclass_accuracy", "eval/accuracy"} <= set(
      res["replicas"][0])
  runs, best = _separately(arm, str(tmp_path / "single"), seeds=SEEDS, select="val/accuracy:max")
  test_size = trainer.Trainer(config, str(tmp_path / "probe")).dataset.split("test").num_examples
  _assert_same(res, runs, best, test_size)


def test_bad_arms_are_refused(tmp_path):
  arm = tuning.Arm("CE", _digits(), {"optimizer.learning_rate": (1e-3,)})
  with pytest.raises(ValueError, match="select"):
    tuning.run_arm(arm, str(tmp_path), seeds=SEEDS, select="eval/accuracy:max")
  with pytest.raises(ValueError, match="seeds"):
    tuning.run_arm(arm, str(tmp_path), seeds=(), select="val/accuracy:max")
  with pytest.raises(ValueError, match="`seed` is not a grid key"):
    tuning.run_arm(tuning.Arm("CE", _digits(), {"seed": (0, 1)}), str(tmp_path), seeds=SEEDS,
                   select="val/accuracy:max")
  with pytest.raises(ValueError, match="not a key of the arm's config"):
    tuning.run_arm(tuning.Arm("CE", _digits(), {"model_kwargs.width": (1, 2)}), str(tmp_path),
                   seeds=SEEDS, select="val/accuracy:max")
  assert not os.path.exists(tmp_path / "results.json")


def test_sweep_spec_round_trips_the_values():
  from labelwise.train import sweep as sweep_lib
  c = _digits()
  grid = {"optimizer.learning_rate": (3e-4, 1e-05, 0.1 + 0.2)}
  c.sweep = tuning.sweep_spec(grid, (3, 1))
  points = sweep_lib.parse(c).points
  lrs = [p["optimizer.learning_rate"] for p in points[::2]]
  assert lrs == list(grid["optimizer.learning_rate"])   # exactly, not rounded
  assert [p["seed"] for p in points[:2]] == [3, 1]


def _result(points, seeds=(0, 1), selected=None):
  """A hand-made ``run_arm`` result: one replica per point x seed, in that order."""
  reps = [{"overrides": {**p, "seed": s}, "val/accuracy": 0.5} for p in points for s in seeds]
  return {"replicas": reps, "selected": {"point": selected or points[0]}}


def test_points_are_the_distinct_grid_points_in_order():
  grid = [{"lr": 0.01, "w": 3.0}, {"lr": 0.001, "w": 3.0}, {"lr": 0.01, "w": 1.0}]
  assert tuning.points(_result(grid)) == grid          # seeds folded, first-seen order kept
  assert tuning.points(_result([{}], seeds=(0, 1, 2))) == [{}]   # an empty grid: one point
  # replicas of the same point need not be adjacent
  res = {"replicas": [{"overrides": {"a": 1.0, "seed": 0}}, {"overrides": {"a": 2.0, "seed": 0}},
                      {"overrides": {"a": 1.0, "seed": 1}}]}
  assert tuning.points(res) == [{"a": 1.0}, {"a": 2.0}]


def test_at_edge_names_the_end_of_every_varying_key():
  line = [{"lr": v} for v in (3e-4, 1e-3, 3e-3, 1e-2)]
  assert tuning.at_edge(_result(line, selected={"lr": 3e-4})) == {"lr": "lowest"}
  assert tuning.at_edge(_result(line, selected={"lr": 1e-2})) == {"lr": "highest"}
  assert tuning.at_edge(_result(line, selected={"lr": 1e-3})) == {"lr": None}
  assert not any(tuning.at_edge(_result(line, selected={"lr": 3e-3})).values())
  # an explicit point instead of the selected one; grid order does not matter (sorted values)
  shuffled = [{"lr": v} for v in (1e-3, 1e-2, 3e-4, 3e-3)]
  assert tuning.at_edge(_result(shuffled), {"lr": 3e-4}) == {"lr": "lowest"}
  # two keys: one inside, one at its top; a key with one value is not a grid (left out)
  grid = [{"lr": a, "w": b, "k": 2.0} for a in (1e-3, 3e-3, 1e-2) for b in (1.0, 10.0)]
  assert tuning.at_edge(_result(grid, selected={"lr": 3e-3, "w": 10.0, "k": 2.0})) == {
      "lr": None, "w": "highest"}
  # a one-point grid has no ends
  assert tuning.at_edge(_result([{"lr": 1e-3}])) == {}
