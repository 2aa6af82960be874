"""Every config file builds (default and :runlocal), names registered parts, and passes validation."""

import importlib
import os

import pytest

from labelwise.train import trainer
from labelwise.train.methods import get_method

_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
_CONFIGS = sorted(f[:-3] for f in os.listdir(_DIR)
                  if f.endswith(".py") and f not in ("__init__.py", "common.py")
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
