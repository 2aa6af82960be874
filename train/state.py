"""The train state: a plain pytree (saved whole by orbax)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class TrainState:
  """step, params, optimizer state, model state (BatchNorm statistics), method buffers, rng, and
  ``skipped`` (int32: steps whose update ``nan_policy="skip"`` dropped, counted on the device).

  ``rng`` is raw ``uint32[2]`` key data so that checkpoints hold plain arrays.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  buffers: Any
  rng: jax.Array
  skipped: jax.Array = flax.struct.field(default_factory=lambda: np.zeros((), np.int32))


def create_state(model, tx, method, info, *, seed: int, sample_input) -> TrainState:
  root = jax.random.PRNGKey(seed)
  init_key, buffer_key, step_key = jax.random.split(root, 3)
  variables = model.init(init_key, sample_input, train=False)
  variables = dict(variables)
  params = variables.pop("params")
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      model_state=variables,
      buffers=method.init_buffers(buffer_key, info=info),
      rng=step_key,
      skipped=jnp.zeros((), jnp.int32),
  )
