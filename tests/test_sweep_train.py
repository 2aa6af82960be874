"""Sweeps through the trainer: replica r is the single run with its overrides, in all three modes."""

import json

import numpy as np
import pytest

from labelwise.train import step as step_lib
from labelwise.train import sweep as sweep_lib
from labelwise.train import trainer
from labelwise.train.writers import read_metrics
from tests.helpers import load_config

STEPS = 12


def _config(parallel="jit", method="ce", **kw):
  kw = {"total_steps": STEPS, "log_every": 4, "checkpoint_every": -1, "batch_size": 32,
        "parallel": parallel, "method": method, **kw}
  c = load_config("digits_ce", "runlocal", **kw)
  c.model_kwargs.hidden = (32,)
  return c


def _single(config, overrides, workdir):
  c = config.copy_and_resolve_references()
  for k, v in overrides.items():
    sweep_lib.set_dotted(c, k, v)
  return trainer.train_and_evaluate(c, str(workdir))


@pytest.fixture
def train_traces(monkeypatch):
  """Counts Python traces of the train step (a trace = a compilation)."""
  counts = {"train": 0}
  make_train = step_lib.make_train_step

  def counting(*args, **kwargs):
    fn = make_train(*args, **kwargs)
    def traced(state, batch):
      counts["train"] += 1
      return fn(state, batch)
    return traced

  monkeypatch.setattr(step_lib, "make_train_step", counting)
  return counts


# (parallel, method, sweep, data options): each mode varies different things; pmap gathers its
# batches on the devices, jit reads host batches (device cache off), shard_map gathers in the step.
CASES = [
    ("pmap", "ce", "seed=0,1;optimizer.learning_rate=0.001,0.003", {}),
    ("shard_map", "label_smoothing", "seed=2,3;label_smoothing.alpha=0.0,0.2", {}),
    ("jit", "ce", "seed=4,5;optimizer.weight_decay=0.0,0.01", {"data__device_cache": "off"}),
]


@pytest.mark.parametrize("parallel, method, spec, data", CASES)
def test_replica_equals_the_single_run_with_its_overrides(parallel, method, spec, data,
                                                           train_traces, tmp_path):
  config = _config(parallel, method, **data)
  config.sweep = spec
  t = trainer.Trainer(config, str(tmp_path / "sweep"))
  results = t.run()
  assert train_traces["train"] == 1  # one compilation for the whole sweep
  sweep = sweep_lib.parse(config)
  assert len(results["replicas"]) == 4
  logged = read_metrics(str(tmp_path / "sweep"))
  test_size = t.dataset.split("test").num_examples
  for r in (0, 3):  # the first and the last replica against their single runs
    rep = results["replicas"][r]
    assert rep["overrides"] == dict(sweep.points[r])
    single = _single(_config(parallel, method, **data), rep["overrides"], tmp_path / f"single{r}")
    assert rep["train/loss"] == pytest.approx(single["train/loss"], rel=1e-4)
    assert abs(rep["eval/accuracy"] - single["eval/accuracy"]) <= 1.0 / test_size + 1e-9
    assert set(single) <= set(rep)  # the keys of a single run's results.json
    mine = [m["train/loss"] for m in logged if m.get("replica") == r and "train/loss" in m]
    theirs = [m["train/loss"] for m in read_metrics(str(tmp_path / f"single{r}"))
              if "train/loss" in m]
    np.testing.assert_allclose(mine, theirs, rtol=1e-4)
  # the replicas differ (different seeds and values)
  assert len({rep["train/loss"] for rep in results["replicas"]}) == 4


def test_structural_key_is_refused_before_anything_runs(tmp_path):
  config = _config()
  config.sweep = "seed=0,1;model_kwargs.hidden=16,32"
  with pytest.raises(sweep_lib.SweepError, match="`model_kwargs.hidden`.*parameter shapes"):
    trainer.Trainer(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_results_json_summary_and_metrics_lines(tmp_path):
  config = _config(total_steps=4, log_every=2)
  config.sweep = "seed=0,1,2;optimizer.learning_rate=0.001,0.01"
  results = trainer.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / "results.json") as f:
    on_disk = json.load(f)
  assert on_disk["sweep"] == config.sweep and len(on_disk["replicas"]) == 6
  assert on_disk["replicas"][1]["overrides"] == {"seed": 0, "optimizer.learning_rate": 0.01}
  assert isinstance(on_disk["replicas"][1]["overrides"]["seed"], int)
  assert [s["point"] for s in on_disk["summary"]] == [{"optimizer.learning_rate": 0.001},
                                                      {"optimizer.learning_rate": 0.01}]
  for s in on_disk["summary"]:
    accs = [on_disk["replicas"][i]["eval/accuracy"] for i in s["replicas"]]
    assert len(accs) == 3
    got = s["metrics"]["eval/accuracy"]
    assert got["mean"] == pytest.approx(np.mean(accs)) and got["std"] == pytest.approx(
        np.std(accs, ddof=1))
  lines = read_metrics(str(tmp_path))
  assert sorted({m["replica"] for m in lines}) == list(range(6))
  assert all("replica" in m for m in lines)
  assert results["summary"] == on_disk["summary"]


