"""The trainer's loop without a host sync per step: the non-finite guard (exact first step, last good
checkpoint kept, exact skip count), resume equals no interruption, host work only at its steps."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise.train import methods as methods_lib
from labelwise.train import step as step_lib
from labelwise.data import feed as feed_lib
from labelwise.train import trainer
from labelwise.train.methods.ce import CrossEntropy
from labelwise.train.writers import read_metrics
from tests.helpers import load_config

assert jax.device_count() == 4, "tests/conftest.py must set 4 fake CPU devices"


@methods_lib.register_method("_test_bad_step")
class BadStep(CrossEntropy):
  """Cross-entropy made non-finite at step index ``bad_step`` (set on the instance before ``run``).

  ``bad_input``: the inputs of that one batch are NaN (the update makes the parameters NaN);
  otherwise only that step's reported loss is NaN (the gradient and the state stay finite).
  ``crash_at``: ``host_update`` raises before that step (a crashed run).
  """
  bad_step, bad_input, crash_at = None, False, None

  def loss(self, ctx):
    if self.bad_step is None:
      return super().loss(ctx)
    bad = ctx.step == self.bad_step
    if self.bad_input:
      scale = jnp.where(bad, jnp.nan, 1.0)
      batch = {**ctx.batch, "input": ctx.batch["input"] * scale}
      ctx = dataclasses.replace(ctx, batch=batch)
      return super().loss(ctx)
    out = super().loss(ctx)
    return out._replace(loss=out.loss + jnp.where(bad, jnp.nan, 0.0))

  def needs_host_update(self, step):
    return step == self.crash_at

  def host_update(self, host):
    raise RuntimeError(f"crashed before step {host.step}")


@methods_lib.register_method("_test_host_every_7")
class HostEvery7(CrossEntropy):
  """Host work before steps 0, 7, 14, ...: counts its calls in a buffer the step logs."""

  def init_buffers(self, key, *, info):
    return {"calls": np.zeros((), np.float32)}

  def needs_host_update(self, step):
    return step % 7 == 0

  def host_update(self, host):
    self.seen = getattr(self, "seen", []) + [(host.step, int(host.state().step))]
    return {"calls": np.asarray(host.state().buffers["calls"] + 1, np.float32)}

  def loss(self, ctx):
    out = super().loss(ctx)
    return out._replace(metrics={**out.metrics, "host_calls": ctx.buffers["calls"]})


def _cfg(**kw):
  kw = {"total_steps": 30, "log_every": 10, "host_sync_every": 10, "checkpoint_every": 10,
        "batch_size": 32, "progress_bar": False, "tensorboard": False, **kw}
  c = load_config("digits_ce", "runlocal", **kw)
  c.optimizer.update(name="sgd", learning_rate=0.05, momentum=0.9)
  return c


def _checkpoints(workdir):
  d = os.path.join(str(workdir), "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _logged(workdir):
  return [{k: v for k, v in m.items() if k != "train/examples_per_sec"}
          for m in read_metrics(str(workdir))]


@pytest.fixture(autouse=True)
def small_index_blocks(monkeypatch):
  """The device feed places the indices of 4 steps at a time: the runs below cross many blocks,
  and a resumed run starts its first block mid-way (at step 15)."""
  monkeypatch.setattr(feed_lib, "BLOCK_STEPS", 4)


@pytest.fixture(autouse=True)
def traces(monkeypatch):
  """Counts Python traces of the train step (a trace = a compilation)."""
  count = [0]
  make = step_lib.make_train_step

  def counting(*args, **kwargs):
    fn = make(*args, **kwargs)
    def traced(state, batch):
      count[0] += 1
      return fn(state, batch)
    return traced

  monkeypatch.setattr(step_lib, "make_train_step", counting)
  return count


@pytest.mark.parametrize("bad_input,parallel", [(False, "jit"), (True, "pmap")])
def test_stop_names_the_first_non_finite_step_and_keeps_the_last_good_checkpoint(
    bad_input, parallel, tmp_path, traces):
  """Step 13 (index 12) goes non-finite; the host syncs only at 10, 20, 30. Found at the sync after
  step 20 with its exact number; the checkpoint of step 20 is not written, the one of 10 is kept.
  With only the loss NaN (``bad_input=False``) step 20 itself is finite: the guard remembers."""
  t = trainer.Trainer(_cfg(method="_test_bad_step", parallel=parallel, num_devices=2),
                      str(tmp_path))
  t.method.bad_step, t.method.bad_input = 12, bad_input
  with pytest.raises(trainer.NonFiniteLossError) as err:
    t.run()
  msg = str(err.value)
  assert "non-finite loss or gradient at step 13 (method '_test_bad_step'; loss nan" in msg, msg
  assert "after step 20" in msg and "last good checkpoint (step 10)" in msg, msg
  assert ("'loss': nan" in msg) == bad_input  # NaN parameters: step 20's loss is NaN too
  assert _checkpoints(tmp_path) == [10]
  assert [m["step"] for m in read_metrics(str(tmp_path))] == [10]
  assert traces[0] == 1  # one compilation for all steps


def test_skip_counts_exactly_and_a_resumed_run_logs_what_an_uninterrupted_one_logs(tmp_path, traces):
  """nan_policy=skip, NaN inputs at step 13, host syncs every 5 steps, logs every 10, checkpoints
  every 15. A run that crashes before step 18 resumes from 15 and logs exactly the records of the
  uninterrupted run, skip counts included."""
  cfg = lambda: _cfg(method="_test_bad_step", nan_policy="skip", host_sync_every=5,  # noqa: E731
                     checkpoint_every=15, parallel="shard_map", num_devices=2)
  full = trainer.Trainer(cfg(), str(tmp_path / "full"))
  full.method.bad_step, full.method.bad_input = 12, True
  full_results = full.run()
  logged = _logged(tmp_path / "full")
  train = {m["step"]: m for m in logged if "train/loss" in m}
  assert sorted(train) == [10, 20, 30]
  assert {s: m["train/skipped_steps"] for s, m in train.items()} == {10: 0.0, 20: 1.0, 30: 1.0}
  assert all(m["train/skipped"] == 0.0 for m in train.values())  # the log steps themselves
  assert int(full.host_state.skipped) == 1 and int(full.host_state.step) == 30
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(full.host_state.params))
  assert traces[0] == 1

  crashed = trainer.Trainer(cfg(), str(tmp_path / "split"))
  crashed.method.bad_step, crashed.method.bad_input, crashed.method.crash_at = 12, True, 17
  with pytest.raises(RuntimeError, match="crashed before step 17"):
    crashed.run()
  assert _checkpoints(tmp_path / "split") == [15]
  resumed = trainer.Trainer(cfg(), str(tmp_path / "split"))
  resumed.method.bad_step, resumed.method.bad_input = 12, True
  results = resumed.run()
  assert results == full_results
  assert _logged(tmp_path / "split") == logged
  for a, b in zip(jax.tree_util.tree_leaves(resumed.host_state),
                  jax.tree_util.tree_leaves(full.host_state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_host_update_runs_only_at_its_steps_and_metrics_are_fetched_only_to_log(
    tmp_path, monkeypatch, traces):
  fetched = []
  real = step_lib.Parallel.metrics_to_host
  monkeypatch.setattr(step_lib.Parallel, "metrics_to_host",
                      lambda self, m: fetched.append(1) or real(self, m))
  t = trainer.Trainer(_cfg(method="_test_host_every_7", total_steps=20, checkpoint_every=-1,
                           parallel="pmap"), str(tmp_path))
  results = t.run()
  assert t.method.seen == [(0, 0), (7, 7), (14, 14)]  # before steps 0, 7, 14, on their states
  host_calls = {m["step"]: m["train/host_calls"] for m in read_metrics(str(tmp_path))
                if "train/loss" in m}
  assert host_calls == {10: 2.0, 20: 3.0}  # the buffers it returned are the step's buffers
  assert len(fetched) == 2 and results["step"] == 20  # metrics of the 2 log steps only
  assert traces[0] == 1


def test_the_state_is_fetched_only_at_the_end_without_checkpoints_or_evals(tmp_path, monkeypatch):
  """``checkpoint_every=-1`` and ``eval_every=-1`` (never) fetch nothing between syncs: the train
  state once, at the end; the non-finite guard at every host sync (every 10 steps)."""
  fetched = []
  real = step_lib.Parallel.get_state
  monkeypatch.setattr(step_lib.Parallel, "get_state",
                      lambda self, x: fetched.append(type(x).__name__) or real(self, x))
  t = trainer.Trainer(_cfg(total_steps=20, checkpoint_every=-1, eval_every=-1, log_every=20),
                      str(tmp_path))
  t.run()
  assert fetched.count("TrainState") == 1, fetched
  assert fetched.count("ArrayImpl") == 2, fetched  # the guard's step at the syncs 10 and 20
  assert fetched.count("dict") == 1, fetched  # step 20's metrics, to log


def test_host_sync_every_must_be_non_negative(tmp_path):
  with pytest.raises(ValueError, match="`host_sync_every` must be >= 0"):
    trainer.Trainer(_cfg(host_sync_every=-1), str(tmp_path))
