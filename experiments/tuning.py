"""One study arm through the trainer: a grid x seeds as one sweep, the point chosen on validation.

A study declares its arms (a trainer config, a grid of dotted config keys) and calls
:func:`run_arm` for each; every arm of a comparison gets a grid of the same size (the same tuning
budget), and the point with the best mean validation metric over seeds is reported on the test
split, so the test split never takes part in a choice::

    from labelwise.experiments import tuning
    arm = tuning.Arm("CE", config, {"optimizer.learning_rate": (5e-4, 1e-3, 2e-3)})
    res = tuning.run_arm(arm, "runs/study/ce", seeds=range(5), select="val/accuracy:max")
    res["selected"]["point"]                  # {"optimizer.learning_rate": 0.001}
    tuning.at_point(res, res["selected"]["point"])   # the replicas (one per seed) of that point

An arm is ONE ``labelwise.train.trainer.train_and_evaluate`` in-process: the grid and the seeds
become ``config.sweep = "<key>=v1,v2;...;seed=s1,s2,..."`` (every combination a replica of one
compiled program, :mod:`labelwise.train.sweep`), and ``replicas`` / ``summary`` / ``selected`` are
read from the sweep's ``results.json`` (nothing here trains). A grid key that a sweep cannot vary
(it changes shapes or structure: ``batch_size``, a method's static option such as
``fierce.num_codes``) is not refused: the arm runs one sweep per value (per combination) of its
structural keys, in ``<workdir>/<key><value>...``, and the choice runs over all of them. An arm
whose workdir already holds its finished results (same config) is read back, not retrained.

Validation: the dataset's own validation split when it has one (``Arm.validation``; the replicas
are evaluated on it after training, ``val/...``), or else a fixed stratified
``VALIDATION_FRACTION`` of the training split carved out by the trainer
(``data.validation_fraction``; the models do not train on it) and the choice made by the trainer's
``config.sweep_select``. Every replica is evaluated on the validation split (``val/...``) and on the
test split (``eval/...``); the choice reads only ``val/...``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from labelwise.train import sweep as sweep_lib
from labelwise.train.sweep import stats

#: the stratified share of the training split held out for the choice (``data.validation_fraction``)
VALIDATION_FRACTION = 0.2
STUDY_FILE = "study.json"


@dataclasses.dataclass
class Arm:
  """A method arm: its trainer config and the grid its hyperparameters are tuned on.

  ``grid`` maps dotted config keys (``"fierce.lambda"``, ``"optimizer.learning_rate"``) to the values
  tried; the points are the product of the groups (an empty grid: one point, the config as is).
  """
  name: str
  config: Any
  grid: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
  validation: str = ""  # a validation split of the dataset; "" = a stratified 20% of train

  def points(self) -> List[Dict[str, float]]:
    keys = list(self.grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(self.grid[k] for k in keys))]

  def record(self) -> Dict[str, Any]:
    """The arm as plain data for a provenance record."""
    return {"config": self.config.to_dict(), "grid": {k: list(v) for k, v in self.grid.items()},
            "validation": self.validation or (
                f"a stratified {VALIDATION_FRACTION:.0%} of the training split "
                f"(data.validation_fraction={_fraction(self.config):g})")}


def _fraction(config) -> float:
  return float(config.data.get("validation_fraction", 0.0) or 0.0) or VALIDATION_FRACTION


def parse_select(select: str):
  """``"val/<metric>:max"`` -> (``"val/<metric>"``, +1); ``:min`` -> -1."""
  metric, _, how = select.rpartition(":")
  if not metric.startswith("val/") or how not in ("max", "min"):
    raise ValueError(f"`select` must look like 'val/<metric>:max' or 'val/<metric>:min', "
                     f"got {select!r}.")
  return metric, (1.0 if how == "max" else -1.0)


def set_dotted(config, key: str, value) -> None:
  """``config[a][b] = value`` for ``key = "a.b"`` (the key must exist; a float stays a float)."""
  node, parts = config, key.split(".")
  for p in parts[:-1]:
    if p not in node:
      raise ValueError(f"grid key {key!r} is not a key of the arm's config.")
    node = node[p]
  if parts[-1] not in node:
    raise ValueError(f"grid key {key!r} is not a key of the arm's config.")
  node[parts[-1]] = type(node[parts[-1]])(value) if isinstance(node[parts[-1]], float) else value


def _key_name(point: Mapping[str, float]) -> str:
  return "_".join(f"{k.split('.')[-1]}{v:g}" for k, v in point.items()) or "default"


def _text(value) -> str:
  """A grid value as ``config.sweep`` text that parses back to exactly the same number."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f"grid value {value!r} is not a number.")
  return str(value) if isinstance(value, int) else repr(float(value))


