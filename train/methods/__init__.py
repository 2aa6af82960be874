"""Method registry: ``get_method(config)`` builds ``config.method``."""

from __future__ import annotations

from typing import Dict, Type

from labelwise.train.methods.base import LossOutput, Method, RunInfo, StepContext

METHODS: Dict[str, Type[Method]] = {}


def register_method(name: str):
  """Class decorator registering a :class:`Method` subclass under ``name``."""
  def deco(cls):
    if name in METHODS:
      raise ValueError(f"method {name!r} is registered twice")
    cls.name = name
    METHODS[name] = cls
    return cls
  return deco


def get_method(config) -> Method:
  name = config.method
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; known methods: {sorted(METHODS)}.")
  return METHODS[name](config)


# Method modules register themselves on import (one line each).
from labelwise.train.methods import ce  # noqa: E402,F401
from labelwise.train.methods import attribution  # noqa: E402,F401
from labelwise.train.methods import average_k  # noqa: E402,F401
from labelwise.train.methods import collision  # noqa: E402,F401
from labelwise.train.methods import fierce  # noqa: E402,F401
from labelwise.train.methods import simloss  # noqa: E402,F401
