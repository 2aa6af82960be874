"""config.sweep on the host: parsing, refusal of structural keys, summaries, selection by validation."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from labelwise.train import sweep as sweep_lib
from tests.helpers import load_config


def _config(spec, module="digits_ce", **kw):
  c = load_config(module, "runlocal", **kw)
  c.sweep = spec
  return c


def test_product_of_groups_in_order_with_typed_values():
  c = _config("seed=0,1;optimizer.learning_rate=0.1,1e-3", method="label_smoothing")
  s = sweep_lib.parse(c)
  assert s.keys == ("seed", "optimizer.learning_rate")
  assert [dict(p) for p in s.points] == [
      {"seed": 0, "optimizer.learning_rate": 0.1}, {"seed": 0, "optimizer.learning_rate": 1e-3},
      {"seed": 1, "optimizer.learning_rate": 0.1}, {"seed": 1, "optimizer.learning_rate": 1e-3}]
  assert isinstance(s.points[0]["seed"], int) and s.point_keys == ("optimizer.learning_rate",)
  configs = s.replica_configs(c)
  assert [x.seed for x in configs] == [0, 0, 1, 1]
  assert [x.optimizer.learning_rate for x in configs] == [0.1, 1e-3, 0.1, 1e-3]
  assert c.seed == 0 and c.optimizer.learning_rate == 1e-3 and c.sweep  # the base is unchanged
  assert all(x.sweep == "" for x in configs)


def test_method_options_become_floats_and_the_method_dict_is_created():
  c = _config("label_smoothing.alpha=0,0.2", method="label_smoothing")
  s = sweep_lib.parse(c)
  assert [p["label_smoothing.alpha"] for p in s.points] == [0.0, 0.2]
  assert all(isinstance(p["label_smoothing.alpha"], float) for p in s.points)
  assert [x.label_smoothing.alpha for x in s.replica_configs(c)] == [0.0, 0.2]


@pytest.mark.parametrize("spec, key, why", [
    ("model_kwargs.hidden=64,128", "model_kwargs.hidden", "parameter shapes"),
    ("batch_size=32,64", "batch_size", "array shape"),
    ("dataset=1,2", "dataset", "dataset"),
    ("method=1,2", "method", "objective"),
    ("total_steps=10,20", "total_steps", "same loop"),
    ("fierce.num_codes=10,20", "fierce.num_codes", "codebook size"),
    ("fierce.lambda=1,2", "fierce.lambda", "trains 'ce'"),
    ("optimizer.b1=0.9,0.8", "optimizer.b1", "optimizer"),
])
def test_structural_keys_are_refused_naming_the_key_and_why(spec, key, why):
  method = "fierce" if spec.startswith("fierce.num") else "ce"
  with pytest.raises(sweep_lib.SweepError) as e:
    sweep_lib.parse(_config(spec, method=method))
  assert f"`{key}`" in str(e.value) and why in str(e.value)


def test_bad_values_and_strings_are_refused():
  with pytest.raises(sweep_lib.SweepError, match="`seed` values must be integers"):
    sweep_lib.parse(_config("seed=0,1.5"))
  with pytest.raises(sweep_lib.SweepError, match="not a number"):
    sweep_lib.parse(_config("fierce.form=convex,difference", method="fierce"))
  with pytest.raises(sweep_lib.SweepError, match="selects a code path"):
    sweep_lib.parse(_config("two_head.include_true=0,1", method="two_head"))
  with pytest.raises(sweep_lib.SweepError, match="appears twice"):
    sweep_lib.parse(_config("seed=0;seed=1"))
  with pytest.raises(sweep_lib.SweepError, match="repeats"):
    sweep_lib.parse(_config("seed=0,0"))
  with pytest.raises(sweep_lib.SweepError, match="`key=v1,v2"):
    sweep_lib.parse(_config("seed"))
  with pytest.raises(sweep_lib.SweepError, match="no option 'alpha'"):
    sweep_lib.parse(_config("fierce.alpha=1,2", method="fierce"))
  with pytest.raises(sweep_lib.SweepError, match="integer option"):
    sweep_lib.parse(_config("epr.label_seed=0,0.5", method="epr"))
  assert sweep_lib.parse(_config("")) is None


def test_sweep_select_is_checked():
  with pytest.raises(sweep_lib.SweepError, match="needs a sweep"):
    c = _config("")
    c.sweep_select = "val/accuracy:max"
    sweep_lib.parse(c)
  for bad, match in [("eval/accuracy:max", "not a validation metric"),
                     ("val/accuracy", "must read"), ("val/accuracy:best", "must read")]:
    c = _config("seed=0,1")
    c.sweep_select = bad
    with pytest.raises(sweep_lib.SweepError, match=match):
      sweep_lib.parse(c)


def test_stats_against_numpy_and_scipy():
  x = [0.91, 0.93, 0.88, 0.95, 0.90]
  got = sweep_lib.stats(x)
  mean, sd = np.mean(x), np.std(x, ddof=1)
  lo, hi = scipy_stats.t.interval(0.95, len(x) - 1, loc=mean, scale=sd / math.sqrt(len(x)))
  assert got["n"] == 5 and got["mean"] == pytest.approx(mean) and got["std"] == pytest.approx(sd)
  assert got["ci95"] == pytest.approx([lo, hi])
  assert sweep_lib.stats([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci95": None}


def _replicas(sweep, val, test):
  return [{"overrides": dict(p), "step": 5, "train/loss": 1.0, "val/accuracy": v,
           "eval/accuracy": t} for p, v, t in zip(sweep.points, val, test)]


def test_summary_groups_points_over_seeds_and_select_uses_validation_only():
  s = sweep_lib.parse(_config("seed=0,1,2;label_smoothing.alpha=0.0,0.3",
                              method="label_smoothing"))
  # replicas in order (seed, alpha): alpha=0.0 has the better validation, alpha=0.3 the better test.
  val = [0.9, 0.7, 0.8, 0.6, 0.85, 0.65]
  test = [0.5, 0.9, 0.6, 0.95, 0.55, 0.9]
  summary = sweep_lib.summarize(s, _replicas(s, val, test))
  assert [e["point"] for e in summary] == [{"label_smoothing.alpha": 0.0},
                                           {"label_smoothing.alpha": 0.3}]
  assert summary[0]["replicas"] == [0, 2, 4]
  assert summary[1]["metrics"]["eval/accuracy"] == sweep_lib.stats([0.9, 0.95, 0.9])
  assert set(summary[0]["metrics"]) == {"train/loss", "val/accuracy", "eval/accuracy"}
  chosen = sweep_lib.select(summary, "val/accuracy:max")
  assert chosen["point"] == {"label_smoothing.alpha": 0.0}
  assert chosen["test"]["eval/accuracy"]["mean"] == pytest.approx(np.mean([0.5, 0.6, 0.55]))
  assert chosen["val"]["val/accuracy"]["mean"] == pytest.approx(np.mean([0.9, 0.8, 0.85]))
  assert sweep_lib.select(summary, "val/accuracy:min")["point"] == {"label_smoothing.alpha": 0.3}
  with pytest.raises(sweep_lib.SweepError, match="no replica reported 'val/loss'"):
    sweep_lib.select(summary, "val/loss:min")
