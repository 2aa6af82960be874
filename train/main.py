"""Command line: ``python -m labelwise.train --config=NAME[:ARGS] --workdir=DIR [--config.KEY=VALUE ...]``.

``--config`` is a shipped config's name (``digits_ce``), a module (``labelwise.configs.digits_ce``) or a
file (``path/to/config.py``), each with ``:ARGS`` (``digits_ce:runlocal``). Any config value can be
overridden: ``--config.total_steps=500 --config.optimizer.learning_rate=0.1``.
"""

from __future__ import annotations

import sys
from typing import List, NoReturn, Optional

from absl import app, flags, logging
from ml_collections import config_flags

from labelwise.configs import registry

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "The config: a shipped config's name (see --list_configs), a module "
    "(labelwise.configs.digits_ce) or a file path, each with :ARGS (digits_ce:runlocal).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results "
                               "(a workdir is one run: starting again resumes it).")
_LIST = flags.DEFINE_bool("list_configs", False, "Print the shipped configs with their one-line "
                          "description and exit (also --list-configs).")
_SHOW = flags.DEFINE_bool("show_config", False, "Print the resolved config (every key that "
                          "--config.KEY=VALUE can set, after overrides) and exit; needs no --workdir.")
# Multi-host runs (docs/multihost.md): all three, the same address and count on every process.
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0's coordinator (multi-process runs), or "
    "'auto' to let JAX detect a TPU pod slice / Slurm / Open MPI cluster; default: "
    "$JAX_COORDINATOR_ADDRESS with $JAX_NUM_PROCESSES and $JAX_PROCESS_ID, or a detected cluster.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")

_OWN_FLAGS = ("config", "workdir", "list_configs", "show_config", "coordinator_address",
              "num_processes", "process_id")
_HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "-?")
_DASHED = {"--list-configs": "--list_configs", "--show-config": "--show_config"}
USAGE_ERROR = 2  # exit status of a command-line or config error (as argparse)


def help_text() -> str:
  """``--help``: usage, the trainer's own flags, how to find configs and their keys."""
  lines = ["usage: python -m labelwise.train --config=NAME[:ARGS] --workdir=DIR [--config.KEY=VALUE ...]",
           "", "Trains one config (resuming its workdir if it holds a checkpoint), evaluates it and",
           "prints the results. Flags:", ""]
  for name in _OWN_FLAGS:
    flag = flags.FLAGS[name]
    default = "" if flag.default in (None, False) else f" (default: {flag.default})"
    lines.append(f"  --{name}")
    lines.append(f"      {flag.help}{default}")
  lines += ["", "Configs and their keys:",
            "  python -m labelwise.train --list-configs                      # shipped configs",
            "  python -m labelwise.train --config=digits_ce --show_config    # its keys and values",
            "  python -m labelwise.train --config=digits_ce:runlocal --workdir=runs/smoke",
            "  python -m labelwise.train --config=digits_ce --workdir=runs/d --config.total_steps=500",
            "Configs are locked: a misspelt --config.KEY is an error. --helpfull lists every flag",
            "(also absl's logging flags, e.g. --verbosity=0 for INFO logs)."]
  return "\n".join(lines)


def fail(message: str) -> NoReturn:
  """One line on stderr, no traceback, exit status 2 (a usage or config error)."""
  print(f"labelwise.train: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(USAGE_ERROR)


def _message(error: BaseException) -> str:
  """The readable text of ``error`` (ml_collections wraps a KeyError's repr in an AttributeError)."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  text = str(error.args[0]) if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
  text = ". ".join(line.strip() for line in text.splitlines() if line.strip())
  if isinstance(error, (KeyError, AttributeError)):
    return f"no config key {text}" if text.startswith("'") else text
  return text


def _config_value(argv: List[str], i: int) -> Optional[tuple]:
  """(index of the value, value) when ``argv[i]`` is ``--config=X`` or ``--config X``."""
  if argv[i].startswith("--config="):
    return i, argv[i][len("--config="):]
  if argv[i] == "--config" and i + 1 < len(argv):
    return i + 1, argv[i + 1]
  return None


def prepare_argv(argv: List[str]) -> List[str]:
  """Dashed aliases to flag names; ``--config`` resolved from a name or module to its file."""
  argv = [_DASHED.get(a, a) for a in argv]
  for i in range(1, len(argv)):
    found = _config_value(argv, i)
    if found:
      index, value = found
      try:
        resolved = registry.resolve(value)
      except registry.ConfigNotFoundError as e:
        fail(str(e))
      argv[index] = f"--config={resolved}" if index == i else resolved
  return argv


def parse_flags(argv: List[str]) -> List[str]:
  """absl flag parsing whose errors (bad values, misspelt config keys) are one line and exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(e)
  except (KeyError, AttributeError, ValueError, TypeError) as e:  # config overrides, config loading
    fail(f"--config: {_message(e)}")


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value; see --help)")
  if _LIST.value:
    print(registry.format_config_list())
    return
  if _CONFIG.value is None:
    fail("--config is required (a shipped config's name, see --list-configs; or a file path).")
  if _SHOW.value:
    print(_CONFIG.value)
    return
  if _WORKDIR.value is None:
    fail("--workdir is required (the run's directory; see --help).")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  from labelwise.train import distributed, trainer  # here: --help and --list-configs stay fast
  try:  # before anything touches a device
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as e:
    fail(e)
  from labelwise.train import methods
  try:  # names, sizes, devices, the method's options: before any data is read
    trainer.validate_config(_CONFIG.value)
    methods.get_method(_CONFIG.value)
  except ValueError as e:
    fail(f"config: {e}")
  results = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  logging.info("results: %s", results)
  if not distributed.is_main_process():
    return
  print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in sorted(results.items())))


def run(argv: Optional[List[str]] = None):
  argv = list(sys.argv if argv is None else argv)
  if any(a in _HELP_ARGS for a in argv[1:]):
    print(help_text())
    sys.exit(0)
  app.run(main, argv=prepare_argv(argv), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
