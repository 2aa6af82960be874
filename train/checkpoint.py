"""Checkpoints of the whole train state with orbax, in ``workdir/checkpoints``.

The data position is the step (batches are a function of (seed, step)), so the state alone resumes a
run exactly. Restoring never destroys a readable checkpoint:

* A checkpoint whose tree (names, shapes, dtypes) differs from the run's state was written by
  another config: ``CheckpointMismatchError`` (a config mismatch, like ``train/workdir.py``'s
  fingerprint; nothing is renamed).
* A checkpoint that cannot be read at all (its metadata or its arrays are truncated or corrupted)
  is skipped with a warning and the previous one is used; once a readable one is found, the
  unreadable newer ones are renamed ``<step>.unreadable`` (kept for inspection, ignored by orbax;
  single-process runs only) so that the recomputed steps can be saved under their numbers. If no
  checkpoint is readable, ``UnreadableCheckpointsError`` lists them all and nothing is renamed.

A save that fails for lack of space raises ``DiskFullError`` naming the workdir; the partial
``<step>.orbax-checkpoint-tmp`` is removed and the last committed checkpoint is untouched, so the run
resumes from it once space is freed. SIGTERM/SIGINT during a save are deferred until it has committed
(``preemption.signals_deferred``).

A :class:`~labelwise.train.state.TrainState`'s ``hparams`` are not saved: they are a function of the
config (and of a sweep's overrides), and a restore takes them from the template.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import Any, List, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from labelwise.train import preemption
from labelwise.train.state import TrainState


def _saved_part(state: Any) -> Any:
  """What is written: a TrainState without its ``hparams`` (they come from the config)."""
  return state.replace(hparams={}) if isinstance(state, TrainState) else state


class CheckpointMismatchError(ValueError):
  """A readable checkpoint of another config (its tree differs from the run's state)."""


class UnreadableCheckpointsError(RuntimeError):
  """Every checkpoint in the workdir is unreadable."""


class DiskFullError(OSError):
  """A checkpoint save failed for lack of space."""


def is_disk_full(error: BaseException) -> bool:
  """True if ``error`` or any exception it was raised from is an ENOSPC (orbax/tensorstore wrap it)."""
  seen = set()
  e: Optional[BaseException] = error
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
      return True
    if "No space left on device" in str(e) or "ENOSPC" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def _leaves(tree) -> dict:
  """``{path: (shape, dtype)}`` of a state (``template``) or of orbax's metadata tree."""
  flat = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(tree, keep_empty_nodes=True))
  def empty(v):  # optax's EmptyState, None, {}, []: no array or number, nothing is stored
    return not (hasattr(v, "shape") or isinstance(v, (int, float, np.number)))
  return {"/".join(str(k) for k in path): (tuple(np.shape(v) if not hasattr(v, "shape")
                                               else v.shape),
                                         str(np.dtype(v.dtype)) if hasattr(v, "dtype")
                                         else str(np.asarray(v).dtype))
          for path, v in flat.items() if not empty(v)}


def tree_differences(saved, template, *, limit: int = 8) -> List[str]:
  """Lines describing how the saved tree differs from the template's (empty: they agree)."""
  a, b = _leaves(saved), _leaves(template)
  order = lambda k: (not k.startswith("params/"), k)  # noqa: E731 - the parameters first
  out = sorted([(k, "only in the checkpoint") for k in set(a) - set(b)]
               + [(k, "only in this config's state") for k in set(b) - set(a)]
               + [(k, f"shape/dtype {a[k][0]} {a[k][1]} in the checkpoint, {b[k][0]} {b[k][1]} "
                      f"here") for k in set(a) & set(b) if a[k] != b[k]],
               key=lambda kv: order(kv[0]))
  out = [f"{k}: {what}" for k, what in out]
  return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


class Checkpointer:
  def __init__(self, workdir: str, *, keep: int = 3):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)), create=True),
        item_handlers=ocp.StandardCheckpointHandler())  # so item_metadata reads a fresh workdir

  def save(self, step: int, state: Any, *, wait: bool = True) -> None:
    """Saves a host copy of ``state`` as checkpoint ``step`` (overwrites nothing)."""
    if step in self.manager.all_steps():
      return
    try:
      with preemption.signals_deferred():  # a checkpoint is written whole or not at all
        self.manager.save(int(step), args=ocp.args.StandardSave(_saved_part(state)))
        if wait:
          self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - re-raised; ENOSPC gets its own error
      if not is_disk_full(e):
        raise
      self._remove_partial(step)
      self.manager.reload()
      last = self.latest_step()
      raise DiskFullError(
          errno.ENOSPC,
          f"no space left on device: saving checkpoint {step} of the run in workdir "
          f"{self.workdir} failed ({type(e).__name__}: {e}). The last committed checkpoint "
          f"({'step ' + str(last) if last is not None else 'none'}) is intact; free space on "
          f"that disk and rerun the same command to resume.") from e

  def _remove_partial(self, step: int) -> None:
    """Removes what a failed save of ``step`` left (``<step>.orbax-checkpoint-tmp*``)."""
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if name.startswith(f"{step}.orbax-checkpoint-tmp"):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def restore(self, template: Any) -> Tuple[Optional[int], Any]:
    """Restores the newest readable checkpoint into the structure of ``template``.

    Returns ``(step, state)``, or ``(None, template)`` when there is no checkpoint. Raises
    ``CheckpointMismatchError`` for a readable checkpoint of another tree and
    ``UnreadableCheckpointsError`` when no checkpoint can be read.
    """
    full_template, template = template, _saved_part(template)
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), template)
    unreadable = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        meta = self.manager.item_metadata(step)
        saved = getattr(meta, "tree", meta)
        if saved is None:
          raise ValueError("no metadata")
      except Exception as e:  # noqa: BLE001 - metadata unreadable: the checkpoint is
        unreadable.append((step, e))
        self._warn(step, e)
        continue
      diff = tree_differences(saved, template)
      if diff:
        raise CheckpointMismatchError(
            f"checkpoint {step} in {self.directory} is readable but holds another model/method/"
            f"optimizer state than this config builds (a config mismatch, not corruption; nothing "
            f"was renamed):\n  " + "\n  ".join(diff)
            + "\nUse a new --workdir for this config, or restore the config of that run.")
      try:
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # noqa: BLE001 - the arrays cannot be read
        unreadable.append((step, e))
        self._warn(step, e)
        continue
      for bad, _ in unreadable:
        self._set_aside(bad)
      if isinstance(full_template, TrainState):
        state = state.replace(hparams=full_template.hparams)
      return step, state
    if unreadable:
      raise UnreadableCheckpointsError(
          f"no checkpoint in {self.directory} can be read; the run was not restarted from step 0 "
          f"(that would overwrite its metrics). Unreadable:\n  "
          + "\n  ".join(f"{s}: {type(e).__name__}: {str(e)[:200]}" for s, e in unreadable)
          + "\nMove them out of the way (or delete them) to restart this run from step 0, or "
            "use a new --workdir.")
    return None, full_template

  def _warn(self, step: int, e: BaseException) -> None:
    logging.warning("checkpoint %d in %s cannot be restored (%s: %s); trying the previous one",
                    step, self.directory, type(e).__name__, e)

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
