"""The objective contract: a method's loss takes its numeric hyperparameters as traced arrays.

For each method, the loss and its gradient vmapped over two values of a hyperparameter (traced, one
compilation) equal those of the loss called eagerly with each value, and the value matters. A ``float(...)`` cast of a
hyperparameter in the loss path fails here (a tracer cannot be cast).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise.train import trainer as trainer_lib
from labelwise.train.methods.base import StepContext
from tests.helpers import load_config

# The slow-marked cases run in `make test-slow` (the suite's time budget).
CASES = [
    ("digits_fierce", "runlocal", {}, "lambda", (0.0, 2.0)),
    ("digits_fierce", "runlocal", {}, "label_smoothing", (0.0, 0.3)),
    pytest.param("digits_fierce", "runlocal", {}, "temperature", (0.5, 2.0),
                 marks=pytest.mark.slow),
    ("diabetes_label_smoothing", "runlocal", {}, "alpha", (0.0, 0.4)),
    pytest.param("diabetes_sord", "runlocal", {}, "scale", (0.5, 3.0),
                 marks=pytest.mark.slow),
    pytest.param("hierarchy_hierarchical_soft", "runlocal", {}, "beta", (0.5, 3.0),
                 marks=pytest.mark.slow),
    ("gaussians_avgk", "runlocal,method=two_head", {}, "weight", (0.0, 1.0)),
    pytest.param("gaussians_avgk", "runlocal,method=epr", {}, "weight", (0.0, 5.0),
                 marks=pytest.mark.slow),
    ("digits_collision_soft", "runlocal", {}, "noise_level", (0.0, 0.5)),
    pytest.param("digits_collision_soft", "runlocal", {}, "noise_seed", (0, 1),
                 marks=pytest.mark.slow),
    # EM to a fixed iteration count (tol 0): with a tolerance, the fused (jit) and op-by-op (eager)
    # solvers can stop an iteration apart, which moves the gradient by ~1e-3 relative (seen on CI).
    ("digits_cluster", "runlocal",
     {"collision_cluster__tol": 0.0, "collision_cluster__max_iter": 50},
     "fairness_weight", (0.5, 2.0)),
]


@pytest.mark.parametrize("module, arg, overrides, option, values", CASES)
def test_loss_is_a_function_of_traced_hparams(module, arg, overrides, option, values, tmp_path):
  config = load_config(module, arg, **overrides)
  tr = trainer_lib.Trainer(config, str(tmp_path))
  method = tr.method
  assert option in method.hparam_names()
  state = tr.initial_state()
  batch = {k: jnp.asarray(v) for k, v in tr.host_batch(0).items()}

  def loss_at(params, h):
    ctx = StepContext(params=params, model_state=state.model_state, buffers=state.buffers,
                      batch=batch, key=jax.random.PRNGKey(3), train=True, axis_name=None,
                      apply_fn=tr.model.apply, hparams=h)
    return method.loss(ctx).loss

  value_and_grad = jax.value_and_grad(loss_at)
  base = method.hparams()
  sets = [{**base, option: np.asarray(v, base[option].dtype)} for v in values]
  stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), *sets)
  traced = jax.jit(jax.vmap(value_and_grad, in_axes=(None, 0)))(state.params, stacked)
  for i, h in enumerate(sets):
    eager = value_and_grad(state.params, h)
    for t, e in zip(jax.tree_util.tree_leaves(traced), jax.tree_util.tree_leaves(eager)):
      np.testing.assert_allclose(np.asarray(t)[i], np.asarray(e), rtol=1e-5, atol=1e-6)
  # the value matters (for the loss or its gradient: FIERCE's temperature acts on the gradient)
  diff = max(float(np.max(np.abs(np.asarray(t)[0] - np.asarray(t)[1])))
             for t in jax.tree_util.tree_leaves(traced))
  assert diff > 1e-6, f"{option} changes neither the loss nor its gradient"
