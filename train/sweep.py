"""Sweeps: many runs of one config as replicas of one compiled program (``config.sweep``).

``config.sweep = "seed=0,1,2;simloss.reduction_factor=0.0,0.1,0.3"`` is the product of its
``;``-separated groups (here 9 runs). Every combination is a replica: the train state carries a
leading replica axis and the per-device step is ``jax.vmap``-ed over it, so only values that the step
reads as traced arrays can vary:

* ``seed``: initialisation, data order (replica r's batches are the single run's with its seed),
  step keys (dropout, Gumbel noise) and everything a method draws from it on the host;
* ``optimizer.learning_rate`` and ``optimizer.weight_decay``;
* every numeric option of the config's method (``<method>.<option>``, e.g. ``fierce.lambda``,
  ``label_smoothing.alpha``, ``fierce.label_smoothing``) except the method's ``static_options``.

Anything else changes shapes or structure (model, dataset, batch size, method, strings) and is
refused by :func:`parse` before anything runs, naming the key and why.

This module is the host side: parsing and checking a sweep, the replicas' configs, and the
summaries of ``results.json`` (mean, std and 95% t-interval over seeds; the validation-selected
point of ``config.sweep_select``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from labelwise.train.methods.base import is_numeric

OPTIMIZER_KEYS = ("optimizer.learning_rate", "optimizer.weight_decay")

# Why common keys cannot vary within one compiled program (anything else gets a generic reason).
_STRUCTURAL = {
    "dataset": "the dataset fixes the data, input shapes and number of classes",
    "data": "the data options fix the splits, labels and input pipeline",
    "model": "the model fixes the parameter shapes",
    "model_kwargs": "the model options fix the parameter shapes",
    "method": "the method fixes the objective's program",
    "batch_size": "the batch size is an array shape",
    "eval_batch_size": "the eval batch size is an array shape",
    "grad_accum_steps": "the micro-batch count is an array shape",
    "total_steps": "all replicas run the same loop (and the schedules' length)",
    "parallel": "one program runs one parallel mode",
    "num_devices": "one program runs on one set of devices",
    "dtype": "the compute dtype changes the program",
    "nan_policy": "the NaN policy changes the program",
    "optimizer": "this optimizer option changes the optimizer's structure or the schedule's shape",
    "sweep": "a sweep cannot sweep itself",
}


class SweepError(ValueError):
  """A ``config.sweep`` that cannot run as one compiled program (names the key and why)."""


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A parsed sweep: ``keys`` (dotted), and ``points``, one ``{key: value}`` per replica.

  Replicas are the product of the groups in the order given, the last group varying fastest.
  """
  spec: str
  keys: Tuple[str, ...]
  points: Tuple[Mapping[str, Any], ...]

  @property
  def num_replicas(self) -> int:
    return len(self.points)

  @property
  def point_keys(self) -> Tuple[str, ...]:
    """The varied keys other than ``seed`` (a summary point is one value of each)."""
    return tuple(k for k in self.keys if k != "seed")

  def varies(self, key: str) -> bool:
    return key in self.keys

  def replica_configs(self, config) -> List[Any]:
    """One config per replica: ``config`` with the replica's overrides (and no sweep)."""
    out = []
    for point in self.points:
      c = config.copy_and_resolve_references()
      with c.unlocked():
        c.sweep = ""
        c.sweep_select = ""
      for key, value in point.items():
        set_dotted(c, key, value)
      out.append(c)
    return out


def set_dotted(config, key: str, value) -> None:
  """``config[a][b] = value`` for ``key = "a.b"``; the method's dict is created when missing."""
  node, parts = config, key.split(".")
  for p in parts[:-1]:
    if p not in node:
      with node.unlocked():
        node[p] = {}
    node = node[p]
  with node.unlocked():
    node[parts[-1]] = value


def _parse_value(text: str, key: str):
  text = text.strip()
  try:
    return int(text)
  except ValueError:
    pass
  try:
    return float(text)
  except ValueError:
    raise SweepError(f"config.sweep: `{key}` value {text!r} is not a number; only numeric "
                     "values can vary within one compiled program (strings and booleans select "
                     "code paths).") from None


def _groups(spec: str) -> List[Tuple[str, List[Any]]]:
  groups, seen = [], set()
  for part in spec.split(";"):
    part = part.strip()
    if not part:
      continue
    if "=" not in part:
      raise SweepError(f"config.sweep: group {part!r} must read `key=v1,v2,...` (groups are "
                       "separated by `;`).")
    key, values = (s.strip() for s in part.split("=", 1))
    if key in seen:
      raise SweepError(f"config.sweep: `{key}` appears twice; give all its values in one group.")
    seen.add(key)
    vals = [v for v in values.split(",") if v.strip()]
    if not vals:
      raise SweepError(f"config.sweep: `{key}` has no values.")
    parsed = [_parse_value(v, key) for v in vals]
    if len(set(parsed)) != len(parsed):
      raise SweepError(f"config.sweep: `{key}` repeats a value ({values}).")
    groups.append((key, parsed))
  return groups


