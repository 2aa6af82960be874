"""Shared parts of the Fashion-MNIST configs: the 2-conv CNN baseline's model, optimizer and budget.

The network is ``small_cnn`` as the classic 2-conv CNN of the dataset's benchmark table: conv3x3
32 - 2x2 max pool - conv3x3 64 - 2x2 max pool - flatten - dense 128 (the ``features``) - the heads;
no BatchNorm (safe for input-gradient penalties) and no augmentation. Adam 1e-3 with a cosine
decay, batch 128, 4,300 steps (10 epochs of the 55,000 training images). Tuning happens on
``validation``; ``test`` is the eval split.
"""

from __future__ import annotations

import ml_collections

from labelwise.configs import common

STEPS = 4300  # 10 epochs at batch 128


def two_conv_cnn(c: ml_collections.ConfigDict, *, steps: int = STEPS) -> ml_collections.ConfigDict:
  """Sets the baseline's model, optimizer and budget on ``c`` (a ``common.base_config``)."""
  c.model_kwargs.channels = (32, 64)
  c.model_kwargs.dense = 128
  if c.model == "small_cnn":   # attribution_cnn flattens already
    c.model_kwargs.global_pool = False
  c.data.augment = False
  c.data.validation_split = "validation"
  c.data.eval_split = "test"
  c.batch_size = 128
  c.total_steps = steps
  c.log_every = 100
  c.checkpoint_every = 1000
  c.optimizer = common.optimizer("adam", 1e-3, schedule="cosine")
  return c


def runlocal(c: ml_collections.ConfigDict, *, steps: int = 20) -> ml_collections.ConfigDict:
  """A smoke run: ``steps`` steps, no checkpoints, the first 512 validation/test images."""
  common.apply_runlocal(c, steps=steps)
  c.checkpoint_every = -1
  c.data.validation_split = "validation[:512]"
  c.data.eval_split = "test[:512]"
  return c