def sweep_spec(grid: Mapping[str, Sequence[float]], seeds: Sequence[int]) -> str:
  """``config.sweep`` of a grid x seeds: the grid's keys in order, then ``seed`` (varying fastest,
  so replicas run point by point, the seeds of a point together)."""
  groups = [f"{k}=" + ",".join(_text(v) for v in vals) for k, vals in grid.items()]
  return ";".join(groups + ["seed=" + ",".join(str(int(s)) for s in seeds)])


def split_grid(config, grid: Mapping[str, Sequence[float]]) -> Tuple[Dict, Dict]:
  """(the keys a sweep can vary, the structural keys) of ``grid`` for ``config``.

  A key is structural when :func:`labelwise.train.sweep.check_key` refuses it (it changes shapes or
  structure of the compiled program); such keys get one sweep per value instead.
  """
  from labelwise.train import methods as methods_lib
  method_cls = methods_lib.METHODS[config.method]
  sweepable, structural = {}, {}
  for key, vals in grid.items():
    try:
      sweep_lib.check_key(config, key, list(vals), method_cls)
    except sweep_lib.SweepError:
      structural[key] = vals
    else:
      sweepable[key] = vals
  return sweepable, structural


def use_compilation_cache(workdir: str) -> None:
  """Keeps compiled programs on disk under ``workdir``: arms of the same shapes (another split,
  another structural value of the same size) compile once."""
  import jax
  jax.config.update("jax_compilation_cache_dir",
                    os.path.join(os.path.abspath(workdir), "xla_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _sweep_config(arm: Arm, fixed: Mapping[str, Any], grid: Mapping[str, Sequence[float]],
                  seeds: Sequence[int], select: str):
  config = arm.config.copy_and_resolve_references()
  for k, v in fixed.items():
    set_dotted(config, k, v)
  with config.unlocked():
    config.sweep = sweep_spec(grid, seeds)
    if arm.validation:
      if float(config.data.get("validation_fraction", 0.0) or 0.0):
        raise ValueError(f"arm {arm.name!r}: `validation={arm.validation!r}` (the dataset's own "
                         "split) and `data.validation_fraction` (a carved split) exclude each "
                         "other; set one.")
      config.data.validation_split = arm.validation
      config.sweep_select = ""   # chosen here, on the dataset's split (the trainer carves none)
    else:
      config.data.validation_fraction = _fraction(config)
      config.sweep_select = select
  return config


def _one_sweep(arm: Arm, config, workdir: str) -> Dict[str, Any]:
  """Trains one sweep (or reads its finished results back): the trainer's results.json, with
  ``val/...`` of the dataset's validation split added to every replica for ``Arm.validation``."""
  from labelwise.train import trainer
  done = os.path.join(workdir, STUDY_FILE)
  key = config.to_json_best_effort(sort_keys=True)
  if os.path.exists(done):
    with open(done) as f:
      saved = json.load(f)
    if saved.get("config") == key:
      return saved["results"]
  t = trainer.Trainer(config, workdir)
  results = dict(t.run())
  if arm.validation:
    t.eval_split = arm.validation
    val = t.evaluate(t.host_state)   # per replica, ``eval/...`` on the validation split
    results["replicas"] = [
        {**rep, **{"val/" + k[len("eval/"):]: v for k, v in one.items()}}
        for rep, one in zip(results["replicas"], val)]
    results["summary"] = sweep_lib.summarize(sweep_lib.parse(config), results["replicas"])
  with open(done, "w") as f:
    json.dump({"config": key, "results": results}, f, indent=1, sort_keys=True)
  return results


def run_arm(arm: Arm, workdir: str, *, seeds: Iterable[int], select: str) -> Dict[str, Any]:
  """Trains every point x seed of ``arm`` as one sweep; returns ``{"replicas", "selected", ...}``.

  ``replicas``: one dict per run, point by point in grid order and the seeds of a point in order,
  with ``"overrides"`` (the grid point and ``seed``) and the run's results (``eval/...`` on the test
  split, ``val/...`` on the validation split). ``summary``: per grid point, mean, std and 95%
  t-interval over seeds of every metric (the sweep's). ``selected``: ``{"by", "point", "val",
  "test", "replicas"}``, the point with the best mean ``select`` metric over seeds (ties: the first
  in grid order), chosen by ``train.sweep.select``. ``sweeps``: the ``config.sweep`` of every sweep
  run (more than one only when the grid has structural keys, see the module docstring).
  """
  parse_select(select)
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError(f"arm {arm.name!r}: `seeds` is empty; give at least one seed.")
  if "seed" in arm.grid:
    raise ValueError(f"arm {arm.name!r}: `seed` is not a grid key; pass the seeds as `seeds=`.")
  sweepable, structural = split_grid(arm.config, arm.grid)
  fixed_points = [dict(zip(structural, vals))
                  for vals in itertools.product(*structural.values())] or [{}]
  by_point: Dict[Tuple, Dict[str, Any]] = {}
  specs = []
  for fixed in fixed_points:
    config = _sweep_config(arm, fixed, sweepable, seeds, select)
    specs.append(config.sweep)
    sub = os.path.join(workdir, _key_name(fixed)) if structural else workdir
    results = _one_sweep(arm, config, sub)
    for rep in results["replicas"]:
      overrides = {**fixed, **rep["overrides"]}
      by_point[_point_key(arm, overrides)] = {**rep, "overrides": overrides}
  # The replicas in grid order (the structural keys' sweeps interleaved back into it).
  keys = list(arm.grid)
  replicas = []
  for point in arm.points():
    for seed in seeds:
      rep = by_point[_point_key(arm, {**point, "seed": seed})]
      replicas.append({"overrides": {**{k: rep["overrides"][k] for k in keys}, "seed": seed},
                       **{k: v for k, v in rep.items() if k != "overrides"}})
  if len(specs) == 1 and not arm.validation:
    # One sweep, chosen by the trainer (config.sweep_select): its replica order is the grid order.
    if [r["overrides"] for r in replicas] != [r["overrides"] for r in results["replicas"]]:
      raise RuntimeError(f"arm {arm.name!r}: the sweep's replicas are not in grid order.")
    summary, chosen = results["summary"], results["selected"]
  else:
    everything = sweep_lib.Sweep(spec=" | ".join(specs), keys=(*keys, "seed"),
                                 points=tuple(r["overrides"] for r in replicas))
    summary = sweep_lib.summarize(everything, replicas)
    chosen = sweep_lib.select(summary, select)
  return {"replicas": replicas, "summary": summary, "selected": chosen, "sweeps": specs}


def _point_key(arm: Arm, overrides: Mapping[str, Any]) -> Tuple:
  return tuple(float(overrides[k]) for k in (*arm.grid, "seed"))


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


def points(result: Mapping[str, Any]) -> List[Dict[str, float]]:
  """The distinct grid points of ``result``'s replicas (their ``overrides`` without ``seed``), in
  the order they first appear (the grid order of :func:`run_arm`)."""
  seen: List[Dict[str, float]] = []
  for r in result["replicas"]:
    p = {k: v for k, v in r["overrides"].items() if k != "seed"}
    if p not in seen:
      seen.append(p)
  return seen


def at_edge(result: Mapping[str, Any],
            point: Optional[Mapping[str, float]] = None) -> Dict[str, Any]:
  """Where ``point`` (default: ``result``'s selected point) lies on each grid key that varies in
  ``result`` (two or more distinct values): ``{key: "lowest" | "highest" | None}``, ``None`` for a
  value inside the grid. A choice at an end (``any(at_edge(r).values())``) suggests the grid is
  too short: a value beyond that end might be chosen."""
  point = result["selected"]["point"] if point is None else point
  out: Dict[str, Any] = {}
  for key in point:
    vals = sorted({p[key] for p in points(result) if key in p})
    if len(vals) < 2:
      continue
    out[key] = ("lowest" if point[key] == vals[0] else
                "highest" if point[key] == vals[-1] else None)
  return out


def selected(result: Mapping[str, Any]) -> List[Dict[str, Any]]:
  """The replicas of the selected point."""
  return at_point(result, result["selected"]["point"])


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
