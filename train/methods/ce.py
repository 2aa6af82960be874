"""Softmax cross-entropy with the one-hot label: the baseline."""

from __future__ import annotations

import jax.numpy as jnp

from labelwise import losses
from labelwise.eval import metrics as metrics_lib
from labelwise.train.methods.base import LossOutput, Method, StepContext


class CrossEntropy(Method):
  """``mean_i -log softmax(z_i)[y_i]``."""
  name = "ce"
  defaults = {}

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    per_example = losses.softmax_cross_entropy(outputs["logits"], ctx.batch["label"])
    acc = metrics_lib.accuracy(outputs["logits"], ctx.batch["label"])
    return LossOutput(jnp.mean(per_example), {"accuracy": jnp.mean(acc)}, model_state)
