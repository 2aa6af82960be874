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


# --- several steps per compiled call (config.steps_per_call) -------------------------------------
def _calls(monkeypatch):
  """Records ``(first step, steps)`` of every compiled call the trainer makes."""
  calls = []
  real = trainer.Trainer.apply_train_step

  def spy(self, dstate, guard, batch):
    calls.append((batch.step, batch.steps) if isinstance(batch, feed_lib.Indices) else (None, 1))
    return real(self, dstate, guard, batch)

  monkeypatch.setattr(trainer.Trainer, "apply_train_step", spy)
  return calls


def _leaves(t):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(t.host_state)]


def test_repeat_steps_is_n_applications_of_the_step():
  """A toy step (the carry counts and sums its block rows): ``n`` steps in one call are ``n``
  calls of the step, for every ``n`` through one compiled program; the metrics are the last
  step's."""
  def step(state, guard, block, start):
    row = jax.lax.dynamic_index_in_dim(block, state["step"] - start, keepdims=False)
    new = {"step": state["step"] + 1, "sum": state["sum"] * 0.5 + row}
    return new, guard + 1, {"row": row, "step": new["step"].astype(jnp.float32)}

  block = jnp.arange(10, 20, dtype=jnp.float32)
  looped = jax.jit(step_lib.repeat_steps(step, carried=2))
  for n in (1, 3, 7):
    state, guard = {"step": jnp.int32(2), "sum": jnp.float32(1.0)}, jnp.int32(0)
    got_state, got_guard, got_metrics = looped(state, guard, block, jnp.int32(0), jnp.int32(n))
    total = 1.0
    for s in range(2, 2 + n):  # by hand
      total = total * 0.5 + 10 + s
    assert int(got_state["step"]) == 2 + n and int(got_guard) == n
    assert float(got_state["sum"]) == total
    assert float(got_metrics["row"]) == 10 + 1 + n and float(got_metrics["step"]) == 2 + n
  assert looped._cache_size() == 1


def _spc_cfg(spc, **kw):
  kw = {"total_steps": 24, "log_every": 12, "host_sync_every": 8, "checkpoint_every": -1,
        "steps_per_call": spc, **kw}
  return _cfg(**kw)


@pytest.mark.parametrize("parallel,devices,sweep", [
    ("jit", 1, ""), ("pmap", 1, ""), ("shard_map", 1, ""),
    ("pmap", 4, ""), ("shard_map", 4, ""), ("jit", 4, ""), ("shard_map", 2, "seed=0,1")])
def test_k_step_calls_train_bit_identically_to_single_steps(tmp_path, monkeypatch, parallel,
                                                            devices, sweep):
  """steps_per_call=8 against 1 (digits MLP): the same state, logged metrics and results, bit for
  bit, under pmap, shard_map and jit on 1 and 4 devices and in a sweep. The calls: 8 steps up to
  the host sync at 8, then 4 to the log at 12, 4 to 16 (the end of the 16-step index block), 8 to
  the end; one compiled program for all of them."""
  monkeypatch.setattr(feed_lib, "BLOCK_STEPS", 16)
  calls = _calls(monkeypatch)
  runs = {}
  for spc in (1, 8):
    calls.clear()
    t = trainer.Trainer(_spc_cfg(spc, parallel=parallel, num_devices=devices, sweep=sweep),
                        str(tmp_path / str(spc)))
    results = t.run()
    runs[spc] = (_leaves(t), results, _logged(tmp_path / str(spc)), list(calls))
    if spc == 8:
      assert t.steps_per_call == 8 and t.train_steps_on_data._cache_size() == 1
  assert runs[1][3] == [(s, 1) for s in range(24)]
  assert runs[8][3] == [(0, 8), (8, 4), (12, 4), (16, 8)]
  for a, b in zip(runs[1][0], runs[8][0]):
    np.testing.assert_array_equal(a, b)
  assert runs[8][1] == runs[1][1]
  assert runs[8][2] == runs[1][2] and [m["step"] for m in runs[8][2] if "train/loss" in m] == \
      ([12, 24] if not sweep else [12, 12, 24, 24])


