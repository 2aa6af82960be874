"""Checkpoints of the whole train state with orbax, in ``workdir/checkpoints``.

The data position is the step (batches are a function of (seed, step)), so the state alone resumes a
run exactly. A checkpoint that cannot be restored (truncated or corrupted on disk) is skipped with a
warning and the previous one is used; on a single-process run the unreadable one is renamed to
``<step>.unreadable`` (kept for inspection, ignored by orbax) so that the recomputed step can be saved
again under its own number.

A :class:`~labelwise.train.state.TrainState`'s ``hparams`` are not saved: they are a function of the
config (and of a sweep's overrides), and a restore takes them from the template.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from labelwise.train.state import TrainState


def _saved_part(state: Any) -> Any:
  """What is written: a TrainState without its ``hparams`` (they come from the config)."""
  return state.replace(hparams={}) if isinstance(state, TrainState) else state


class Checkpointer:
  def __init__(self, workdir: str, *, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)), create=True))

  def save(self, step: int, state: Any, *, wait: bool = True) -> None:
    """Saves a host copy of ``state`` as checkpoint ``step`` (overwrites nothing)."""
    if step in self.manager.all_steps():
      return
    self.manager.save(int(step), args=ocp.args.StandardSave(_saved_part(state)))
    if wait:
      self.manager.wait_until_finished()

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def restore(self, template: Any) -> Tuple[Optional[int], Any]:
    """Restores the newest readable checkpoint into the structure of ``template``.

    Returns ``(step, state)``, or ``(None, template)`` when there is no checkpoint.
    """
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), _saved_part(template))
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        if isinstance(template, TrainState):
          state = state.replace(hparams=template.hparams)
        return step, state
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back to the previous
        logging.warning("checkpoint %d in %s cannot be restored (%s: %s); trying the previous one",
                        step, self.directory, type(e).__name__, e)
        self._set_aside(step)
    return None, template

  def _set_aside(self, step: int) -> None:
    """Renames the unreadable checkpoint ``step`` to ``<step>.unreadable[.n]`` (one process only)."""
    if jax.process_count() > 1:
      return  # other hosts may still be reading it; leave it where it is
    src = os.path.join(self.directory, str(step))
    if not os.path.isdir(src):
      return
    dst, n = src + ".unreadable", 0
    while os.path.exists(dst):
      n += 1
      dst = f"{src}.unreadable.{n}"
    os.rename(src, dst)
    logging.warning("renamed the unreadable checkpoint to %s", dst)
    self.manager.reload()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
