"""Name -> model class registry."""

from __future__ import annotations

from typing import Callable, Dict

MODELS: Dict[str, Callable] = {}


def register_model(name: str):
  def deco(cls):
    if name in MODELS:
      raise ValueError(f"model {name!r} is registered twice")
    MODELS[name] = cls
    return cls
  return deco


def get_model(name: str, **kwargs):
  """Builds the model registered as ``name`` with ``kwargs`` (e.g. ``num_classes``)."""
  if name not in MODELS:
    raise ValueError(
        f"Unknown model {name!r}; known models: {sorted(MODELS)}.")
  return MODELS[name](**kwargs)
