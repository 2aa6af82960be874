"""Command line: ``python -m labelwise.train --config=configs/digits_ce.py[:runlocal] --workdir=DIR``.

Any config value can be overridden: ``--config.total_steps=500 --config.optimizer.learning_rate=0.1``.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from labelwise.train import trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  results = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  logging.info("results: %s", results)
  print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in sorted(results.items())))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
