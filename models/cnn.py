"""A small convolutional network without BatchNorm (safe for input-gradient penalties)."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from labelwise.models.heads import Heads
from labelwise.models.registry import register_model


@register_model("small_cnn")
class SmallCNN(nn.Module):
  """conv3x3-relu-(pool) blocks, global average pooling, a dense layer, then the heads.

  1-D inputs ``[B, L]`` are treated as ``[B, L, 1]`` signals (1-D convolutions); images
  ``[B, H, W]`` get a channel axis.
  """
  num_classes: int
  channels: Sequence[int] = (32, 64)
  dense: int = 128
  extra_heads: Optional[Mapping[str, int]] = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x.astype(self.dtype)
    if x.ndim == 2:           # [B, L] signal
      x = x[..., None]
    elif x.ndim == 3 and x.shape[-1] not in (1, 3):  # [B, H, W] image
      x = x[..., None]
    spatial = x.ndim - 2
    kernel, window = (3,) * spatial, (2,) * spatial
    for i, ch in enumerate(self.channels):
      x = nn.relu(nn.Conv(ch, kernel, dtype=self.dtype)(x))
      if min(x.shape[1:-1]) >= 4:
        x = nn.max_pool(x, window, strides=window)
    x = jnp.mean(x, axis=tuple(range(1, 1 + spatial)))
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype)(x))
    return Heads(self.num_classes, self.extra_heads, self.dtype)(x)
