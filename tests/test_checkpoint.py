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


class _JaxWith:
  """``jax`` as train/checkpoint.py sees it, with some functions replaced (``process_index``,
  ``process_count``): orbax itself keeps the real ones, so it still saves and reads one process."""

  def __init__(self, **replaced):
    self.__dict__.update(replaced)

  def __getattr__(self, name):
    import jax
    return getattr(jax, name)


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


# --- a full disk on save ------------------------------------------------------------------------
def _fail_save_of(ckpt, monkeypatch, step, error, partials=()):
  """Makes ``ckpt``'s save of ``step`` write the directories ``partials`` (what an interrupted
  orbax save leaves) and then raise ``error``; other steps save normally."""
  real = ckpt.manager.save

  def save(s, *args, **kwargs):
    if int(s) == step:
      for name in partials:
        os.makedirs(os.path.join(ckpt.directory, name), exist_ok=True)
        with open(os.path.join(ckpt.directory, name, "partial"), "w") as f:
          f.write("x")
      raise error
    return real(s, *args, **kwargs)
  monkeypatch.setattr(ckpt.manager, "save", save)


def _enospc_wrapped():
  """An ENOSPC as orbax/tensorstore raise it: wrapped in another error."""
  import errno
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as e:
      raise RuntimeError("tensorstore write failed") from e
  except RuntimeError as wrapped:
    return wrapped


def test_disk_full_on_save_removes_its_partial_and_names_the_last_checkpoint(tmp_path, monkeypatch):
  """A save that fails with ENOSPC (wrapped, as orbax raises it) becomes a DiskFullError (an OSError
  with errno ENOSPC, raised from the original) whose message names the step, the workdir, the cause
  and the last committed checkpoint; that save's partial directories are removed, those of other
  steps and the committed checkpoints are left alone, and the run restores the last committed one."""
  import errno
  from labelwise.train.checkpoint import DiskFullError
  ckpt = Checkpointer(str(tmp_path), keep=5)
  for step in (1, 2):
    ckpt.save(step, _state(step))
  error = _enospc_wrapped()
  _fail_save_of(ckpt, monkeypatch, 3, error, partials=(
      "3.orbax-checkpoint-tmp-0", "3.orbax-checkpoint-tmp-17", "30.orbax-checkpoint-tmp-0"))
  with pytest.raises(DiskFullError) as info:
    ckpt.save(3, _state(3))
  assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
  assert info.value.__cause__ is error
  assert str(info.value) == (
      f"[Errno {errno.ENOSPC}] no space left on device: saving checkpoint 3 of the run in workdir "
      f"{tmp_path} failed (RuntimeError: tensorstore write failed). The last committed checkpoint "
      "(step 2) is intact; free space on that disk and rerun the same command to resume.")
  # only step 3's partials are gone ("30..." is another step's)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2", "30.orbax-checkpoint-tmp-0"]
  assert ckpt.latest_step() == 2
  step, state = _restored(ckpt)
  assert step == 2 and int(state["n"]) == 2
  monkeypatch.undo()  # space freed: the same step saves
  ckpt.save(3, _state(3))
  assert _restored(ckpt)[0] == 3
  ckpt.close()