def test_two_steps_per_call_loop_and_one_step_per_call_does_not(tmp_path, monkeypatch):
  """steps_per_call=2 (jit, 1 device, 6 steps): calls of 2 steps through the looped program,
  the same state bit for bit as steps_per_call=1, whose run never compiles the looped program
  (one step per call takes the single-step program)."""
  calls = _calls(monkeypatch)
  runs = {}
  for spc in (1, 2):
    calls.clear()
    t = trainer.Trainer(_cfg(total_steps=6, log_every=6, host_sync_every=0, checkpoint_every=-1,
                             steps_per_call=spc, parallel="jit", num_devices=1),
                        str(tmp_path / str(spc)))
    t.run()
    runs[spc] = (_leaves(t), list(calls), t.train_steps_on_data._cache_size(),
                 t.train_step_on_data._cache_size())
  assert runs[1][1] == [(s, 1) for s in range(6)] and runs[1][2:] == (0, 1)
  assert runs[2][1] == [(0, 2), (2, 2), (4, 2)] and runs[2][2:] == (1, 0)
  for a, b in zip(runs[1][0], runs[2][0]):
    np.testing.assert_array_equal(a, b)


def test_calls_end_at_every_log_eval_checkpoint_sync_and_host_update_step(tmp_path, monkeypatch):
  """Log every 5, evaluate every 6, checkpoint every 10, host work before 0, 7, 14, 21, 28
  (steps_per_call 16, blocks of 64): every call ends at the next of these and runs the steps up
  to it, and the run equals the one-step-per-call run (host-update steps and their buffers,
  logs, evaluations, checkpoints, state)."""
  monkeypatch.setattr(feed_lib, "BLOCK_STEPS", 64)
  calls = _calls(monkeypatch)
  runs = {}
  for spc in (1, 16):
    calls.clear()
    cfg = _cfg(method="_test_host_every_7", log_every=5, eval_every=6, checkpoint_every=10,
               host_sync_every=0, steps_per_call=spc, parallel="shard_map", num_devices=2)
    t = trainer.Trainer(cfg, str(tmp_path / str(spc)))
    t.run()
    runs[spc] = (_leaves(t), _logged(tmp_path / str(spc)), t.method.seen,
                 _checkpoints(tmp_path / str(spc)), list(calls))
  ends = [5, 6, 7, 10, 12, 14, 15, 18, 20, 21, 24, 25, 28, 30]  # by hand
  assert runs[16][4] == [(a, b - a) for a, b in zip([0] + ends[:-1], ends)]
  assert runs[16][2] == runs[1][2] == [(s, s) for s in (0, 7, 14, 21, 28)]
  assert runs[16][3] == runs[1][3] == [10, 20, 30]
  assert runs[16][1] == runs[1][1]
  assert [m["step"] for m in runs[16][1] if "eval/accuracy" in m] == [6, 12, 18, 24, 30]
  assert {m["step"]: m["train/host_calls"] for m in runs[16][1] if "train/loss" in m} == \
      {5: 1.0, 10: 2.0, 15: 3.0, 20: 3.0, 25: 4.0, 30: 5.0}
  for a, b in zip(runs[1][0], runs[16][0]):
    np.testing.assert_array_equal(a, b)


def test_the_guard_names_the_exact_step_inside_a_call(tmp_path, monkeypatch):
  """Step 13 is non-finite inside the call of steps 10..19 (steps_per_call 16, blocks of 64):
  the error names step 13, found at the sync after step 20; the checkpoint of 10 is kept."""
  monkeypatch.setattr(feed_lib, "BLOCK_STEPS", 64)
  calls = _calls(monkeypatch)
  t = trainer.Trainer(_cfg(method="_test_bad_step", parallel="pmap", num_devices=4,
                           steps_per_call=16), str(tmp_path))
  t.method.bad_step, t.method.bad_input = 12, True
  with pytest.raises(trainer.NonFiniteLossError) as err:
    t.run()
  assert calls == [(0, 10), (10, 10)]
  msg = str(err.value)
  assert "non-finite loss or gradient at step 13 " in msg and "after step 20" in msg, msg
  assert "last good checkpoint (step 10)" in msg and _checkpoints(tmp_path) == [10]


