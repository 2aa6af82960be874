"""Preemption: SIGTERM or SIGINT makes the trainer save a checkpoint at the next step boundary and
return.

Preemptible TPU VMs, spot GPUs and most schedulers (Kubernetes, Slurm with ``--signal``) send SIGTERM
some seconds before they kill a job; Ctrl-C sends SIGINT. ``PreemptionGuard`` turns either signal into
a flag that the trainer reads after every step; the trainer then checkpoints the state of that step
and returns ``{"step": s, "preempted": True, ...}`` without evaluating, and the process exits with
status 0. Rerunning the same command on the same workdir resumes from that checkpoint exactly.

* A checkpoint is written whole or not at all: every save runs inside ``signals_deferred()``, which
  holds back SIGTERM and SIGINT until the save has committed and then delivers them (to the guard,
  or to the handler from before: by default the process then exits). So a second signal (a
  scheduler's grace period, a double Ctrl-C) never leaves the run without its last completed
  checkpoint: the process exits once the save has committed. A third signal exits at once, even
  in the middle of a save (the previous checkpoint is still intact).
* The handlers can only be installed from the main thread; elsewhere the guard only honours
  :meth:`PreemptionGuard.request` (e.g. from your own signal handling) and saves are not shielded.
* With several processes (a multi-host pod), a local flag is not enough: every host must stop at the
  same step or the others hang in a collective. There the guard installs no handler and asks JAX's
  preemption sync service (``multihost_utils.reached_preemption_sync_point``, set up by
  ``jax.distributed.initialize``, which catches SIGTERM on every host itself) at every step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import List, Optional

import jax
from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_AT_ONCE = 3  # the third signal (counted over the guard and the save) exits at once

_received: List[int] = []  # signals received since the guard was installed / the save began


def _exit_now(signum: int) -> None:
  logging.warning("signal %d received %d times: exiting at once", signum, EXIT_AT_ONCE)
  signal.signal(signum, signal.SIG_DFL)
  os.kill(os.getpid(), signum)


def _deliver(handler, signum: int) -> None:
  """Calls ``handler`` (a Python handler, SIG_DFL or SIG_IGN) for a signal that was held back."""
  if callable(handler):
    handler(signum, None)
  elif handler in (signal.SIG_DFL, None):
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def signals_deferred(signals=SIGNALS):
  """Holds back ``signals`` during the block and delivers them after it (the third exits at once).

  A no-op outside the main thread and in multi-process runs (JAX's preemption service owns SIGTERM).
  """
  if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
    yield
    return
  held: List[int] = []
  previous = {}

  def hold(signum, frame):  # noqa: ARG001 - signal handler signature
    held.append(signum)
    if len(_received) + len(held) >= EXIT_AT_ONCE:
      _exit_now(signum)
    logging.warning("signal %d during a checkpoint save: held back until the save has committed "
                    "(a third signal exits at once)", signum)

  for sig in signals:
    previous[sig] = signal.signal(sig, hold)
  try:
    yield
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    for signum in held:
      _deliver(previous.get(signum), signum)


class PreemptionGuard:
  """Catches ``signals`` (default SIGTERM and SIGINT) between :meth:`install` and :meth:`uninstall`."""

  def __init__(self, signals=SIGNALS):
    self.signals = tuple(signals)
    self.received: Optional[int] = None  # the first signal number, once one arrived
    self._previous = {}
    self._requested = threading.Event()

  # --- installation -------------------------------------------------------------------------------
  def install(self) -> "PreemptionGuard":
    if jax.process_count() > 1:
      return self  # JAX's preemption notifier owns SIGTERM; a Python handler would replace it
    if threading.current_thread() is not threading.main_thread():
      logging.info("PreemptionGuard: not the main thread, SIGTERM/SIGINT are not caught")
      return self
    _received.clear()
    for sig in self.signals:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def uninstall(self) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    self._previous = {}
    _received.clear()

  def __enter__(self):
    return self.install()

  def __exit__(self, *exc):
    self.uninstall()

  def _handle(self, signum, frame):  # noqa: ARG002 - signal handler signature
    _received.append(signum)
    if self.received is None:
      self.received = signum
    self._requested.set()
    if len(_received) >= EXIT_AT_ONCE:
      previous = self._previous.get(signum, signal.SIG_DFL)
      self.uninstall()
      _deliver(previous, signum)  # default: terminate now (SIGINT: KeyboardInterrupt)
      return
    logging.warning("received signal %d: the run will checkpoint after the running compiled call "
                    "(up to config.steps_per_call steps) and stop (signal %d of %d: the %s exits at "
                    "once)", signum, len(_received), EXIT_AT_ONCE,
                    "third" if EXIT_AT_ONCE == 3 else f"{EXIT_AT_ONCE}th")

  # --- queries ------------------------------------------------------------------------------------
  def request(self) -> None:
    """Asks for a stop at the next step boundary (what the signal handler does)."""
    self._requested.set()

  @property
  def requested(self) -> bool:
    return self._requested.is_set()

  def should_stop(self, step: int) -> bool:
    """True when the run must checkpoint ``step`` and stop (all hosts agree on multi-host runs)."""
    if jax.process_count() > 1:
      try:
        from jax.experimental import multihost_utils
        return bool(multihost_utils.reached_preemption_sync_point(int(step)))
      except Exception:  # noqa: BLE001 - preemption service not initialised: no sync, no stop
        return False
    return self._requested.is_set()
