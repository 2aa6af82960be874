"""The trainer side of a sweep: the replicas of one run, their stacked state, batches and results.

A :class:`Replicas` holds what differs between the replicas of a sweep (:mod:`labelwise.train.sweep`):
one resolved config and one method object per replica (each validates its own option values and
builds its own buffers, e.g. SimLoss's similarity for its ``reduction_factor``), and the seeds. The
compiled step uses replica 0's method for everything static (the options that cannot vary are equal
in all replicas); the values that vary reach it as the state's traced ``hparams``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import numpy as np

from labelwise.train import methods as methods_lib
from labelwise.train import sweep as sweep_lib


def stack(trees: Sequence[Any]) -> Any:
  """Host pytrees -> one pytree with a leading replica axis (numpy)."""
  return jax.tree_util.tree_map(lambda *x: np.stack([np.asarray(v) for v in x]), *trees)


def take(tree: Any, r: int) -> Any:
  """Replica ``r`` of a stacked host pytree."""
  return jax.tree_util.tree_map(lambda x: np.asarray(x)[r], tree)


class Replicas:
  """The replicas of ``config.sweep`` (or the single run when the config has no sweep)."""

  def __init__(self, config, sweep: Optional[sweep_lib.Sweep]):
    self.sweep = sweep
    self.configs = sweep.replica_configs(config) if sweep is not None else [config]
    self.methods = [methods_lib.get_method(c) for c in self.configs]
    self.seeds = [int(c.seed) for c in self.configs]

  @property
  def active(self) -> bool:
    """True for a sweep (a leading replica axis), False for a single run."""
    return self.sweep is not None

  @property
  def count(self) -> int:
    return len(self.configs)

  @property
  def decay_always(self) -> bool:
    """A sweep over ``optimizer.weight_decay`` keeps the decay transform in every replica."""
    return self.active and self.sweep.varies("optimizer.weight_decay")

  def overrides(self, r: int) -> Dict[str, Any]:
    return dict(self.sweep.points[r]) if self.active else {}

  def initial_state(self, make_state: Callable[[Any, Any], Any]):
    """``make_state(config, method)`` per replica, stacked when this is a sweep."""
    states = [make_state(c, m) for c, m in zip(self.configs, self.methods)]
    return stack(states) if self.active else states[0]

  def batch(self, one: Callable[[int, int], Dict[str, np.ndarray]], step: int):
    """``one(step, seed)`` of every replica stacked ``[R, B, ...]`` (single run: as is)."""
    if not self.active:
      return one(step, self.seeds[0])
    return stack([one(step, s) for s in self.seeds])

  def results(self, per_replica: List[Dict[str, Any]], sweep_select: str = "") -> Dict[str, Any]:
    """``results.json`` of a sweep: replicas (with their overrides), summary, selected."""
    replicas = [{"overrides": self.overrides(r), **res} for r, res in enumerate(per_replica)]
    summary = sweep_lib.summarize(self.sweep, replicas)
    out = {"sweep": self.sweep.spec, "step": replicas[0].get("step"),
           "replicas": replicas, "summary": summary}
    if sweep_select:
      out["selected"] = sweep_lib.select(summary, sweep_select)
    return out
