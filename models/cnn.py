"""Small convolutional networks without BatchNorm (safe for input-gradient penalties).

``small_cnn`` ends with global average pooling; ``attribution_cnn`` (the attribution study's model)
is the same network with narrower layers and no global pooling, so that where a pattern is stays
visible to the classifier.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from labelwise.models.conv import conv_fn
from labelwise.models.heads import Heads
from labelwise.models.registry import register_model


def max_pool(x, window: Sequence[int]):
  """Non-overlapping max pooling (stride = window, VALID padding) as a reshape and a max.

  Same values as ``flax.linen.max_pool(x, window, strides=window)`` for ``x`` of shape
  ``[B, *spatial, C]``. We do not call that function because of its gradient on XLA:CPU: the
  ``reduce_window`` max-pool is differentiated through a variadic reduce_window that carries one
  int32 iota the size of the input per spatial dimension (the argmax position); in the profile of
  the SmallCNN batch-128 training step (``benchmarks/profile_cpu.py``) those iotas and that
  reduce_window took more time than both convolutions. The reduce-max gradient used here is a
  compare-and-select; the only difference is at ties inside one window, where it splits the gradient
  equally instead of sending it to one element (after a ReLU the usual tie is all zeros, where the
  ReLU gradient is zero either way).
  """
  window = tuple(int(w) for w in window)
  spatial = x.ndim - 2
  if len(window) != spatial:
    raise ValueError(f"max_pool: window {window} must have one size per spatial axis of x with "
                     f"shape {x.shape} ({spatial})")
  kept = tuple(s // w * w for s, w in zip(x.shape[1:-1], window))
  x = x[(slice(None),) + tuple(slice(0, k) for k in kept)]
  split = sum(((k // w, w) for k, w in zip(kept, window)), ())
  x = x.reshape((x.shape[0],) + split + (x.shape[-1],))
  return jnp.max(x, axis=tuple(2 + 2 * i for i in range(spatial)))


@register_model("small_cnn")
class SmallCNN(nn.Module):
  """conv3x3-relu-(2x2 max pool) blocks, global average pooling, a dense layer, then the heads.

  1-D inputs ``[B, L]`` are treated as ``[B, L, 1]`` signals (1-D convolutions); images
  ``[B, H, W]`` get a channel axis. With ``global_pool=False`` the last feature map is flattened
  instead of averaged. ``conv_impl``: see ``labelwise.models.conv`` (``"auto"``: a fast kernel
  gradient on CPU; ``"xla"``: plain ``lax.conv_general_dilated``).
  """
  num_classes: int
  channels: Sequence[int] = (32, 64)
  dense: int = 128
  extra_heads: Optional[Mapping[str, int]] = None
  dtype: jnp.dtype = jnp.float32
  global_pool: bool = True
  conv_impl: str = "auto"

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
      x = nn.relu(nn.Conv(ch, kernel, dtype=self.dtype,
                           conv_general_dilated=conv_fn(self.conv_impl))(x))
      if min(x.shape[1:-1]) >= 4:
        x = max_pool(x, window)
    if self.global_pool:
      x = jnp.mean(x, axis=tuple(range(1, 1 + spatial)))
    else:
      x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype)(x))
    return Heads(self.num_classes, self.extra_heads, self.dtype)(x)


@register_model("attribution_cnn")
class AttributionCNN(SmallCNN):
  """The attribution study's model: ``small_cnn`` with (16, 32) channels and no global pooling.

  conv3x3-ReLU-maxpool blocks, flatten, a dense ReLU layer (the ``features``), then the heads. No
  BatchNorm (input-gradient penalties and ActDiff's second pass need per-example models) and no
  global pooling (the position of a pattern stays visible to the classifier).
  """
  channels: Sequence[int] = (16, 32)
  global_pool: bool = False
