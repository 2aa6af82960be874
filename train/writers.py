"""Metric writers: JSON lines (always), TensorBoard events (when tensorboardX is installed)."""

from __future__ import annotations

import json
import math
import os
from typing import Dict, Optional


def _clean(v):
  v = float(v)
  return v if math.isfinite(v) else str(v)


class MetricWriter:
  """Appends ``{"step": s, **metrics}`` to ``workdir/metrics.jsonl``; mirrors to TensorBoard.

  Only the writing process (process 0 of a multi-host run) should create one with ``active=True``.
  """

  def __init__(self, workdir: str, *, active: bool = True, tensorboard: bool = True):
    self.active = active
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if active and tensorboard:
      try:
        from tensorboardX import SummaryWriter  # optional extra: labelwise[tensorboard]
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:
        self._tb = None

  def truncate_after(self, step: int) -> None:
    """Drops lines logged after ``step`` (a resumed run re-logs the steps it recomputes)."""
    if not self.active or not os.path.exists(self.path):
      return
    def keep(line):  # a line cut short by a killed process is dropped, not a crash
      try:
        return json.loads(line).get("step", 0) <= step
      except ValueError:
        return False
    with open(self.path) as f:
      lines = [l if l.endswith("\n") else l + "\n" for l in f if l.strip() and keep(l)]
    with open(self.path, "w") as f:
      f.writelines(lines)

  def write(self, step: int, metrics: Dict[str, float], *, replica: Optional[int] = None) -> None:
    """One line; a sweep's lines carry ``"replica": r`` (TensorBoard tags ``replica_<r>/<name>``)."""
    if not self.active:
      return
    head = {"step": int(step)} if replica is None else {"step": int(step), "replica": int(replica)}
    with open(self.path, "a") as f:
      f.write(json.dumps({**head, **{k: _clean(v) for k, v in metrics.items()}}) + "\n")
    if self._tb is not None:
      prefix = "" if replica is None else f"replica_{int(replica)}/"
      for k, v in metrics.items():
        self._tb.add_scalar(prefix + k, float(v), int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str):
  """All logged lines of ``workdir/metrics.jsonl`` as a list of dicts."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]


def run_summary(*, steps: int, start_step: int, batch_size: int, wall_seconds: float,
                workdir: str, results: Optional[Dict[str, float]] = None) -> str:
  """The one-line end-of-run summary: steps, wall time, training examples/s, the workdir and the
  headline eval metric. ``examples/s`` is ``(steps - start_step) * batch_size / wall_seconds``: the
  examples trained by this start over its whole wall time (compilation and evaluation included).
  """
  trained = max(int(steps) - int(start_step), 0)
  wall = max(float(wall_seconds), 1e-9)
  resumed = f" (resumed at step {start_step})" if start_step else ""
  parts = [f"done: step {steps}{resumed} in {wall:.1f} s wall",
           f"{trained * batch_size / wall:,.0f} examples/s"]
  if results and "eval/accuracy" in results:
    parts.append(f"eval/accuracy {float(results['eval/accuracy']):.4f}")
  parts.append(f"workdir {workdir}")
  return ", ".join(parts)