def check_key(config, key: str, values: Sequence[Any], method_cls) -> List[Any]:
  """Raises SweepError unless ``key`` can vary within one program; returns the typed values."""
  head = key.split(".", 1)[0]
  if key == "seed":
    if not all(isinstance(v, int) for v in values):
      raise SweepError(f"config.sweep: `seed` values must be integers, got {list(values)}.")
    return list(values)
  if key in OPTIMIZER_KEYS:
    return [float(v) for v in values]
  if head == config.method and "." in key:
    option = key.split(".", 1)[1]
    defaults = method_cls.defaults
    if option not in defaults:
      raise SweepError(f"config.sweep: `{key}`: method {config.method!r} has no option "
                       f"{option!r}; its options: {sorted(defaults)}.")
    if option in method_cls.static_options:
      raise SweepError(f"config.sweep: `{key}` cannot vary within one compiled program: "
                       f"{method_cls.static_options[option]}.")
    default = defaults[option]
    if not is_numeric(default):
      raise SweepError(f"config.sweep: `{key}` is a {type(default).__name__} option: it selects "
                       "a code path, which cannot vary within one compiled program.")
    if isinstance(default, int):
      if not all(isinstance(v, int) for v in values):
        raise SweepError(f"config.sweep: `{key}` is an integer option, got {list(values)}.")
      return list(values)
    return [float(v) for v in values]
  if head in _STRUCTURAL:
    why = _STRUCTURAL[head]
  elif "." in key and head in _method_names():
    why = f"it is an option of method {head!r}, but the config trains {config.method!r}"
  else:
    why = "it changes the shapes or structure of the program"
  allowed = ["seed", *OPTIMIZER_KEYS,
             *(f"{config.method}.{o}" for o in method_cls.hparam_names())]
  raise SweepError(f"config.sweep: `{key}` cannot vary within one compiled program: {why}. "
                   f"Keys that can: {allowed}.")


def _method_names():
  from labelwise.train import methods as methods_lib
  return set(methods_lib.METHODS)


def parse(config) -> Optional[Sweep]:
  """The sweep of ``config`` (None when ``config.sweep`` is empty); checks every key."""
  spec = (config.get("sweep") or "").strip()
  if not spec:
    if config.get("sweep_select"):
      raise SweepError("config.sweep_select needs a sweep: set config.sweep.")
    return None
  from labelwise.train import methods as methods_lib
  if config.method not in methods_lib.METHODS:
    raise SweepError(f"config.sweep: unknown method {config.method!r}.")
  method_cls = methods_lib.METHODS[config.method]
  groups = [(k, check_key(config, k, v, method_cls)) for k, v in _groups(spec)]
  if not groups:
    raise SweepError(f"config.sweep={spec!r} has no `key=values` group.")
  keys = tuple(k for k, _ in groups)
  points = tuple(dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in groups)))
  if config.get("sweep_select"):
    parse_select(config.sweep_select)
  return Sweep(spec=spec, keys=keys, points=points)


# --- results -------------------------------------------------------------------------------------


def parse_select(select: str) -> Tuple[str, str]:
  """``"val/accuracy:max"`` -> ``("val/accuracy", "max")``; the metric must be a ``val/`` one."""
  metric, _, mode = select.rpartition(":")
  if not metric or mode not in ("max", "min"):
    raise SweepError(f"config.sweep_select must read `val/<metric>:max` or `val/<metric>:min`, "
                     f"got {select!r}.")
  if not metric.startswith("val/"):
    raise SweepError(f"config.sweep_select: {metric!r} is not a validation metric (`val/...`): "
                     "the test split never takes part in a choice.")
  return metric, mode


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


def _metric_keys(replicas: Sequence[Mapping[str, Any]]) -> List[str]:
  keys = set()
  for r in replicas:
    keys.update(k for k, v in r.items() if k not in ("overrides", "step", "replica")
                and isinstance(v, (int, float)) and not isinstance(v, bool))
  return sorted(keys)


def summarize(sweep: Sweep, replicas: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
  """One entry per point of the non-seed keys: ``{"point", "replicas", "metrics": {k: stats}}``.

  The statistics run over the point's replicas (its seeds); non-finite values stay in (a diverged
  seed shows as a NaN mean rather than disappearing).
  """
  groups: Dict[Tuple, List[int]] = {}
  for i, point in enumerate(sweep.points):
    groups.setdefault(tuple(point[k] for k in sweep.point_keys), []).append(i)
  keys = _metric_keys(replicas)
  out = []
  for values, members in groups.items():
    metrics = {k: stats([float(replicas[i][k]) for i in members])
               for k in keys if all(k in replicas[i] for i in members)}
    out.append({"point": dict(zip(sweep.point_keys, values)), "replicas": members,
                "metrics": metrics})
  return out


def select(summary: Sequence[Mapping[str, Any]], sweep_select: str) -> Dict[str, Any]:
  """The point with the best mean validation metric and its validation and test statistics.

  Only ``val/`` metrics take part in the choice (ties: the first point); the reported test metrics
  (``eval/``) are those of the chosen point over its seeds.
  """
  metric, mode = parse_select(sweep_select)
  scored = [(i, s["metrics"][metric]["mean"]) for i, s in enumerate(summary)
            if metric in s["metrics"]]
  if not scored:
    known = sorted({k for s in summary for k in s["metrics"] if k.startswith("val/")})
    raise SweepError(f"config.sweep_select: no replica reported {metric!r}; validation metrics: "
                     f"{known}.")
  finite = [(i, v) for i, v in scored if math.isfinite(v)] or scored
  sign = 1.0 if mode == "max" else -1.0
  best = max(finite, key=lambda iv: (sign * iv[1], -iv[0]))[0]
  chosen = summary[best]
  return {"by": sweep_select, "point": chosen["point"], "replicas": chosen["replicas"],
          "val": {k: v for k, v in chosen["metrics"].items() if k.startswith("val/")},
          "test": {k: v for k, v in chosen["metrics"].items() if k.startswith("eval/")}}
