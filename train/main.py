"""Command line: ``python -m labelwise.train --config=configs/digits_ce.py[:runlocal] --workdir=DIR``.

Any config value can be overridden: ``--config.total_steps=500 --config.optimizer.learning_rate=0.1``.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from labelwise.train import distributed, trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])
# Multi-host runs (docs/multihost.md): all three, the same address and count on every process.
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0's coordinator (multi-process runs), or "
    "'auto' to let JAX detect a TPU pod slice / Slurm / Open MPI cluster; default: "
    "$JAX_COORDINATOR_ADDRESS with $JAX_NUM_PROCESSES and $JAX_PROCESS_ID, or a detected cluster.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  try:  # before anything touches a device
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  results = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  logging.info("results: %s", results)
  if not distributed.is_main_process():
    return
  print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in sorted(results.items())))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
