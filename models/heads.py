"""Output heads shared by every model: the classifier plus optional extra linear heads."""

from __future__ import annotations

from typing import Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp


class Heads(nn.Module):
  """Maps features [B, D] to ``{"logits": [B, C], "features": [B, D], <head>: [B, dim], ...}``."""
  num_classes: int
  extra_heads: Optional[Mapping[str, int]] = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features):
    # Logits are computed in the model dtype then cast: losses always work in float32.
    out = {"features": features.astype(jnp.float32),
           "logits": nn.Dense(self.num_classes, dtype=self.dtype, name="head")(
               features).astype(jnp.float32)}
    for head, dim in sorted(dict(self.extra_heads or {}).items()):
      if head in out:
        raise ValueError(f"extra head name {head!r} clashes with a built-in output")
      out[head] = nn.Dense(int(dim), dtype=self.dtype, name=f"head_{head}")(
          features).astype(jnp.float32)
    return out
