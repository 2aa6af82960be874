"""One study arm through the trainer: a hyperparameter grid x seeds, the point chosen on validation.

A study declares its arms (a trainer config, a grid of dotted config keys) and calls
:func:`run_arm` for each; every arm of a comparison gets a grid of the same size (the same tuning
budget), and the point with the best mean validation metric over seeds is reported on the test
split, so the test split never takes part in a choice::

    from labelwise.experiments import tuning
    arm = tuning.Arm("CE", config, {"optimizer.learning_rate": (5e-4, 1e-3, 2e-3)})
    res = tuning.run_arm(arm, "runs/study/ce", seeds=range(5), select="val/accuracy:max")
    res["selected"]["point"]                  # {"optimizer.learning_rate": 0.001}
    tuning.at_point(res, res["selected"]["point"])   # the replicas (one per seed) of that point

Every run is ``labelwise.train.trainer.train_and_evaluate`` in-process (nothing here trains); a
run whose workdir already holds its results is read back, not retrained.

Validation: the dataset's validation split (``Arm.validation``), or else the last
``VALIDATION_PERCENT`` % of the training split (``train[80%:]``, a fixed part of TFDS's fixed
shuffled order, not stratified): models then train on ``train[:80%]``. Every run is evaluated on
the validation split (``val/...``) and the test split (``eval/...``); the choice reads only
``val/...``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Sequence

import numpy as np

VALIDATION_PERCENT = 20


@dataclasses.dataclass
class Arm:
  """A method arm: its trainer config and the grid its hyperparameters are tuned on.

  ``grid`` maps dotted config keys (``"fierce.lambda"``, ``"optimizer.learning_rate"``) to the values
  tried; the points are the product of the groups (an empty grid: one point, the config as is).
  """
  name: str
  config: Any
  grid: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
  validation: str = ""  # a validation split of the dataset; "" = the last 20% of train

  def points(self) -> List[Dict[str, float]]:
    keys = list(self.grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(self.grid[k] for k in keys))]

  def record(self) -> Dict[str, Any]:
    """The arm as plain data for a provenance record."""
    return {"config": self.config.to_dict(), "grid": {k: list(v) for k, v in self.grid.items()},
            "validation": self.validation or f"last {VALIDATION_PERCENT}% of the training split"}


def parse_select(select: str):
  """``"val/<metric>:max"`` -> (``"val/<metric>"``, +1); ``:min`` -> -1."""
  metric, _, how = select.rpartition(":")
  if not metric.startswith("val/") or how not in ("max", "min"):
    raise ValueError(f"`select` must look like 'val/<metric>:max' or 'val/<metric>:min', "
                     f"got {select!r}.")
  return metric, (1.0 if how == "max" else -1.0)


def set_dotted(config, key: str, value) -> None:
  node, parts = config, key.split(".")
  for p in parts[:-1]:
    node = node[p]
  if parts[-1] not in node:
    raise ValueError(f"grid key {key!r} is not a key of the arm's config.")
  node[parts[-1]] = type(node[parts[-1]])(value) if isinstance(node[parts[-1]], float) else value


def _key_name(point: Mapping[str, float]) -> str:
  return "_".join(f"{k.split('.')[-1]}{v:g}" for k, v in point.items()) or "default"


def _run_one(config, workdir: str) -> Dict[str, float]:
  """Trains ``config`` in ``workdir`` (or reads it back); test metrics plus ``val/...``."""
  from labelwise.train import trainer
  done = os.path.join(workdir, "study.json")
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  t = trainer.Trainer(config, workdir)
  results = dict(t.run())
  t.eval_split = config.data.validation_split
  results.update({"val/" + k[len("eval/"):]: v for k, v in t.evaluate(t.host_state).items()})
  with open(done, "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  return results


def use_compilation_cache(workdir: str) -> None:
  """Keeps compiled programs on disk under ``workdir``: the seeds of a grid point (same program,
  another initial state) compile once."""
  import jax
  jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(workdir), "xla_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def run_arm(arm: Arm, workdir: str, *, seeds: Iterable[int], select: str) -> Dict[str, Any]:
  """Trains every point x seed of ``arm``; returns ``{"replicas", "selected"}``.

  ``replicas``: one dict per run with ``"overrides"`` (the grid point and ``seed``) and the run's
  results (``eval/...`` on the test split, ``val/...`` on the held-out part of training).
  ``selected``: ``{"by", "point", "val": {metric: stats}}``, the point with the best mean
  ``select`` metric over seeds (ties: the first in grid order).
  """
  metric, sign = parse_select(select)
  seeds = [int(s) for s in seeds]
  replicas = []
  for point in arm.points():
    for seed in seeds:
      config = copy.deepcopy(arm.config)
      config.seed = seed
      if arm.validation:
        config.data.validation_split = arm.validation
      else:
        base = config.data.train_split
        config.data.train_split = f"{base}[:{100 - VALIDATION_PERCENT}%]"
        config.data.validation_split = f"{base}[{100 - VALIDATION_PERCENT}%:]"
      for k, v in point.items():
        set_dotted(config, k, v)
      results = _run_one(config, os.path.join(workdir, _key_name(point), f"seed{seed}"))
      replicas.append({"overrides": {**point, "seed": seed}, **results})
  best, best_score = None, -math.inf
  for point in arm.points():
    score = sign * float(np.mean([r[metric] for r in at_point({"replicas": replicas}, point)]))
    if score > best_score:
      best, best_score = point, score
  val = stats([r[metric] for r in at_point({"replicas": replicas}, best)])
  return {"replicas": replicas, "selected": {"by": select, "point": best, "val": {metric: val}}}


def values(replicas: Sequence[Mapping[str, Any]], key: str) -> List[float]:
  """One metric over replicas (NaN where a replica lacks it)."""
  return [float(r.get(key, float("nan"))) for r in replicas]


def val_mean(result: Mapping[str, Any]) -> float:
  """The selected point's mean validation metric (the one it was chosen by)."""
  metric = result["selected"]["by"].rpartition(":")[0]
  return float(result["selected"]["val"][metric]["mean"])


def at_point(result: Mapping[str, Any], point: Mapping[str, float]) -> List[Dict[str, Any]]:
  """The replicas (one per seed) of ``result`` at the grid ``point``."""
  return [r for r in result["replicas"]
          if all(r["overrides"].get(k) == v for k, v in point.items())]


def selected(result: Mapping[str, Any]) -> List[Dict[str, Any]]:
  """The replicas of the selected point."""
  return at_point(result, result["selected"]["point"])


def stats(values: Sequence[float]) -> Dict[str, Any]:
  """Mean, std (ddof 1) and the 95% t-interval of the mean (``None`` with fewer than 2 values)."""
  from scipy import stats as scipy_stats
  x = np.asarray(values, np.float64)
  n = int(x.size)
  mean = float(np.mean(x))
  if n < 2:
    return {"n": n, "mean": mean, "std": None, "ci95": None}
  std = float(np.std(x, ddof=1))
  half = float(scipy_stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
  return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def fmt(values: Sequence[float], *, scale: float = 100.0, digits: int = 1) -> str:
  """``"mean ± std [lo, hi]"`` of ``values`` times ``scale`` (the 95% t-interval of the mean)."""
  s = stats(values)
  if s["std"] is None:
    return f"{scale * s['mean']:.{digits}f}"
  lo, hi = (scale * v for v in s["ci95"])
  return f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def point_label(point: Mapping[str, float]) -> str:
  """``{"fierce.lambda": 2.0, "fierce.temperature": 0.1}`` -> ``"lambda=2, temperature=0.1"``."""
  return ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in point.items()) or "(default)"
