"""train/checkpoint.py on its own: save/restore, keep, no overwrite, unreadable checkpoints."""

import logging
import os

import numpy as np
import pytest

from labelwise.train.checkpoint import Checkpointer


def _state(v):
  return {"w": np.full((3,), v, np.float32), "n": np.asarray(int(v), np.int32)}


def _break(checkpoint_dir):
  """Deletes the array chunks of a checkpoint (orbax's OCDBT store keeps them in ``d/``)."""
  removed = [os.path.join(root, f) for root, _, files in os.walk(checkpoint_dir)
             if os.path.basename(root) == "d" for f in files]
  for path in removed:
    os.remove(path)
  assert removed, f"no array chunks under {checkpoint_dir}"


def _restored(ckpt, template=None):
  step, state = ckpt.restore(_state(0) if template is None else template)
  return step, (None if state is None else {k: np.asarray(v) for k, v in state.items()})


def test_save_restore_keep_and_no_overwrite(tmp_path):
  ckpt = Checkpointer(str(tmp_path), keep=2)
  template = _state(0)
  assert ckpt.latest_step() is None
  assert ckpt.restore(template) == (None, template)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step))
  ckpt.save(3, _state(99), wait=False)  # step 3 exists: nothing is overwritten
  ckpt.close()
  again = Checkpointer(str(tmp_path), keep=2)
  assert again.latest_step() == 3
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [2, 3]
  step, state = _restored(again)
  assert step == 3
  np.testing.assert_array_equal(state["w"], _state(3)["w"])
  assert state["w"].dtype == np.float32 and state["n"].dtype == np.int32 and int(state["n"]) == 3
  again.close()


def test_keep_is_at_least_one_and_keyword_only(tmp_path):
  with pytest.raises(TypeError):
    Checkpointer(str(tmp_path), 3)
  ckpt = Checkpointer(str(tmp_path), keep=0)
  ckpt.save(1, _state(1))
  ckpt.save(2, _state(2))
  assert _restored(ckpt)[0] == 2
  ckpt.close()


def test_unreadable_newest_checkpoint_falls_back_and_is_set_aside(tmp_path, caplog):
  ckpt = Checkpointer(str(tmp_path), keep=5)
  for step in (1, 2):
    ckpt.save(step, _state(step))
  _break(tmp_path / "checkpoints" / "2")
  with caplog.at_level(logging.WARNING):
    step, state = _restored(ckpt)
  assert step == 1 and int(state["n"]) == 1
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert any("checkpoint 2 in" in w and "cannot be restored" in w for w in warnings), warnings
  assert (tmp_path / "checkpoints" / "2.unreadable").is_dir()
  # The recomputed step is saved again under its own number; broken again, it gets a new name.
  ckpt.save(2, _state(2))
  assert _restored(ckpt)[0] == 2
  _break(tmp_path / "checkpoints" / "2")
  assert _restored(ckpt)[0] == 1
  assert (tmp_path / "checkpoints" / "2.unreadable.1").is_dir()
  # Nothing readable at all: an error naming them (never a silent restart from step 0).
  _break(tmp_path / "checkpoints" / "1")
  from labelwise.train.checkpoint import UnreadableCheckpointsError
  with pytest.raises(UnreadableCheckpointsError, match=r"no checkpoint in .* can be read"):
    ckpt.restore(_state(7))
  ckpt.close()


def test_is_disk_full_follows_the_cause_chain():
  import errno
  from labelwise.train.checkpoint import is_disk_full
  full = OSError(errno.ENOSPC, "No space")
  assert is_disk_full(full)
  assert not is_disk_full(OSError(errno.EACCES, "denied")) and not is_disk_full(ValueError("x"))
  assert is_disk_full(RuntimeError("tensorstore: No space left on device"))
  try:
    try:
      raise full
    except OSError as e:
      raise RuntimeError("save failed") from e
  except RuntimeError as wrapped:
    assert is_disk_full(wrapped)
  loop = RuntimeError("a")
  loop.__context__ = RuntimeError("b")
  loop.__context__.__context__ = loop  # a cycle ends the walk
  assert not is_disk_full(loop)


def test_tree_differences_lists_what_differs_parameters_first():
  from labelwise.train.checkpoint import tree_differences
  saved = {"params": {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)},
           "opt": {"mu": np.zeros(3, np.float32)}, "step": np.zeros((), np.int32)}
  assert tree_differences(saved, saved) == []
  other = {"params": {"w": np.zeros((2, 4), np.float32)}, "opt": {"mu": np.zeros(3, np.float32)},
           "step": np.zeros((), np.int64), "extra": np.zeros(1, np.float32)}
  assert tree_differences(saved, other) == [
      "params/b: only in the checkpoint",
      "params/w: shape/dtype (2, 3) float32 in the checkpoint, (2, 4) float32 here",
      "extra: only in this config's state",
      "step: shape/dtype () int32 in the checkpoint, () int64 here"]
  assert tree_differences(saved, other, limit=2) == [
      "params/b: only in the checkpoint",
      "params/w: shape/dtype (2, 3) float32 in the checkpoint, (2, 4) float32 here",
      "... and 2 more"]
  assert tree_differences({"a": np.zeros(1), "empty": {}, "none": None},
                          {"a": np.zeros(1)}) == []  # nothing is stored for empty nodes
