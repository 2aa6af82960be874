"""A workdir is one run (issue 16): a lock while a run trains in it, a config fingerprint that
refuses another run's config, checkpoints that are never destroyed, double signals that never kill
a save, a real divergence under both NaN policies, and a full disk.
"""

import errno
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import pytest

from labelwise.train import checkpoint as checkpoint_lib
from labelwise.train import trainer
from labelwise.train import workdir as workdir_lib
from labelwise.train.writers import read_metrics
from tests import kill_worker
from tests.helpers import load_config, max_abs_diff

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**kw):
  return kill_worker.config(**{"total_steps": 8, "checkpoint_every": 4, **kw})


def _run(workdir, config=None, **kw):
  t = trainer.Trainer(config if config is not None else _cfg(**kw), str(workdir))
  return t, t.run()


def _checkpoints(workdir):
  d = os.path.join(str(workdir), "checkpoints")
  return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _snapshot(workdir):
  """Every file under ``workdir`` with its content hash and mtime (a refused start changes none)."""
  out = {}
  for root, dirs, files in os.walk(str(workdir)):
    for name in dirs + files:
      path = os.path.join(root, name)
      digest = hashlib.sha1(open(path, "rb").read()).hexdigest() if os.path.isfile(path) else "d"
      out[os.path.relpath(path, str(workdir))] = (digest, os.stat(path).st_mtime_ns)
  return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 8-step run (checkpoints 4 and 8) and a snapshot of its workdir."""
  workdir = tmp_path_factory.mktemp("finished")
  t, results = _run(workdir)
  return workdir, t, results


# --- 1. the lock --------------------------------------------------------------------------------
_HOLDER = textwrap.dedent("""
    import sys, time
    from labelwise.train.workdir import WorkdirLock
    WorkdirLock(sys.argv[1], active=True).acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_busy_workdir_refuses_a_second_trainer_naming_host_and_pid(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  try:
    assert holder.stdout.readline().strip() == "held"
    info = json.loads((tmp_path / ".lock").read_text())
    assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
    with pytest.raises(workdir_lib.WorkdirInUseError,
                       match=rf"{tmp_path} is in use by another run: host {socket.gethostname()}, "
                             rf"process id {holder.pid}"):
      trainer.Trainer(_cfg(), str(tmp_path))  # refused before reading any data
    assert sorted(os.listdir(tmp_path)) == [".lock"]  # nothing else written
    # The command line exits non-zero at once with the same message.
    cli = subprocess.run(
        [sys.executable, "-m", "labelwise.train", "--config=configs/digits_ce.py:runlocal",
         f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert cli.returncode != 0 and f"process id {holder.pid}" in cli.stderr, cli.stderr[-2000:]
  finally:
    holder.kill()  # SIGKILL: the kernel drops the lock, nothing stale is left
    holder.wait()
  t, results = _run(tmp_path)
  assert results["step"] == 8
  assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()  # it held the lock


def test_trainers_of_one_process_share_the_lock(tmp_path):
  a = workdir_lib.WorkdirLock(str(tmp_path), active=True).acquire()
  b = workdir_lib.WorkdirLock(str(tmp_path), active=True).acquire()
  b.release()
  workdir_lib.check_not_in_use(str(tmp_path))  # still ours
  a.release()
  assert not workdir_lib._held


# --- 2. the config fingerprint ------------------------------------------------------------------
@pytest.mark.parametrize("change,keys", [
    (dict(batch_size=16), ["batch_size: 32 -> 16"]),
    (dict(optimizer__learning_rate=0.01, seed=3), ["optimizer.learning_rate: 0.001 -> 0.01",
                                                   "seed: 0 -> 3"]),
    (dict(model_kwargs__hidden=(64,)), ["model_kwargs.hidden: [128, 128] -> [64]"]),
    (dict(total_steps=6), ["total_steps: 8 -> 6 (a shorter run"]),
    (dict(method="ce"), ['method: "_test_slow_ce" -> "ce"']),
])
def test_a_changed_run_defining_key_is_refused_and_changes_nothing(finished, change, keys):
  workdir, _, _ = finished
  before = _snapshot(workdir)
  with pytest.raises(workdir_lib.ConfigMismatchError) as err:
    _run(workdir, **change)
  msg = str(err.value)
  for key in keys:
    assert key in msg, msg
  assert "Use a new --workdir" in msg and f"Nothing in {workdir} was changed" in msg
  assert msg.count("\n  ") == len(keys)  # every changed key listed, nothing else
  assert _snapshot(workdir) == before


def test_another_method_config_on_a_finished_run_is_refused(finished):
  """Issue 16: a FIERCE config on a CE workdir renamed its checkpoints and overwrote its results."""
  workdir, _, _ = finished
  before = _snapshot(workdir)
  with pytest.raises(workdir_lib.ConfigMismatchError, match=r"data.coarse: .*\n(.*\n)*.*method:"):
    trainer.train_and_evaluate(load_config("digits_fierce", "runlocal"), str(workdir))
  assert _snapshot(workdir) == before


def test_config_json_is_the_resolved_config_of_the_first_start(finished):
  workdir, t, _ = finished
  saved = json.loads((workdir / "config.json").read_text())
  assert saved == workdir_lib.resolved_config(t.config, num_devices=jax.device_count())
  assert saved["num_devices"] == jax.device_count() and saved["batch_size"] == 32


def test_extending_and_observing_keys_are_allowed_and_logged(tmp_path, caplog):
  _run(tmp_path, total_steps=4)
  with caplog.at_level(logging.WARNING):
    t, results = _run(tmp_path, total_steps=8, log_every=2, progress_bar=True)
  assert results["step"] == 8 and t.method.calls == 4  # resumed at 4
  warned = "\n".join(r.getMessage() for r in caplog.records)
  assert "total_steps: 4 -> 8 (extends the run)" in warned and "log_every: 1 -> 2" in warned
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 4  # first start's


# --- 3. checkpoints are never destroyed ----------------------------------------------------------
def test_a_structure_mismatch_is_a_config_error_and_renames_nothing(finished, tmp_path):
  """A readable checkpoint of another model is a mismatch (even with no config.json to compare)."""
  workdir, _, _ = finished
  copy = tmp_path / "copy"
  subprocess.run(["cp", "-r", str(workdir), str(copy)], check=True)
  os.remove(copy / "config.json")  # a workdir from before the fingerprint
  before = _snapshot(copy)
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"checkpoint 8 .* readable but holds another (.|\n)*"
                           r"params/Dense_0/kernel: shape/dtype \(64, 128\) float32 in the "
                           r"checkpoint, \(64, 64\) float32 here"):
    _run(copy, model_kwargs__hidden=(64,))
  after = _snapshot(copy)
  assert {k for k in after if "unreadable" in k} == set()
  assert {k: v for k, v in after.items() if k not in ("config.json", ".lock")} == {
      k: v for k, v in before.items() if k != ".lock"}
  assert sorted(read_metrics(str(copy)), key=str) == sorted(read_metrics(str(workdir)), key=str)


def _corrupt_metadata(checkpoint_dir):
  for root, _, files in os.walk(checkpoint_dir):
    for name in files:
      if name in ("_METADATA", "_CHECKPOINT_METADATA"):
        with open(os.path.join(root, name), "w") as f:
          f.write("{not json")


def test_every_checkpoint_unreadable_is_an_error_listing_them(tmp_path):
  _run(tmp_path)
  for step in ("4", "8"):
    _corrupt_metadata(tmp_path / "checkpoints" / step)
  metrics = (tmp_path / "metrics.jsonl").read_text()
  with pytest.raises(checkpoint_lib.UnreadableCheckpointsError,
                     match=r"no checkpoint in .* can be read(.|\n)*  8: (.|\n)*  4: "):
    _run(tmp_path)
  assert _checkpoints(tmp_path) == ["4", "8"]  # nothing renamed
  assert (tmp_path / "metrics.jsonl").read_text() == metrics  # nothing truncated


# --- 4. signals ---------------------------------------------------------------------------------
def test_two_sigterms_during_a_save_wait_for_it_to_commit(tmp_path):
  marks = tmp_path / "marks"
  marks.mkdir()
  workdir = tmp_path / "run"
  env = dict(os.environ, **{kill_worker.SLOW_SAVE_ENV: f"{marks},1.0",
                            kill_worker.HOLD_ENV: "7"})
  proc = subprocess.Popen(
      [sys.executable, "-m", "tests.kill_worker", str(workdir),
       json.dumps({"total_steps": 12, "checkpoint_every": 4}), "0"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while not (marks / "saving.4").exists():  # the save of step 4 is running (1 s)
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
    time.sleep(0.01)
  proc.send_signal(signal.SIGTERM)
  time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)  # issue 16: this one killed the process during the save
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  results = json.loads(out.strip().splitlines()[-1])
  # The loop reads the stop flag at the step boundary before the save: it stops after step 4 or 5.
  stopped = results["step"]
  assert results["preempted"] is True and stopped in (4, 5)
  # 4 committed (and the stop step's), no *.orbax-checkpoint-tmp left
  assert _checkpoints(workdir) == sorted({"4", str(stopped)})
  t, results = _run(workdir, total_steps=12, checkpoint_every=4)
  assert t.method.calls == 12 - stopped and results["step"] == 12  # resumed from it


def test_a_third_signal_exits_at_once_even_during_a_save():
  script = textwrap.dedent("""
      import os, signal, time
      from labelwise.train import preemption
      with preemption.signals_deferred():
        for _ in range(3):
          os.kill(os.getpid(), signal.SIGTERM)
          time.sleep(0.05)
        time.sleep(5)
      print("survived")
  """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  assert proc.returncode == -signal.SIGTERM and "survived" not in proc.stdout, proc.stderr


def test_signals_during_a_save_are_delivered_after_it():
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers can only be installed from the main thread")
  from labelwise.train import preemption
  seen = []
  old = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
  try:
    with preemption.signals_deferred():
      os.kill(os.getpid(), signal.SIGINT)
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.1)
      assert seen == []  # held back during the "save"
    assert seen == [signal.SIGINT, signal.SIGINT]
  finally:
    signal.signal(signal.SIGINT, old)


def test_sigint_saves_and_stops_like_sigterm(tmp_path):
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers can only be installed from the main thread")
  previous = signal.getsignal(signal.SIGINT)
  t = trainer.Trainer(_cfg(checkpoint_every=0), str(tmp_path))
  t.method.signal_before_call = (3, signal.SIGINT)  # Ctrl-C during step 3
  results = t.run()
  assert results["preempted"] is True and results["step"] == 3
  assert t.preemption_guard.received == signal.SIGINT
  assert signal.getsignal(signal.SIGINT) == previous
  assert _checkpoints(tmp_path) == ["3"]


# --- 8. a real divergence under both NaN policies ------------------------------------------------
def _diverging(**kw):
  kw = {"total_steps": 6, "checkpoint_every": 2, "log_every": 1, "progress_bar": False,
        "tensorboard": False, **kw}
  c = load_config("digits_ce", "runlocal", **kw)
  c.optimizer.update(name="sgd", learning_rate=1e30, momentum=0.0)  # diverges on step 2
  return c


def test_a_real_divergence_stops_or_is_skipped(tmp_path):
  with pytest.raises(trainer.NonFiniteLossError, match=r"non-finite loss or gradient at step 2 .*"
                                                       r"last good checkpoint \(step 0\)"):
    trainer.train_and_evaluate(_diverging(), str(tmp_path / "stop"))
  assert _checkpoints(tmp_path / "stop") == []  # no checkpoint of a diverged state
  results = trainer.train_and_evaluate(_diverging(nan_policy="skip"), str(tmp_path / "skip"))
  logged = {m["step"]: m for m in read_metrics(str(tmp_path / "skip")) if "train/skipped" in m}
  assert [logged[s]["train/skipped"] for s in range(1, 7)] == [0.0] + [1.0] * 5
  assert np.isfinite(logged[1]["train/loss"]) and logged[2]["train/loss"] in ("nan", "inf")
  assert results["step"] == 6
  one = trainer.Trainer(_diverging(total_steps=1), str(tmp_path / "one"))
  one.run()
  skip = trainer.Trainer(_diverging(nan_policy="skip"), str(tmp_path / "skip"))
  skip.run()  # resumes at the end: the state after step 1, every later update skipped
  assert max_abs_diff(skip.host_state.params, one.host_state.params) == 0


# --- 9. a full disk -----------------------------------------------------------------------------
def _fail_save_of(monkeypatch, step):
  """Makes the save of ``step`` fail with ENOSPC after writing part of it (as a full disk does)."""
  import orbax.checkpoint as ocp
  real = ocp.CheckpointManager.save

  def save(self, s, *args, **kwargs):
    if int(s) == step:
      tmp = os.path.join(str(self.directory), f"{s}.orbax-checkpoint-tmp-0")
      os.makedirs(tmp, exist_ok=True)
      open(os.path.join(tmp, "partial"), "w").write("x")
      raise OSError(errno.ENOSPC, "No space left on device")
    return real(self, s, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, "save", save)


def test_disk_full_on_save_stops_naming_the_workdir_and_resumes(tmp_path, monkeypatch):
  _fail_save_of(monkeypatch, 8)
  with pytest.raises(checkpoint_lib.DiskFullError,
                     match=rf"no space left on device: saving checkpoint 8 of the run in workdir "
                           rf"{tmp_path} failed(.|\n)*checkpoint \(step 4\) is intact"):
    _run(tmp_path)
  assert _checkpoints(tmp_path) == ["4"]  # the partial save is gone, 4 untouched
  monkeypatch.undo()  # space freed
  t, results = _run(tmp_path)
  assert t.method.calls == 4 and results["step"] == 8
  ref, _ = _run(tmp_path / "ref")
  assert max_abs_diff(t.host_state.params, ref.host_state.params) == 0


def _mount_tmpfs(path, size):
  if os.geteuid() != 0:
    return False
  os.makedirs(path, exist_ok=True)
  return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True).returncode == 0


@pytest.mark.slow  # three runs; the injected-ENOSPC test above is the fast one
def test_disk_full_on_a_real_small_tmpfs(tmp_path):
  disk = tmp_path / "disk"
  if not _mount_tmpfs(disk, "4m"):
    pytest.skip("cannot mount a tmpfs here (needs root); the injected-ENOSPC test covers it")
  try:
    workdir = disk / "run"
    _run(workdir, total_steps=4)  # checkpoint 4 committed
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as f:  # leave ~64 KiB: metrics fit, a checkpoint does not
      f.write(b"\0" * max(0, free - 64 * 1024))
    with pytest.raises(checkpoint_lib.DiskFullError, match=rf"workdir {workdir}"):
      _run(workdir)
    assert "4" in _checkpoints(workdir)
    os.remove(disk / "filler")
    t, results = _run(workdir)
    assert results["step"] == 8 and t.method.calls == 4
  finally:
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)
