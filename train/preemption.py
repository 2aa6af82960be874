"""Preemption: SIGTERM makes the trainer save a checkpoint at the next step boundary and return.

Preemptible TPU VMs, spot GPUs and most schedulers (Kubernetes, Slurm with ``--signal``) send SIGTERM
some seconds before they kill a job. ``PreemptionGuard`` turns that signal into a flag that the trainer
reads after every step; the trainer then checkpoints the state of that step and returns
``{"step": s, "preempted": True, ...}`` without evaluating, and the process exits with status 0.
Rerunning the same command on the same workdir resumes from that checkpoint exactly.

* A second SIGTERM while the checkpoint is being written gets the handler that was installed before
  (by default: terminate at once), so a stuck save can still be killed.
* The handler can only be installed from the main thread; elsewhere the guard only honours
  :meth:`PreemptionGuard.request` (e.g. from your own signal handling).
* With several processes (a multi-host pod), a local flag is not enough: every host must stop at the
  same step or the others hang in a collective. There the guard installs no handler and asks JAX's
  preemption sync service (``multihost_utils.reached_preemption_sync_point``, set up by
  ``jax.distributed.initialize``, which catches SIGTERM on every host itself) at every step.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

import jax
from absl import logging


class PreemptionGuard:
  """Catches ``signals`` (default SIGTERM) between :meth:`install` and :meth:`uninstall`."""

  def __init__(self, signals=(signal.SIGTERM,)):
    self.signals = tuple(signals)
    self.received: Optional[int] = None  # the signal number, once one arrived
    self._previous = {}
    self._requested = threading.Event()

  # --- installation -------------------------------------------------------------------------------
  def install(self) -> "PreemptionGuard":
    if jax.process_count() > 1:
      return self  # JAX's preemption notifier owns SIGTERM; a Python handler would replace it
    if threading.current_thread() is not threading.main_thread():
      logging.info("PreemptionGuard: not the main thread, SIGTERM is not caught")
      return self
    for sig in self.signals:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def uninstall(self) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    self._previous = {}

  def __enter__(self):
    return self.install()

  def __exit__(self, *exc):
    self.uninstall()

  def _handle(self, signum, frame):  # noqa: ARG002 - signal handler signature
    self.received = signum
    self._requested.set()
    # The next identical signal gets the previous handler (default: terminate now).
    previous = self._previous.get(signum, signal.SIG_DFL)
    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    logging.warning("received signal %d: the run will checkpoint after the current step and stop",
                    signum)

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
