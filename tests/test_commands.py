"""Every ``python -m labelwise.train`` command of README.md and of each config's docstring runs.

Each command is parsed by the trainer's own flags (``ml_collections.config_flags`` with the config
locked, as ``labelwise.train.main`` does), cut to a few steps with a small batch on ONE device, and
trained in-process with ``train_and_evaluate``. Issue 16: README's ``--config.parallel=shard_map``
MNIST-1D command crashed on a one-device machine while ``make test`` (4 fake devices) passed.
Commands of catalog datasets (``python -m labelwise.data.prepare ...`` first, network) are checked
up to ``validate_config`` only. ``make test`` trains README's commands; ``make test-slow`` every one.
"""

import ast
import glob
import os
import re
import shlex

import pytest
from absl import flags
from ml_collections import config_flags

from labelwise.data.registry import get_dataset_spec
from labelwise.train import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Appended to every command: a couple of steps, a small batch, one device, no checkpoints.
CUT = ["--config.total_steps=2", "--config.log_every=1", "--config.checkpoint_every=-1",
       "--config.eval_every=0", "--config.progress_bar=False", "--config.tensorboard=False",
       "--config.num_devices=1"]


def _commands(path):
  """The ``python -m labelwise.train`` commands of README.md, or of a config module's docstring."""
  with open(path) as f:
    text = f.read()
  if path.endswith(".py"):
    text = ast.get_docstring(ast.parse(text)) or ""
  text = text.replace("\\\n", " ")
  out = []
  for line in text.splitlines():
    m = re.search(r"python -m labelwise\.train (.*)", line)
    if m:
      args = shlex.split(m.group(1).split("#")[0])
      if any("..." in a for a in args) or not any(a.startswith("--workdir") for a in args):
        continue  # a placeholder in prose, or --list-configs / --show_config (nothing trained)
      config = [a for a in args if a.startswith("--config=")]
      if config and config[0].split("=", 1)[1].split(":")[0].startswith("path/to/"):
        continue  # the user's own config file
      out.append((os.path.relpath(path, REPO), args))
  return out


README = _commands(os.path.join(REPO, "README.md"))
CONFIGS = [c for p in sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
           for c in _commands(p)]


def _user_data(path):
  """The ``$LABELWISE_...`` folder a config's docstring says to export, if it is not set."""
  if not path.endswith(".py"):
    return None
  with open(os.path.join(REPO, path)) as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  unset = [v for v in re.findall(r"\b(LABELWISE_[A-Z_]*FOLDER)\b", doc) if not os.environ.get(v)]
  return unset[0] if unset else None


def _parse(args, *, small_batch):
  from labelwise.train import main
  argv = main.prepare_argv(  # --config by shipped name, module or path, as the command line
      ["labelwise.train"] + [a for a in args if not a.startswith("--coordinator_address")])
  fv = flags.FlagValues()
  # as train/main.py; sys_argv: the override flags (--config.x=...) are declared from the command
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  fv(argv)
  config = fv.config
  if small_batch:
    config.batch_size = config.eval_batch_size = min(int(config.batch_size), 16)
  return config


def _check(path, args, tmp_path, *, train, small_batch=True):
  args = [a for a in args if not a.startswith("--workdir")] + CUT
  cwd = os.getcwd()
  os.chdir(REPO)  # the commands name configs/<file>.py relative to the repository
  try:
    config = _parse(args, small_batch=small_batch)
  finally:
    os.chdir(cwd)
  trainer.validate_config(config)
  if not train or get_dataset_spec(config.dataset).catalog:
    return None
  needs = _user_data(path)
  if needs:
    pytest.skip(f"reads the user's files (${needs} is not set)")
  results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["step"] == 2, (path, args)
  return results


def test_readme_has_the_shard_map_command():
  assert any("--config.parallel=shard_map" in a and "mnist1d_ce" in a
             for _, a in README for a in [" ".join(a)])


@pytest.mark.parametrize("path,args", README, ids=[" ".join(a) for _, a in README])
def test_readme_command_trains_on_one_device(path, args, tmp_path):
  # README's batch sizes as written: the shard_map failure needed a per-device batch large enough
  # for the convolution gradient to be chunked.
  _check(path, args, tmp_path, train=True, small_batch=False)


@pytest.mark.parametrize("path,args", CONFIGS, ids=[f"{p}: {' '.join(a)}" for p, a in CONFIGS])
def test_config_command_parses_and_validates(path, args, tmp_path):
  _check(path, args, tmp_path, train=False)


@pytest.mark.slow
@pytest.mark.parametrize("path,args", CONFIGS, ids=[f"{p}: {' '.join(a)}" for p, a in CONFIGS])
def test_config_command_trains_on_one_device(path, args, tmp_path):
  _check(path, args, tmp_path, train=True)