def test_disk_full_before_any_checkpoint_says_none_and_other_errors_pass_through(
    tmp_path, monkeypatch):
  from labelwise.train.checkpoint import DiskFullError
  ckpt = Checkpointer(str(tmp_path))
  _fail_save_of(ckpt, monkeypatch, 1, RuntimeError("write: No space left on device"))
  with pytest.raises(DiskFullError, match=r"The last committed checkpoint \(none\) is intact"):
    ckpt.save(1, _state(1))
  # Any other error is re-raised as it is, and what it left is not touched (it is not ours to judge).
  boom = ValueError("not a disk problem")
  _fail_save_of(ckpt, monkeypatch, 2, boom, partials=("2.orbax-checkpoint-tmp-0",))
  with pytest.raises(ValueError) as info:
    ckpt.save(2, _state(2))
  assert info.value is boom and not isinstance(info.value, DiskFullError)
  assert (tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-0").is_dir()
  ckpt.close()


def test_disk_full_cleanup_is_best_effort_and_on_process_zero_only(tmp_path, monkeypatch):
  """A partial that cannot be removed (rmtree refuses a symbolic link) does not hide the
  DiskFullError; on a process other than 0 (a multi-host run) nothing is removed: process 0 owns the
  checkpoint directory."""
  from labelwise.train import checkpoint as checkpoint_lib
  from labelwise.train.checkpoint import DiskFullError
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1))
  os.makedirs(tmp_path / "elsewhere")
  os.symlink(tmp_path / "elsewhere", tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-0")
  _fail_save_of(ckpt, monkeypatch, 2, _enospc_wrapped(), partials=("2.orbax-checkpoint-tmp-1",))
  with pytest.raises(DiskFullError, match=r"checkpoint \(step 1\) is intact"):
    ckpt.save(2, _state(2))
  assert not (tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-1").exists()
  assert (tmp_path / "elsewhere").is_dir()  # the link's target is never followed
  os.remove(tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-0")
  _fail_save_of(ckpt, monkeypatch, 2, _enospc_wrapped(), partials=("2.orbax-checkpoint-tmp-1",))
  monkeypatch.setattr(checkpoint_lib, "jax", _JaxWith(process_index=lambda: 1))
  with pytest.raises(DiskFullError):
    ckpt.save(2, _state(2))
  assert (tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-1").is_dir()
  monkeypatch.undo()
  ckpt.close()


# --- restore: mismatches, unreadable checkpoints, hparams -----------------------------------------
def test_restore_of_another_tree_is_a_mismatch_and_renames_nothing(tmp_path):
  from labelwise.train.checkpoint import CheckpointMismatchError
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(4, _state(4))
  other = {"w": np.zeros((5,), np.float32), "n": np.asarray(0, np.int32)}
  with pytest.raises(CheckpointMismatchError) as info:
    ckpt.restore(other)
  assert str(info.value) == (
      f"checkpoint 4 in {tmp_path / 'checkpoints'} is readable but holds another model/method/"
      "optimizer state than this config builds (a config mismatch, not corruption; nothing was "
      "renamed):\n  w: shape/dtype (3,) float32 in the checkpoint, (5,) float32 here\nUse a new "
      "--workdir for this config, or restore the config of that run.")
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]
  assert _restored(ckpt)[0] == 4  # still there, still readable with the right template
  ckpt.close()


def test_unreadable_errors_are_listed_cut_at_200_characters(tmp_path, monkeypatch):
  from labelwise.train.checkpoint import UnreadableCheckpointsError
  ckpt = Checkpointer(str(tmp_path))
  for step in (1, 2):
    ckpt.save(step, _state(step))

  def unreadable(step):
    raise ValueError(f"{step}" * 300)
  monkeypatch.setattr(ckpt.manager, "item_metadata", unreadable)
  with pytest.raises(UnreadableCheckpointsError) as info:
    ckpt.restore(_state(0))
  assert str(info.value) == (
      f"no checkpoint in {tmp_path / 'checkpoints'} can be read; the run was not restarted from "
      "step 0 (that would overwrite its metrics). Unreadable:\n  2: ValueError: " + "2" * 200
      + "\n  1: ValueError: " + "1" * 200 + "\nMove them out of the way (or delete them) to "
      "restart this run from step 0, or use a new --workdir.")
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]  # nothing renamed
  ckpt.close()


def test_with_several_processes_an_unreadable_checkpoint_stays_where_it_is(tmp_path, monkeypatch):
  """Renaming is for single-process runs: another host may still be reading the directory."""
  from labelwise.train import checkpoint as checkpoint_lib
  ckpt = Checkpointer(str(tmp_path), keep=5)
  for step in (1, 2):
    ckpt.save(step, _state(step))
  _break(tmp_path / "checkpoints" / "2")
  monkeypatch.setattr(checkpoint_lib, "jax", _JaxWith(process_count=lambda: 2))
  assert _restored(ckpt)[0] == 1
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
  monkeypatch.undo()
  assert _restored(ckpt)[0] == 1
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2.unreadable"]
  ckpt.close()


def test_train_state_hparams_are_not_saved_and_come_from_the_template(tmp_path):
  from labelwise.train.state import TrainState
  def state(v, lr):
    return TrainState(step=np.asarray(v, np.int32), params={"w": np.full((2,), v, np.float32)},
                      opt_state={}, model_state={}, buffers={}, rng=np.zeros((2,), np.uint32),
                      hparams={"optimizer": {"learning_rate": np.asarray(lr, np.float32)}})
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(3, state(3, 0.1))
  saved = ckpt.manager.item_metadata(3)
  saved = getattr(saved, "tree", saved)
  assert not saved.get("hparams")  # nothing stored for them
  step, restored = ckpt.restore(state(0, 0.5))
  assert step == 3 and int(restored.step) == 3
  np.testing.assert_array_equal(restored.params["w"], [3.0, 3.0])
  assert float(restored.hparams["optimizer"]["learning_rate"]) == 0.5  # the template's
  ckpt.close()


def test_keep_bounds_what_stays_on_disk_and_a_save_commits_before_returning(tmp_path):
  for keep, kept in ((0, [3]), (1, [3]), (2, [2, 3])):
    ckpt = Checkpointer(str(tmp_path / str(keep)), keep=keep)
    for step in (1, 2, 3):
      ckpt.save(step, _state(step))
      # wait=True (the default): committed when save returns, no temporary directory left
      assert str(step) in os.listdir(ckpt.directory)
      assert not [d for d in os.listdir(ckpt.directory) if "tmp" in d]
    ckpt.close()
    assert sorted(int(d) for d in os.listdir(tmp_path / str(keep) / "checkpoints")) == kept


def test_tree_differences_lists_eight_by_default():
  from labelwise.train.checkpoint import tree_differences
  saved = {f"p{i}": np.zeros(1, np.float32) for i in range(10)}
  lines = tree_differences(saved, {})
  assert lines == [f"p{i}: only in the checkpoint" for i in range(8)] + ["... and 2 more"]
  assert tree_differences(saved, {}, limit=10) == [f"p{i}: only in the checkpoint"
                                                   for i in range(10)]


def test_arrays_that_cannot_be_read_fall_back_to_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                          caplog):
  """Readable metadata but unreadable arrays (a restore that raises): warned, skipped, set aside
  once an older one restores; the loop goes on to the older one (not stop at the first failure)."""
  ckpt = Checkpointer(str(tmp_path), keep=5)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step))
  real = ckpt.manager.restore

  def restore(step, *args, **kwargs):
    if int(step) in (2, 3):
      raise OSError(f"truncated chunk of checkpoint {step}")
    return real(step, *args, **kwargs)
  monkeypatch.setattr(ckpt.manager, "restore", restore)
  with caplog.at_level(logging.WARNING):
    step, state = _restored(ckpt)
  assert step == 1 and int(state["n"]) == 1
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  for s in (3, 2):
    assert any(f"checkpoint {s} in" in w and f"truncated chunk of checkpoint {s}" in w
               for w in warnings), warnings
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2.unreadable", "3.unreadable"]
  ckpt.close()