def test_sweep_resume_is_exact(tmp_path):
  """Stopped (preempted) at step 6 and continued == uninterrupted, for every replica."""
  config = _config(checkpoint_every=3)
  config.sweep = "seed=0,1;optimizer.learning_rate=0.001,0.003"
  ref = trainer.train_and_evaluate(config, str(tmp_path / "ref"))
  t = trainer.Trainer(config, str(tmp_path / "cut"))
  orig = t.apply_train_step
  calls = {"n": 0}

  def stop_at_six(dstate, guard, batch):
    calls["n"] += getattr(batch, "steps", 1)  # a call may run several steps (steps_per_call)
    if calls["n"] == 6:
      t.preemption_guard.request()
    return orig(dstate, guard, batch)

  t.apply_train_step = stop_at_six
  first = t.run()
  assert first["preempted"] is True and first["step"] == 6
  again = trainer.train_and_evaluate(config, str(tmp_path / "cut"))
  for a, b in zip(ref["replicas"], again["replicas"]):
    assert a == b  # bit-identical results, replica by replica
  assert read_metrics(str(tmp_path / "ref")) != [] and [
      {k: v for k, v in m.items() if k != "train/examples_per_sec"}
      for m in read_metrics(str(tmp_path / "ref"))] == [
      {k: v for k, v in m.items() if k != "train/examples_per_sec"}
      for m in read_metrics(str(tmp_path / "cut"))]


def test_sweep_select_picks_on_validation_and_reports_test(tmp_path):
  config = _config(total_steps=6, data__validation_fraction=0.2)
  config.sweep = "seed=0,1;optimizer.learning_rate=0.0001,0.01"
  config.sweep_select = "val/accuracy:max"
  results = trainer.train_and_evaluate(config, str(tmp_path))
  summary = results["summary"]
  means = [s["metrics"]["val/accuracy"]["mean"] for s in summary]
  best = summary[int(np.argmax(means))]
  assert results["selected"]["point"] == best["point"]
  assert results["selected"]["test"]["eval/accuracy"] == best["metrics"]["eval/accuracy"]
  rep = results["replicas"][0]
  assert {"val/accuracy", "eval/accuracy"} <= set(rep)


def test_sweep_select_needs_a_carved_validation_split(tmp_path):
  config = _config()
  config.sweep = "seed=0,1"
  config.sweep_select = "val/accuracy:max"
  with pytest.raises(ValueError, match="validation_fraction"):
    trainer.Trainer(config, str(tmp_path))


@pytest.mark.slow
def test_host_work_runs_per_replica(tmp_path):
  """Dataset-level EM (collision_cluster, pseudo_labels="dataset") in a sweep: each replica's EM
  uses its own state and fairness weight, and the replica equals its single run."""
  config = load_config("digits_cluster", "runlocal,pseudo=dataset,update_every=3", total_steps=6,
                       log_every=3, checkpoint_every=-1, batch_size=64, parallel="jit")
  config.model_kwargs.hidden = (32,)
  config.sweep = "seed=0,1;collision_cluster.fairness_weight=1.0,3.0"
  results = trainer.train_and_evaluate(config, str(tmp_path / "sweep"))
  rep = results["replicas"][2]
  assert rep["overrides"] == {"seed": 1, "collision_cluster.fairness_weight": 1.0}
  single = _single(config.copy_and_resolve_references(), {**rep["overrides"], "sweep": ""},
                   tmp_path / "single")
  assert rep["train/loss"] == pytest.approx(single["train/loss"], rel=1e-4)
  assert len({r["train/loss"] for r in results["replicas"]}) == 4
