"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from labelwise.models.heads import Heads
from labelwise.models.registry import register_model


@register_model("mlp")
class MLP(nn.Module):
  """``hidden`` ReLU layers, then the heads. Inputs of any shape ``[B, ...]`` are flattened.

  ``linear_features=True`` leaves the last hidden layer without its ReLU: the features are a linear
  map of the layer below (e.g. the 1-D bottleneck feature of the FIERCE study, which a ReLU would
  clip at 0).
  """
  num_classes: int
  hidden: Sequence[int] = (128, 128)
  linear_features: bool = False
  extra_heads: Optional[Mapping[str, int]] = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout / BatchNorm
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, dtype=self.dtype)(x)
      if not (self.linear_features and i == len(self.hidden) - 1):
        x = nn.relu(x)
    return Heads(self.num_classes, self.extra_heads, self.dtype)(x)
