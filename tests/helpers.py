"""Shared test helpers: tiny configs and runs."""

from __future__ import annotations

import importlib

import jax
import numpy as np


def load_config(module: str, arg: str = "runlocal", **overrides):
  """``configs/<module>.py:get_config(arg)`` with dotted ``overrides`` (e.g. ``optimizer__name``)."""
  from labelwise.configs import common
  config = importlib.import_module(f"labelwise.configs.{module}").get_config(arg)
  return common.override(config, **overrides)


def max_abs_diff(a, b) -> float:
  leaves_a = jax.tree_util.tree_leaves(a)
  leaves_b = jax.tree_util.tree_leaves(b)
  assert len(leaves_a) == len(leaves_b)
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(leaves_a, leaves_b))


def fake_eval_context(splits, *, config=None, eval_split="test", buffers=None, method=None,
                      dataset=None):
  """An ``EvalContext`` whose ``predictions(split)`` are the given ``{split: {name: array}}``."""
  import ml_collections
  from labelwise.eval.evaluators import EvalContext
  config = ml_collections.ConfigDict(config if config is not None
                                     else {"data": {"train_split": "train"}})
  return EvalContext(config=config, params=None, model_state=None, buffers=buffers or {},
                     model=None, method=method, dataset=dataset, eval_split=eval_split,
                     workdir=None,
                     predict_fn=lambda split: splits[split])
