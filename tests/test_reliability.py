"""A killed or preempted run loses nothing, a corrupted checkpoint is skipped, same seed = same bits.

Every run here is compared with one uninterrupted reference run (bit for bit: same parameters,
optimizer state, per-step metrics and final metrics), and each resumed run also proves that it really
resumed (it executes only the steps after the checkpoint it restored).
"""

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from labelwise.train import trainer
from labelwise.train.writers import read_metrics
from tests import kill_worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL, EVERY = 24, 5
_TIMING_KEYS = ("train/examples_per_sec",)


def _cfg(**kw):
  return kill_worker.config(**{"total_steps": TOTAL, "checkpoint_every": EVERY, **kw})


def _run(workdir, config=None, **kw):
  t = trainer.Trainer(config if config is not None else _cfg(**kw), str(workdir))
  return t, t.run()


def _logged(workdir):
  """metrics.jsonl without wall-clock timings."""
  return [{k: v for k, v in m.items() if k not in _TIMING_KEYS} for m in read_metrics(str(workdir))]


def _checkpoints(workdir):
  d = os.path.join(str(workdir), "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _assert_bit_identical(t, results, workdir, ref):
  ref_t, ref_results, ref_workdir = ref
  for name in ("params", "opt_state", "model_state"):
    a = jax.tree_util.tree_leaves(getattr(t.host_state, name))
    b = jax.tree_util.tree_leaves(getattr(ref_t.host_state, name))
    assert len(a) == len(b)
    for x, y in zip(a, b):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)
  assert results == ref_results
  assert _logged(workdir) == _logged(ref_workdir)
  assert [m["step"] for m in _logged(workdir) if "train/loss" in m] == list(range(1, TOTAL + 1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run: (trainer, results, workdir)."""
  workdir = tmp_path_factory.mktemp("reference")
  t, results = _run(workdir)
  assert results["step"] == TOTAL and "preempted" not in results
  return t, results, workdir


def _start_worker(workdir, hold_at, sleep_s=0.05):
  """The worker sleeps ``sleep_s`` before every step and waits for a signal before step ``hold_at``."""
  overrides = {"total_steps": TOTAL, "checkpoint_every": EVERY}
  env = dict(os.environ, **{kill_worker.HOLD_ENV: str(hold_at)})
  return subprocess.Popen(
      [sys.executable, "-m", "tests.kill_worker", str(workdir), json.dumps(overrides), str(sleep_s)],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_logged_step(proc, workdir, step, timeout=300):
  """Blocks until ``workdir/metrics.jsonl`` has logged ``step`` (log_every=1); returns the last step."""
  path = os.path.join(str(workdir), "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      out, err = proc.communicate()
      pytest.fail(f"worker exited ({proc.returncode}) before step {step}:\n{out}\n{err[-3000:]}")
    if os.path.exists(path):
      with open(path) as f:
        steps = [json.loads(l)["step"] for l in f if l.strip().endswith("}")]
      if steps and steps[-1] >= step:
        return steps[-1]
    time.sleep(0.02)
  proc.kill()
  pytest.fail(f"worker did not reach step {step} in {timeout}s")


def test_sigkill_at_random_step_then_resume_is_bit_identical(reference, tmp_path):
  rng = random.Random(os.environ.get("LABELWISE_KILL_SEED"))
  target = rng.randint(EVERY + 1, TOTAL - 6)
  proc = _start_worker(tmp_path, hold_at=target + 4)  # killed somewhere in steps target..target+4
  _wait_for_logged_step(proc, tmp_path, target)
  proc.send_signal(signal.SIGKILL)  # mid-step or mid-checkpoint: whatever it was doing
  proc.communicate()
  assert proc.returncode == -signal.SIGKILL, f"the worker was not killed (target step {target})"
  assert not (tmp_path / "results.json").exists()
  saved = _checkpoints(tmp_path)
  assert saved and saved[-1] >= EVERY, f"killed at step ~{target}, checkpoints {saved}"
  resumed_from = saved[-1]
  t, results = _run(tmp_path)  # restart on the same workdir
  assert t.method.calls == TOTAL - resumed_from, f"did not resume from checkpoint {resumed_from}"
  _assert_bit_identical(t, results, tmp_path, reference)


def test_sigterm_subprocess_checkpoints_and_exits_cleanly(reference, tmp_path):
  proc = _start_worker(tmp_path, hold_at=EVERY + 3)  # SIGTERM arrives before step EVERY + 3 ends
  _wait_for_logged_step(proc, tmp_path, EVERY + 2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  results = json.loads(out.strip().splitlines()[-1])
  stopped = results["step"]
  assert results["preempted"] is True and EVERY + 2 <= stopped <= EVERY + 3
  assert _checkpoints(tmp_path)[-1] == stopped  # the step it stopped at is checkpointed
  assert max(m["step"] for m in read_metrics(str(tmp_path))) == stopped
  assert not (tmp_path / "results.json").exists()  # not finished, not evaluated
  t, results = _run(tmp_path)
  assert t.method.calls == TOTAL - stopped
  _assert_bit_identical(t, results, tmp_path, reference)


def test_sigterm_in_process_saves_that_step_and_restores_the_handler(reference, tmp_path):
  # pytest and pytest-xdist run tests in the main thread, so `make test` never takes this skip; it
  # only guards thread-based runners, where Python forbids installing signal handlers.
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers can only be installed from the main thread")
  previous = signal.getsignal(signal.SIGTERM)
  t = trainer.Trainer(_cfg(checkpoint_every=0), str(tmp_path))  # 0: checkpoint only at the end
  t.method.signal_before_call = (9, signal.SIGTERM)  # SIGTERM arrives during step 9
  results = t.run()
  assert results == {"step": 9, "preempted": True, "train/loss": pytest.approx(
      [m for m in _logged(reference[2]) if m["step"] == 9][0]["train/loss"], abs=0)}
  assert t.preemption_guard.received == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == previous
  assert _checkpoints(tmp_path) == [9]
  t2, results2 = _run(tmp_path)
  assert t2.method.calls == TOTAL - 9
  _assert_bit_identical(t2, results2, tmp_path, reference)


def _corrupt(checkpoint_dir):
  """Truncates every data file of a checkpoint to half its size (a write cut short)."""
  n = 0
  for root, _, files in os.walk(checkpoint_dir):
    for name in files:
      path = os.path.join(root, name)
      if os.path.basename(root) == "d":  # the array chunks of orbax's OCDBT store
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
        n += 1
  assert n, f"nothing to corrupt in {checkpoint_dir}"


def test_corrupted_newest_checkpoint_is_skipped_with_warning(reference, tmp_path, caplog):
  _run(tmp_path, total_steps=2 * EVERY)  # "killed" after its checkpoint at 2 * EVERY
  assert _checkpoints(tmp_path) == [EVERY, 2 * EVERY]
  _corrupt(tmp_path / "checkpoints" / str(2 * EVERY))
  with caplog.at_level(logging.WARNING):
    t, results = _run(tmp_path, keep_checkpoints=10)
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert any(f"checkpoint {2 * EVERY} in" in w and "cannot be restored" in w for w in warnings), \
      warnings
  assert t.method.calls == TOTAL - EVERY  # fell back to the previous checkpoint
  assert (tmp_path / "checkpoints" / f"{2 * EVERY}.unreadable").is_dir()  # kept for inspection
  assert 2 * EVERY in _checkpoints(tmp_path)  # recomputed and saved again
  _assert_bit_identical(t, results, tmp_path, reference)


def test_same_config_and_seed_give_bit_identical_metrics(reference, tmp_path):
  t, results = _run(tmp_path / "again")
  _assert_bit_identical(t, results, tmp_path / "again", reference)
  # ... and the comparison can fail: another seed gives other numbers.
  _, other = _run(tmp_path / "seed1", total_steps=3, seed=1)
  ref_loss_3 = [m for m in _logged(reference[2]) if m["step"] == 3][0]["train/loss"]
  assert other["train/loss"] != ref_loss_3


def test_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
  from labelwise.train.writers import MetricWriter
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.write('{"step": 1, "train/loss": 2.0}\n{"step": 2, "train/loss": 1.5}\n{"step": 3, "trai')
  w = MetricWriter(str(tmp_path), tensorboard=False)
  w.truncate_after(5)
  w.write(3, {"train/loss": 1.25})
  assert read_metrics(str(tmp_path)) == [{"step": 1, "train/loss": 2.0},
                                         {"step": 2, "train/loss": 1.5},
                                         {"step": 3, "train/loss": 1.25}]


def test_provenance_records_config_seeds_versions_and_commit(tmp_path):
  from importlib import metadata
  from labelwise.experiments import provenance
  cfg = _cfg(seed=3)
  table = str(tmp_path / "results.md")
  record = provenance.write(table, configs={"ce": cfg}, seeds=[0, 1, 2], extra={"smoke": True})
  with open(tmp_path / "results.provenance.json") as f:
    on_disk = json.load(f)
  assert on_disk == json.loads(json.dumps(record))
  assert on_disk["configs"]["ce"] == json.loads(json.dumps(cfg.to_dict()))
  assert on_disk["configs"]["ce"]["seed"] == 3 and on_disk["seeds"] == [0, 1, 2]
  assert on_disk["packages"]["jax"] == jax.__version__
  assert on_disk["packages"]["numpy"] == np.__version__
  assert on_disk["packages"]["flax"] == metadata.version("flax")
  assert on_disk["devices"]["count"] == jax.device_count()
  assert on_disk["extra"] == {"smoke": True}
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
  if head.returncode == 0:  # a git checkout
    assert on_disk["git"]["commit"] == head.stdout.strip()
    assert head.stdout.strip()[:12] in provenance.footer(record, table)
  assert "results.provenance.json" in provenance.footer(record, table)


def test_provenance_carries_no_machine_paths(tmp_path, monkeypatch):
  """Records are committed beside tables: the repository and home paths are written portably."""
  from labelwise.experiments import provenance
  home = os.path.expanduser("~")
  monkeypatch.setenv("TFDS_DATA_DIR", os.path.join(REPO, ".cache", "tfds"))
  monkeypatch.setattr(sys, "argv", [os.path.join(REPO, "experiments", "x", "run.py"), "--out",
                                    os.path.join(home, "out")])
  record = provenance.write(str(tmp_path / "results.md"),
                            configs={"workdir": os.path.join(REPO, "runs", "a")})
  text = (tmp_path / "results.provenance.json").read_text()
  assert REPO not in text and record["env"]["TFDS_DATA_DIR"] == "<repo>/.cache/tfds"
  assert record["configs"]["workdir"] == "<repo>/runs/a"
  # git status porcelain lines start with a status column that may be a space.
  real_git = provenance._git
  monkeypatch.setattr(provenance, "_git", lambda *a, **k: (
      " M experiments/a/results.md\nM  losses/x.py\n" if "status" in a else real_git(*a, **k)))
  assert provenance.git_info()["modified"] == ["experiments/a/results.md", "losses/x.py"]
  monkeypatch.setattr(provenance, "_git", real_git)
  # A tree whose only edits are study outputs (tables of studies run before) is not "modified".
  git = {"commit": "0" * 40, "dirty": True, "modified": ["experiments/fierce/results.md"]}
  assert "(modified tree)" not in provenance.footer({**record, "git": git})
  git["modified"].append("losses/simloss.py")
  assert "(modified tree)" in provenance.footer({**record, "git": git})
  assert record["command"] == ["experiments/x/run.py", "--out",
                               "~/out" if home not in ("", "/") else os.path.join(home, "out")]


def test_non_finite_loss_message_and_skip_policy(reference, tmp_path):
  """stop: the message has the step, method and that step's metrics. skip: the state stays exactly
  the state before the first bad step (equal to the reference at step 7) and every skip is counted."""
  with pytest.raises(trainer.NonFiniteLossError) as err:
    _run(tmp_path / "stop", method="_test_nan_from_step_7", total_steps=10)
  msg = str(err.value)
  assert "at step 8 (method '_test_nan_from_step_7'" in msg
  assert "'loss': nan" in msg and "'accuracy': " in msg and "'grad_norm': " in msg
  assert "last good checkpoint (step 5)" in msg and _checkpoints(tmp_path / "stop") == [5]
  t, results = _run(tmp_path / "skip", method="_test_nan_from_step_7", total_steps=10,
                    nan_policy="skip")
  skipped = {m["step"]: m["train/skipped"] for m in read_metrics(str(tmp_path / "skip"))
             if "train/skipped" in m}
  assert skipped == {s: (1.0 if s >= 8 else 0.0) for s in range(1, 11)}
  assert int(t.host_state.step) == 10 and results["step"] == 10
  t7, _ = _run(tmp_path / "seven", total_steps=7)
  for name in ("params", "opt_state"):
    for x, y in zip(jax.tree_util.tree_leaves(getattr(t.host_state, name)),
                    jax.tree_util.tree_leaves(getattr(t7.host_state, name))):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def test_third_sigterm_goes_to_the_previous_handler():
  """The first SIGTERM sets the flag, a second one is only logged (the run is stopping and saving
  anyway: issue 16, a double SIGTERM must not kill a save); a third one reaches the old handler."""
  # As above: never skipped under pytest / pytest-xdist (tests run in the main thread).
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers can only be installed from the main thread")
  from labelwise.train import preemption
  seen = []
  def handler(signum, frame):  # noqa: ARG001
    seen.append(signum)
  old = signal.signal(signal.SIGTERM, handler)
  try:
    guard = preemption.PreemptionGuard().install()
    assert not guard.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100):  # the Python-level handler runs at the next bytecode boundary
      if guard.requested:
        break
      time.sleep(0.01)
    assert guard.should_stop(1) and guard.received == signal.SIGTERM and seen == []
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)
    assert seen == [] and guard.requested
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100):
      if seen:
        break
      time.sleep(0.01)
    assert seen == [signal.SIGTERM]
    guard.uninstall()
    assert signal.getsignal(signal.SIGTERM) is handler
  finally:
    signal.signal(signal.SIGTERM, old)