def test_the_checkpoint_directory_exists_from_the_start(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "run"))
  assert ckpt.directory == str(tmp_path / "run" / "checkpoints")
  assert os.listdir(ckpt.directory) == []
  ckpt.close()


def test_tree_differences_compares_only_what_is_stored_as_arrays_and_numbers(tmp_path):
  """Numbers count as () arrays of their dtype; leaves that are neither arrays nor numbers (a
  string, EmptyState, None, {}) are not stored as arrays and are not compared; orbax's metadata
  (ArrayMetadata / ScalarMetadata) compares by its shape and dtype."""
  import optax
  from labelwise.train.checkpoint import tree_differences
  tree = {"a": np.zeros((2, 3), np.float32), "count": 3, "rate": 0.5, "scalar": np.float32(1.0)}
  assert tree_differences(tree, dict(tree)) == []
  assert tree_differences({**tree, "name": "a string", "opt": optax.EmptyState()}, tree) == []
  assert tree_differences(tree, {**tree, "count": np.int32(3)}) == [
      "count: shape/dtype () int64 in the checkpoint, () int32 here"]
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(1, tree)
  meta = ckpt.manager.item_metadata(1)
  meta = getattr(meta, "tree", meta)
  assert tree_differences(meta, tree) == []
  assert tree_differences(meta, {**tree, "a": np.zeros((3, 2), np.float32)}) == [
      "a: shape/dtype (2, 3) float32 in the checkpoint, (3, 2) float32 here"]
  ckpt.close()
