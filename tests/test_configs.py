"""Every config file builds (default and :runlocal), names registered parts, and passes validation."""

import importlib
import os

import pytest

from labelwise.train import trainer
from labelwise.train.methods import get_method

_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
_CONFIGS = sorted(f[:-3] for f in os.listdir(_DIR)
                  if f.endswith(".py") and f not in ("__init__.py", "common.py", "registry.py")
                  and not f.endswith("_common.py"))


@pytest.mark.parametrize("name", _CONFIGS)
@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_config_builds_and_validates(name, arg):
  module = importlib.import_module(f"labelwise.configs.{name}")
  assert module.__doc__ and "--config=configs/" in module.__doc__, "docstring must show the command"
  config = module.get_config(arg)
  for key in ("dataset", "model", "method", "parallel", "seed", "batch_size", "total_steps",
              "log_every", "eval_every", "checkpoint_every", "optimizer"):
    assert key in config, key
  trainer.validate_config(config)   # names, parallel mode, divisibility by the 4 test devices
  get_method(config)                # the method's own options are known and in range
  if arg == "runlocal":
    assert config.total_steps <= 100


@pytest.mark.parametrize("name", _CONFIGS)
def test_unknown_config_argument_is_refused_with_the_known_ones(name):
  """Issue 16: ``digits_ce.py:runloca`` ran the full 1000 steps; every config refuses such a token."""
  module = importlib.import_module(f"labelwise.configs.{name}")
  with pytest.raises(ValueError, match=r"unknown config argument 'runloca' in '.*'; this "
                                       r"config knows: .*runlocal.*seed"):
    module.get_config("runloca")
  with pytest.raises(ValueError, match=r"unknown config arguments 'sed', 'lr' in"):
    module.get_config("runlocal,sed=1,lr=3")
  assert module.get_config("runlocal,seed=1").seed == 1  # the common tokens stay known


def test_parse_arg_checks_against_the_declared_tokens():
  from labelwise.configs.common import parse_arg
  assert parse_arg("runlocal, seed=3,", known=("runlocal", "seed")) == {"runlocal": True,
                                                                         "seed": "3"}
  assert parse_arg(None, known=()) == {}
  with pytest.raises(ValueError, match=r"'r' in 'r=2'; this config knows: a, b"):
    parse_arg("r=2", known=("b", "a"))
