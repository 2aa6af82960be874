"""ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""

from __future__ import annotations

import functools
from typing import Mapping, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from labelwise.models.conv import conv_fn
from labelwise.models.heads import Heads
from labelwise.models.registry import register_model


class BasicBlock(nn.Module):
  filters: int
  strides: int
  norm: functools.partial
  dtype: jnp.dtype
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             conv_general_dilated=conv_fn(self.conv_impl))
    y = conv(self.filters, (3, 3), (self.strides, self.strides), padding=1)(x)
    y = nn.relu(self.norm()(y))
    y = conv(self.filters, (3, 3), padding=1)(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)
    if x.shape != y.shape:
      x = conv(self.filters, (1, 1), (self.strides, self.strides))(x)
      x = self.norm()(x)
    return nn.relu(x + y)


@register_model("resnet18")
class ResNet18(nn.Module):
  """ResNet-18 (CIFAR variant).

  ``norm="batch"``: BatchNorm whose batch statistics are averaged over the ``axis_name`` devices
  (cross-replica BN: pass ``bn_axis_name="data"`` under pmap/shard_map), running averages in the
  ``batch_stats`` collection. ``norm="group"``: GroupNorm (no cross-example state).
  ``conv_impl``: see ``labelwise.models.conv`` (``"auto"``: a fast kernel gradient on CPU).
  """
  num_classes: int
  width: int = 64
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  norm: str = "batch"
  bn_axis_name: Optional[str] = None
  extra_heads: Optional[Mapping[str, int]] = None
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.norm == "batch":
      norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                               epsilon=1e-5, dtype=self.dtype, axis_name=self.bn_axis_name)
    elif self.norm == "group":
      norm = functools.partial(nn.GroupNorm, num_groups=min(32, self.width), dtype=self.dtype)
    else:
      raise ValueError(f"`norm` must be 'batch' or 'group', got {self.norm!r}.")
    x = x.astype(self.dtype)
    if x.ndim == 3:
      x = x[..., None]
    x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                conv_general_dilated=conv_fn(self.conv_impl))(x)
    x = nn.relu(norm()(x))
    for i, blocks in enumerate(self.stage_sizes):
      for j in range(blocks):
        x = BasicBlock(self.width * 2**i, 2 if (i > 0 and j == 0) else 1, norm, self.dtype,
                       self.conv_impl)(x)
    x = jnp.mean(x, axis=(1, 2))
    return Heads(self.num_classes, self.extra_heads, self.dtype)(x)
