"""A workdir is one run: a lock while a process trains in it, and the config that defines the run.

* **Lock.** ``WorkdirLock`` holds an exclusive ``fcntl.flock`` on ``workdir/.lock`` while a trainer
  runs (process 0 of a multi-host run; the other processes share its workdir). The kernel drops the
  lock when the process ends, however it ends (SIGKILL included), so there is never a stale lock to
  delete. The holder's host, process id and start time are written in the file; a second trainer on
  a busy workdir stops at once with ``WorkdirInUseError`` naming them, and the first run is not
  disturbed. In one process, several ``Trainer`` objects on one workdir share the lock.
* **Config fingerprint.** The first start writes ``workdir/config.json``: the full resolved config
  (``num_devices`` resolved to the device count). Every later start compares its config with it
  (``compare``): a changed key that defines the run (dataset and data options, model and its
  kwargs, method and its options, optimizer, batch size, seed, sweep, dtype, ...: every key not
  listed below) is refused with ``ConfigMismatchError`` listing each changed key ``old -> new``;
  nothing in the workdir is changed by a refused start. Keys that only extend or observe the run
  are allowed and logged: ``total_steps`` upwards (a shorter run would end before the steps already
  trained), ``EXTEND_OR_OBSERVE`` (intervals, progress bar, TensorBoard, data location and caching),
  and ``LAYOUT`` (how the same computation is laid out on devices: the resumed steps agree with the
  uninterrupted run to float rounding, not bit for bit).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import threading
from typing import Any, Dict, List, Optional, Tuple

import jax
from absl import logging

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
# Keys that neither define the run nor change its numbers: allowed to change on a resumed run.
# ``nan_policy``: a run stopped at a non-finite loss may be resumed with "skip" (the steps before
# are the same either way).
EXTEND_OR_OBSERVE = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                     "progress_bar", "tensorboard", "eval_batch_size", "data.data_dir",
                     "data.cache_limit", "data.device_cache", "nan_policy")
# The same computation laid out differently: allowed, logged as "not bit-identical".
LAYOUT = ("parallel", "num_devices", "conv_impl", "steps_per_call")
_ABSENT = "<absent>"


class WorkdirInUseError(RuntimeError):
  """Another process trains in this workdir."""


class ConfigMismatchError(ValueError):
  """The workdir holds a run whose config differs in keys that define the run."""


# --- the lock ----------------------------------------------------------------------------------
_held: Dict[str, Tuple[Any, int]] = {}  # realpath of the lock file -> (open file, users)
_held_guard = threading.Lock()


def _holder_text(path: str) -> str:
  try:
    with open(path) as f:
      info = json.load(f)
    return (f"host {info.get('host', '?')}, process id {info.get('pid', '?')}"
            f" (started {info.get('started', '?')})")
  except (OSError, ValueError):
    return "a process whose host and id could not be read from the lock file"


def _busy_error(workdir: str, path: str) -> WorkdirInUseError:
  return WorkdirInUseError(
      f"workdir {workdir} is in use by another run: {_holder_text(path)} holds {path}. Wait for "
      f"it to finish, stop it, or train in another --workdir. (The lock is released by the "
      f"kernel when that process ends, even if it is killed: there is nothing to delete.)")


def check_not_in_use(workdir: str) -> None:
  """Raises ``WorkdirInUseError`` if another process holds the workdir's lock; changes nothing."""
  path = os.path.join(workdir, LOCK_FILE)
  if not os.path.exists(path) or os.path.realpath(path) in _held:
    return
  with open(path) as f:  # read-only: probing creates and writes nothing
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise _busy_error(workdir, path) from None
      raise
    fcntl.flock(f, fcntl.LOCK_UN)


