"""A training run for the kill/resume and preemption tests, as a subprocess or in-process.

    python -m tests.kill_worker WORKDIR '{"total_steps": 40, "checkpoint_every": 7}' [SLEEP_S]

Trains ``configs/digits_ce.py:runlocal`` with the JSON overrides (dotted keys as ``a__b``) and the
method ``_test_slow_ce``: cross-entropy (identical updates) that sleeps ``SLEEP_S`` seconds on the
host before every step, so that a parent process can kill it at a step of its choosing. Prints the
results dict as JSON on the last line of stdout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from labelwise.train import methods as methods_lib
from labelwise.train.methods.ce import CrossEntropy

SLEEP_ENV = "LABELWISE_TEST_SLEEP_S"
# Before its n-th step (counted in this process) the worker waits, up to 120 s, for a signal: the
# parent's SIGKILL, or a SIGTERM, after which it runs that step and stops. Makes the tests immune to
# a slow parent on a loaded machine.
HOLD_ENV = "LABELWISE_TEST_HOLD_AT"
# "DIR,SECONDS": every checkpoint save first creates DIR/saving.<step>, then sleeps SECONDS inside
# the save, so that a parent can send signals while a save is running.
SLOW_SAVE_ENV = "LABELWISE_TEST_SLOW_SAVE"


def _slow_saves(spec: str) -> None:
  import orbax.checkpoint as ocp
  marks, seconds = spec.rsplit(",", 1)
  real = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    open(os.path.join(marks, f"saving.{int(step)}"), "w").close()
    time.sleep(float(seconds))
    return real(self, step, *args, **kwargs)
  ocp.CheckpointManager.save = save


@methods_lib.register_method("_test_slow_ce")
class SlowCrossEntropy(CrossEntropy):
  """Cross-entropy that sleeps before every step (and can signal itself at a given step)."""

  # (n, signal number): the process sends itself the signal before its n-th step (counted from 1
  # in this process, whatever step it resumed from).
  signal_before_call = None

  def needs_host_update(self, step):
    return True

  def host_update(self, host):
    self.calls = getattr(self, "calls", 0) + 1
    time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
    if os.environ.get(HOLD_ENV) and self.calls >= int(os.environ[HOLD_ENV]):
      end = time.time() + 120
      while time.time() < end and not host.stop_requested():
        time.sleep(0.02)
    if self.signal_before_call is not None and self.calls == self.signal_before_call[0]:
      os.kill(os.getpid(), self.signal_before_call[1])
    return None


def config(**overrides):
  from tests.helpers import load_config
  overrides = {"method": "_test_slow_ce", "log_every": 1, "progress_bar": False,
               "tensorboard": False, **overrides}
  return load_config("digits_ce", "runlocal", **overrides)


def main(argv):
  workdir, overrides = argv[1], json.loads(argv[2])
  if len(argv) > 3:
    os.environ[SLEEP_ENV] = argv[3]
  if os.environ.get(SLOW_SAVE_ENV):
    _slow_saves(os.environ[SLOW_SAVE_ENV])
  from labelwise.train import trainer
  results = trainer.train_and_evaluate(config(**overrides), workdir)
  print(json.dumps(results, sort_keys=True), flush=True)


if __name__ == "__main__":
  main(sys.argv)


@methods_lib.register_method("_test_nan_from_step_7")
class NanFromStep7(CrossEntropy):
  """Cross-entropy whose loss is NaN from step index 7 on (the 8th step)."""

  def loss(self, ctx):
    import jax.numpy as jnp
    out = super().loss(ctx)
    return out._replace(loss=out.loss + jnp.where(ctx.step >= 7, jnp.nan, 0.0))