def test_preempted_and_crashed_k_step_runs_resume_exactly(tmp_path, monkeypatch):
  """steps_per_call 8, blocks of 64, nan_policy=skip with NaN inputs at step 13: a run preempted
  during its first call stops at that call's end (step 8) and one that crashes before step 19
  resumes from its checkpoint at 15, mid-call and mid-block; both finish with the logs, skip
  count and state of the uninterrupted run."""
  monkeypatch.setattr(feed_lib, "BLOCK_STEPS", 64)
  cfg = lambda: _cfg(method="_test_bad_step", nan_policy="skip", host_sync_every=0,  # noqa: E731
                     checkpoint_every=15, log_every=10, steps_per_call=8, parallel="jit",
                     num_devices=2)

  def run(workdir, crash_at=None):
    t = trainer.Trainer(cfg(), str(workdir))
    t.method.bad_step, t.method.bad_input, t.method.crash_at = 12, True, crash_at
    return t, t.run()

  full, full_results = run(tmp_path / "full")
  assert int(full.host_state.skipped) == 1
  from labelwise.train import preemption
  with monkeypatch.context() as m:
    m.setattr(preemption.PreemptionGuard, "should_stop", lambda self, step: step >= 3)
    _, stopped = run(tmp_path / "pre")
  assert stopped["step"] == 8 and stopped["preempted"] and _checkpoints(tmp_path / "pre") == [8]
  with pytest.raises(RuntimeError, match="crashed before step 19"):
    run(tmp_path / "crash", crash_at=19)
  assert _checkpoints(tmp_path / "crash") == [15]
  for name in ("pre", "crash"):
    t, results = run(tmp_path / name)
    assert results == full_results, name
    assert _logged(tmp_path / name) == _logged(tmp_path / "full"), name
    for a, b in zip(_leaves(t), _leaves(full)):
      np.testing.assert_array_equal(a, b)


def test_steps_per_call_is_validated_and_auto_resolved(tmp_path, monkeypatch):
  for bad in (-1, 2.0, True, "8"):
    config = _cfg()
    del config["steps_per_call"]  # (the config field is an int: ml_collections refuses a float)
    config.steps_per_call = bad
    with pytest.raises(ValueError, match=r"`steps_per_call` must be an int >= 1 \(training steps "
                                         r"per compiled call\) or 0 / 'auto'"):
      trainer.Trainer(config, str(tmp_path / "bad"))
  with pytest.raises(ValueError, match=r"`steps_per_call` 4 needs the training batches gathered "
                                       r"on the devices \(data.device_cache\), not possible here: "
                                       r"off in the config"):
    trainer.Trainer(_cfg(steps_per_call=4, data__device_cache="off"), str(tmp_path / "off"))
  t = trainer.Trainer(_cfg(), str(tmp_path / "auto"))
  state = t.initial_state()
  assert t.config.steps_per_call == 0  # the default: auto
  assert t.resolve_steps_per_call(state) == trainer.AUTO_STEPS_PER_CALL == 16
  t.config.steps_per_call = 5
  assert t.resolve_steps_per_call(state) == 5
  t.config.steps_per_call = 0
  # the digits MLP's forward pass: (64*128 + 128*128 + 128*10) multiply-adds + biases and ReLUs
  # per example, 2 FLOPs each: about 52k FLOPs
  assert 5.0e4 * 32 < t.forward_flops(state) < 5.5e4 * 32
  monkeypatch.setattr(trainer, "AUTO_STEPS_MAX_FLOPS", 1e6)  # below the MLP's step
  assert t.resolve_steps_per_call(state) == 1
  cnn = trainer.Trainer(load_config("mnist1d_ce", "runlocal", batch_size=128),
                        str(tmp_path / "cnn"))
  assert cnn.resolve_steps_per_call(cnn.initial_state()) == 1  # ~65 MFLOP forward per step
  off = trainer.Trainer(_cfg(data__device_cache="off", steps_per_call=1), str(tmp_path / "o1"))
  assert off.resolve_steps_per_call(state) == 1
  off = trainer.Trainer(_cfg(data__device_cache="off"), str(tmp_path / "o2"))
  assert off.resolve_steps_per_call(state) == 1


def test_k_step_calls_of_a_conv_model_agree_to_float32_rounding(tmp_path, monkeypatch):
  """MNIST-1D SmallCNN, steps_per_call 8 against 1 (jit, 1 device, 16 steps): XLA:CPU compiles
  the conv step inside the loop not bit-identically to the step alone (measured: at most 2.3e-7
  apart in the parameters after 8 steps, under every mode), so here the state agrees to float32
  rounding and the logged metrics (to 1e-5). Within one run every call runs the same program
  (the resume tests above are bit-exact)."""
  monkeypatch.setattr(feed_lib, "BLOCK_STEPS", 16)
  runs = {}
  for spc in (1, 8):
    cfg = load_config("mnist1d_ce", "runlocal", total_steps=16, log_every=8, host_sync_every=8,
                      checkpoint_every=-1, batch_size=32, progress_bar=False, tensorboard=False,
                      parallel="jit", num_devices=1, steps_per_call=spc)
    t = trainer.Trainer(cfg, str(tmp_path / str(spc)))
    t.run()
    runs[spc] = (_leaves(t), [m for m in _logged(tmp_path / str(spc)) if "train/loss" in m])
  for a, b in zip(*(runs[s][0] for s in (1, 8))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert [m["step"] for m in runs[8][1]] == [8, 16]
  for a, b in zip(runs[1][1], runs[8][1]):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)
