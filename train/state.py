"""The train state: a plain pytree (saved whole by orbax)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class TrainState:
  """step, params, optimizer state, model state (BatchNorm statistics), method buffers, rng,
  ``skipped`` (int32: steps whose update ``nan_policy="skip"`` dropped, counted on the device) and
  hyperparameters.

  ``rng`` is raw ``uint32[2]`` key data so that checkpoints hold plain arrays. ``hparams`` holds the
  run's numeric hyperparameters as arrays, ``{"method": {option: array}, "optimizer":
  {"learning_rate": array, "weight_decay": array}}``: the step reads them as traced values (a sweep
  stacks one set per replica). They are a function of the config, so checkpoints leave them out
  and a restore takes them from the template, i.e. from the config again
  (:mod:`labelwise.train.checkpoint`).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  buffers: Any
  rng: jax.Array
  skipped: jax.Array = flax.struct.field(default_factory=lambda: np.zeros((), np.int32))
  hparams: Any = flax.struct.field(default_factory=dict)


def run_hparams(method, opt) -> dict:
  """The hyperparameters of a run: the method's (:meth:`Method.hparams`) and the optimizer's."""
  return {"method": method.hparams(),
          "optimizer": {"learning_rate": np.asarray(opt.learning_rate, np.float32),
                        "weight_decay": np.asarray(opt.get("weight_decay", 0.0), np.float32)}}


def create_state(model, tx, method, info, *, seed: int, sample_input, hparams=None) -> TrainState:
  """The initial state from ``seed``; ``hparams`` default to the method's (no optimizer entry)."""
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
      hparams={"method": method.hparams()} if hparams is None else hparams,
  )
