"""Small convolutional networks without BatchNorm (safe for input-gradient penalties).

``small_cnn`` ends with global average pooling; ``attribution_cnn`` (the attribution study's model)
is the same network with narrower layers and no global pooling, so that where a pattern is stays
visible to the classifier.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from labelwise.models.conv import conv_fn
from labelwise.models.heads import Heads
from labelwise.models.registry import register_model


def max_pool(x, window: Sequence[int]):
  """Non-overlapping max pooling (stride = window, VALID padding) without ``reduce_window``.

  Same values and same gradients as ``flax.linen.max_pool(x, window, strides=window)`` for ``x`` of
  shape ``[B, *spatial, C]``, ties included: the gradient of a window goes to its first maximal
  element in row-major order, as in flax and PyTorch (this matters for input gradients of images
  with flat regions: GradMask/RRR penalties and saliency maps). We do not call flax's function because
  of its gradient on XLA:CPU: ``reduce_window`` max-pooling is differentiated through a variadic
  reduce_window that carries one int32 iota the size of the input per spatial dimension (the argmax
  position); in the profile of the SmallCNN batch-128 training step (``benchmarks/profile_cpu.py``)
  those iotas took more time than the convolutions. Here the input is reshaped to expose each
  window's offsets and the first maximal element is selected with a chain of ``where``s, so the
  gradient is a compare-and-select.
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
  # One view per window offset, in row-major order of the offsets.
  views = []
  for offset in itertools.product(*(range(w) for w in window)):
    index = [slice(None)]
    for o in offset:
      index += [slice(None), o]
    views.append(x[tuple(index)])
  best = views[0]
  for v in views[1:]:
    best = jnp.maximum(best, v)
  out = views[-1]
  for v in reversed(views[:-1]):  # the first view equal to the max wins
    out = jnp.where(v == best, v, out)
  return out


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