class WorkdirLock:
  """``with WorkdirLock(workdir):`` holds ``workdir/.lock`` (a no-op on processes other than 0)."""

  def __init__(self, workdir: str, *, active: Optional[bool] = None):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self.active = jax.process_index() == 0 if active is None else active
    self._key: Optional[str] = None

  def acquire(self) -> "WorkdirLock":
    if not self.active or self._key is not None:
      return self
    os.makedirs(self.workdir, exist_ok=True)
    key = os.path.realpath(self.path)
    with _held_guard:
      if key in _held:  # this process holds it already (another Trainer object)
        f, users = _held[key]
        _held[key] = (f, users + 1)
        self._key = key
        return self
      f = open(self.path, "a+")
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        f.close()
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          raise _busy_error(self.workdir, self.path) from None
        raise
      f.seek(0)
      f.truncate()
      json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                 "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds")}, f)
      f.write("\n")
      f.flush()
      _held[key] = (f, 1)
      self._key = key
    return self

  def release(self) -> None:
    if self._key is None:
      return
    with _held_guard:
      f, users = _held[self._key]
      if users > 1:
        _held[self._key] = (f, users - 1)
      else:
        del _held[self._key]
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
    self._key = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


# --- the config fingerprint --------------------------------------------------------------------
def resolved_config(config, *, num_devices: int) -> Dict[str, Any]:
  """The config as plain JSON values, ``num_devices`` resolved to the device count of the run."""
  out = json.loads(config.to_json_best_effort(sort_keys=True))
  out["num_devices"] = int(num_devices)
  return out


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
  if isinstance(d, dict) and d:
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: d}


def compare(old: Dict[str, Any], new: Dict[str, Any]) -> Tuple[List[str], List[str]]:
  """``(refused, allowed)``: lines ``key: old -> new`` of the keys that differ."""
  a, b = _flatten(old), _flatten(new)
  refused, allowed = [], []
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
    if va == vb:
      continue
    line = f"{key}: {json.dumps(va) if va is not _ABSENT else va} -> " \
           f"{json.dumps(vb) if vb is not _ABSENT else vb}"
    if key == "total_steps" and isinstance(va, int) and isinstance(vb, int) and vb > va:
      allowed.append(line + " (extends the run)")
    elif key in EXTEND_OR_OBSERVE or any(key.startswith(k + ".") for k in EXTEND_OR_OBSERVE):
      allowed.append(line)
    elif key in LAYOUT:
      allowed.append(line + " (another device layout: resumed steps equal to float rounding, "
                            "not bit for bit)")
    else:
      refused.append(line + (" (a shorter run than the one in this workdir)"
                             if key == "total_steps" else ""))
  return refused, allowed


def read_config(workdir: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise ConfigMismatchError(
        f"{path} (the config of the run in this workdir) is not valid JSON ({e}); it was written "
        f"by the first start of that run. Use a new --workdir, or repair or delete the file if you "
        f"know the run's config.") from None


def check_config(config, workdir: str, *, num_devices: int) -> List[str]:
  """Compares ``config`` with ``workdir/config.json``; raises ``ConfigMismatchError`` on a change
  that defines the run. Returns the allowed changes. Reads only."""
  old = read_config(workdir)
  if old is None:
    return []
  refused, allowed = compare(old, resolved_config(config, num_devices=num_devices))
  if refused:
    raise ConfigMismatchError(
        f"workdir {workdir} holds another run: the config differs from its config.json in "
        f"{len(refused)} key{'s' if len(refused) > 1 else ''} that define the run:\n  "
        + "\n  ".join(refused)
        + f"\nUse a new --workdir for this config (or set these keys back to resume that run). "
          f"Nothing in {workdir} was changed.")
  return allowed


def write_config(config, workdir: str, *, num_devices: int) -> None:
  """Writes ``workdir/config.json`` if it does not exist yet (the first start of the run; process
  0 only)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if jax.process_index() != 0 or os.path.exists(path):
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(resolved_config(config, num_devices=num_devices), f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def check(config, workdir: str, *, num_devices: int) -> None:
  """Fails fast (before any data is read): the workdir is free and holds this run or none."""
  check_config(config, workdir, num_devices=num_devices)
  if jax.process_index() == 0:  # the other processes of a multi-host run share process 0's lock
    check_not_in_use(workdir)


@contextlib.contextmanager
def claim(config, workdir: str, *, num_devices: int):
  """Holds the workdir for a run: the lock (process 0) and the config compared; allowed changes
  are logged. The trainer calls ``write_config`` once the checkpoint (if any) is restored, so that
  a start refused by the checkpoint's structure writes no config.json either."""
  with WorkdirLock(workdir, active=jax.process_index() == 0):
    allowed = check_config(config, workdir, num_devices=num_devices)  # under the lock
    for line in allowed:
      logging.warning("resuming %s with a changed config key: %s", workdir, line)
    yield
