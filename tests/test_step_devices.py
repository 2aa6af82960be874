"""The compiled step on 4 devices: per-device PRNG keys and model state averaged over devices.

Both tests drive ``train/step.py`` directly (``make_train_step`` + ``Parallel``) with tiny probe
methods, so they need no dataset and compile in about a second.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from labelwise.train.methods.base import LossOutput, Method
from labelwise.train.state import TrainState
from labelwise.train.step import Parallel, make_train_step

NUM_DEVICES = 4


class _KeyProbe(Method):
  """Loss 0; metrics: how many device pairs drew different uniforms, and device 0's draw."""

  def loss(self, ctx):
    draws = jax.lax.all_gather(jax.random.uniform(ctx.key), ctx.axis_name)  # [devices]
    unequal = (draws[:, None] != draws[None, :]).astype(jnp.float32)
    zero = 0.0 * ctx.params["w"]
    return LossOutput(zero, {"unequal_pairs": jnp.sum(jnp.triu(unequal, 1)),
                             "draw_device0": draws[0]}, ctx.model_state)


class _BatchMeanModel(nn.Module):
  """Keeps the mean of its training inputs in ``stats/mean``, per device (no axis name)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    mean = self.variable("stats", "mean", jnp.zeros, x.shape[1:])
    if train:
      mean.value = jnp.mean(x, axis=0)
    w = self.param("w", nn.initializers.zeros, (x.shape[-1], 2))
    return {"logits": x @ w, "features": x}


class _ApplyModel(Method):
  def loss(self, ctx):
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    return LossOutput(jnp.mean(outputs["logits"] ** 2), {}, model_state)


def _state(params, model_state):
  tx = optax.sgd(0.1)
  return tx, TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                        model_state=model_state, buffers={},
                        rng=jax.random.PRNGKey(0))


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_every_device_draws_its_own_key(mode):
  """Dropout masks, FIERCE's Gumbel noise and ActDiff's shuffles come from ``ctx.key``: it must differ
  between devices (and between steps), or every device repeats the same noise.

  Checked: with ``key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))`` deleted from
  ``train/step.py`` the 4 devices draw one value and ``unequal_pairs`` is 0 instead of 6 (fails
  under pmap and shard_map); with the code as it is, the test passes.
  """
  par = Parallel(mode, jax.devices()[:NUM_DEVICES])
  tx, state = _state({"w": jnp.zeros(())}, {})
  step = par.compile_train_step(make_train_step(_KeyProbe({}), None, tx, axis_name=par.axis_name))
  batch = par.put_batch({"input": np.zeros((NUM_DEVICES, 1), np.float32)})
  dev_state = par.put_state(state)
  draws = []
  for _ in range(2):
    dev_state, metrics = step(dev_state, batch)
    metrics = par.metrics_to_host(metrics)
    assert metrics["unequal_pairs"] == NUM_DEVICES * (NUM_DEVICES - 1) / 2
    draws.append(metrics["draw_device0"])
  assert draws[0] != draws[1]  # and a new key every step


@pytest.mark.parametrize("mode", ["pmap", "shard_map", "jit"])
def test_model_state_is_averaged_over_devices(mode):
  """A model whose state is a per-device batch mean: after one step the state every device holds
  is the mean over devices, i.e. the mean of the global batch (equal slices), as under jit.

  Checked: with ``model_state = _pmean(out.model_state, axis_name)`` replaced by
  ``model_state = out.model_state`` in ``train/step.py`` the pmap state is device 0's mean (the
  test fails) and shard_map refuses the device-varying output; the code as it is passes.
  """
  x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) ** 2  # rows differ: slices differ
  model = _BatchMeanModel()
  variables = dict(model.init(jax.random.PRNGKey(0), x[:1]))
  params = variables.pop("params")
  tx, state = _state(params, variables)
  par = Parallel(mode, jax.devices()[:NUM_DEVICES])
  step = par.compile_train_step(
      make_train_step(_ApplyModel({}), model.apply, tx, axis_name=par.axis_name))
  new_state, _ = step(par.put_state(state), par.put_batch({"input": x}))
  got = par.get_state(new_state).model_state["stats"]["mean"]
  np.testing.assert_allclose(got, x.mean(axis=0), rtol=1e-6)
  assert not np.allclose(x[:2].mean(axis=0), x.mean(axis=0))  # device 0 alone would differ


class _LeastSquares(Method):
  """mean_i (x_i . w - y_i)^2, NaN where the batch says so; metric: the mean residual."""

  def loss(self, ctx):
    r = ctx.batch["input"] @ ctx.params["w"] - ctx.batch["target"]
    loss = jnp.mean(r ** 2) + jnp.where(jnp.any(ctx.batch["poison"] > 0), jnp.nan, 0.0)
    return LossOutput(loss, {"residual": jnp.mean(r)}, ctx.model_state)


def _least_squares_batch(n=8, d=3, seed=0):
  rng = np.random.RandomState(seed)
  return {"input": rng.randn(n, d).astype(np.float32), "target": rng.randn(n).astype(np.float32),
          "poison": np.zeros(n, np.float32)}


@pytest.mark.parametrize("mode", ["jit", "pmap", "shard_map"])
@pytest.mark.parametrize("accum", [1, 2])
def test_one_sgd_step_is_the_global_least_squares_gradient(mode, accum):
  """SGD moves w by lr * 2/N X^T (Xw - y) over the global batch (numpy), with or without
  gradient accumulation; the logged loss, metric and grad_norm are those of the global batch."""
  batch = _least_squares_batch(n=16)
  w0 = np.array([0.5, -1.0, 2.0], np.float32)
  x, y = batch["input"].astype(np.float64), batch["target"].astype(np.float64)
  r = x @ w0 - y
  grad = 2.0 / len(y) * x.T @ r
  par = Parallel(mode, jax.devices()[:NUM_DEVICES])
  tx, state = _state({"w": jnp.asarray(w0)}, {})
  step = par.compile_train_step(make_train_step(_LeastSquares({}), None, tx,
                                                axis_name=par.axis_name, accum_steps=accum))
  new_state, metrics = step(par.put_state(state), par.put_batch(batch))
  host = par.get_state(new_state)
  metrics = par.metrics_to_host(metrics)
  np.testing.assert_allclose(host.params["w"], w0 - 0.1 * grad, rtol=1e-5)
  assert int(host.step) == 1
  assert metrics["loss"] == pytest.approx(np.mean(r ** 2), rel=1e-5)
  assert metrics["residual"] == pytest.approx(np.mean(r), rel=1e-5, abs=1e-6)
  assert metrics["grad_norm"] == pytest.approx(np.linalg.norm(grad), rel=1e-5)


def test_accumulation_micro_batches_take_every_kth_example():
  """Micro-batch i of k holds examples i, i+k, ...; the model state is the last micro-batch's."""
  x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) ** 2
  model = _BatchMeanModel()
  variables = dict(model.init(jax.random.PRNGKey(0), x[:1]))
  params = variables.pop("params")
  tx, state = _state(params, variables)
  par = Parallel("jit", jax.devices()[:NUM_DEVICES])
  step = par.compile_train_step(
      make_train_step(_ApplyModel({}), model.apply, tx, axis_name=None, accum_steps=2))
  new_state, _ = step(par.put_state(state), par.put_batch({"input": x}))
  np.testing.assert_allclose(par.get_state(new_state).model_state["stats"]["mean"],
                             x[1::2].mean(axis=0), rtol=1e-6)


def test_accumulation_arguments_are_checked():
  tx, state = _state({"w": jnp.zeros(3)}, {})
  with pytest.raises(ValueError, match="`accum_steps` must be >= 1, got 0"):
    make_train_step(_LeastSquares({}), None, tx, axis_name=None, accum_steps=0)
  step = jax.jit(make_train_step(_LeastSquares({}), None, tx, axis_name=None, accum_steps=3))
  with pytest.raises(ValueError, match=r"`grad_accum_steps` \(3\) must divide the per-device "
                                       r"batch \(8\)"):
    step(state, _least_squares_batch())


@pytest.mark.parametrize("nan_policy", ["skip", "stop"])
def test_nan_policy_skip_keeps_the_state_but_counts_the_step(nan_policy):
  """A non-finite loss under ``nan_policy="skip"``: parameters and optimizer state unchanged, the
  step counter advances and ``skipped`` is 1 (0 on a finite step). ``"stop"`` applies the update
  (the trainer stops on the NaN loss) and logs no ``skipped``."""
  tx, state = _state({"w": jnp.ones(3)}, {})
  step = jax.jit(make_train_step(_LeastSquares({}), None, tx, axis_name=None,
                                 nan_policy=nan_policy))
  good = _least_squares_batch()
  bad = {**good, "poison": np.ones(8, np.float32)}
  after_good, m_good = step(state, good)
  after_bad, m_bad = step(after_good, bad)
  assert int(after_good.step) == 1 and int(after_bad.step) == 2
  assert not np.allclose(after_good.params["w"], 1.0)
  if nan_policy == "skip":
    assert (float(m_good["skipped"]), float(m_bad["skipped"])) == (0.0, 1.0)
    # the running count in the state and its metric (killed mutant: counting the finite steps)
    assert (int(after_good.skipped), int(after_bad.skipped)) == (0, 1)
    assert (float(m_good["skipped_steps"]), float(m_bad["skipped_steps"])) == (0.0, 1.0)
    np.testing.assert_array_equal(after_bad.params["w"], after_good.params["w"])
  else:
    assert "skipped" not in m_bad and np.isnan(float(m_bad["loss"]))
    assert not np.allclose(after_bad.params["w"], after_good.params["w"])  # the NaN is a constant:
    # its gradient is finite, so only the loss check can skip this step


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_nonfinite_guard_holds_the_first_nonfinite_step(mode):
  """The guard carried through the compiled step is the number of the first step whose loss (or
  gradient norm) was not finite: here a NaN loss with a finite gradient at step 2."""
  from labelwise.train.step import ALL_FINITE, new_guard
  par = Parallel(mode, jax.devices()[:NUM_DEVICES])
  tx, state = _state({"w": jnp.ones(3)}, {})
  step = par.compile_train_step(
      make_train_step(_LeastSquares({}), None, tx, axis_name=par.axis_name), guard=True)
  good = _least_squares_batch()
  bad = {**good, "poison": np.ones(8, np.float32)}
  dev_state = par.put_state(state)
  guard = par.put_state(new_guard())
  seen = []
  for batch in (good, bad, good, bad):
    dev_state, guard, _ = step(dev_state, guard, par.put_batch(batch))
    seen.append(int(np.max(np.asarray(guard["step"]))))
  assert seen == [ALL_FINITE, 2, 2, 2]


def test_repeat_steps_default_carries_the_first_argument_only():
  """``repeat_steps(step)`` (default ``carried=1``): the first argument is the loop carry, the
  others are the same in every step; ``n`` steps of ``s -> 0.5 * s + x`` by hand, and the metrics
  are the last step's."""
  from labelwise.train.step import repeat_steps

  def step(s, x):
    new = 0.5 * s + x
    return new, {"s": new, "twice": 2.0 * new}

  looped = jax.jit(repeat_steps(step))
  for n in (1, 2, 5):
    got_s, got_metrics = looped(jnp.float32(3.0), jnp.float32(1.0), jnp.int32(n))
    want = 3.0
    for _ in range(n):
      want = 0.5 * want + 1.0
    assert float(got_s) == want
    assert float(got_metrics["s"]) == want and float(got_metrics["twice"]) == 2.0 * want


def test_compile_loop_needs_the_batches_on_the_devices():
  tx, _ = _state({"w": jnp.zeros(3)}, {})
  step = make_train_step(_LeastSquares({}), None, tx, axis_name="devices")
  with pytest.raises(ValueError, match=r"loop=True\) needs on_data=True"):
    Parallel("jit", jax.devices()[:1]).compile_train_step(step, loop=True)


@pytest.mark.parametrize("replicas", [0, 2])
def test_split_for_pmap_gives_each_device_its_slice_of_every_replica(replicas):
  """``[R, B, ...]`` (a sweep of R = 2, B = 8) -> ``[4 devices, R, 2, ...]`` with device ``d``
  holding examples ``2d, 2d + 1`` of every replica (numpy indexing), ``[B, ...]`` without
  replicas; a per-host batch of 6 is refused on 4 devices."""
  par = Parallel("pmap", jax.devices()[:NUM_DEVICES], replicas=replicas)
  shape = (2, 8, 3) if replicas else (8, 3)
  x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
  got = np.asarray(par.split_for_pmap(jnp.asarray(x)))
  for d in range(NUM_DEVICES):
    want = x[:, 2 * d:2 * d + 2] if replicas else x[2 * d:2 * d + 2]
    np.testing.assert_array_equal(got[d], want)
  assert got.shape == (NUM_DEVICES,) + ((2, 2, 3) if replicas else (2, 3))
  bad = np.zeros((2, 6, 3) if replicas else (6, 3), np.float32)
  with pytest.raises(ValueError, match=r"the per-host batch \(6\) must be divisible by the "
                                       r"number of local devices \(4\)"):
    par.split_for_pmap(jnp.asarray(bad))


class _DrawProbe(Method):
  """Loss 0; metric: a uniform drawn with ``ctx.key``."""

  def loss(self, ctx):
    return LossOutput(0.0 * jnp.sum(ctx.params["w"]), {"draw": jax.random.uniform(ctx.key)},
                      ctx.model_state)


def test_without_accumulation_the_step_key_is_fold_in_rng_step():
  """``accum_steps=1`` (no device axis): the method's key is ``fold_in(rng, step)`` itself, the
  same key as before accumulation existed; the accumulation path (``fold_in(key, i)`` per
  micro-batch) must not be taken for one micro-batch."""
  tx, state = _state({"w": jnp.zeros(3)}, {})
  state = state.replace(step=jnp.int32(5))
  step = jax.jit(make_train_step(_DrawProbe({}), None, tx, axis_name=None, accum_steps=1))
  _, metrics = step(state, _least_squares_batch())
  want = jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(0), 5))
  assert float(metrics["draw"]) == float(want)


def test_make_train_step_options_are_keyword_only():
  """``axis_name``, ``nan_policy`` and ``accum_steps`` by keyword only (a positional ``None``
  would silently be the device axis); ``method``, ``apply_fn`` and ``tx`` by position or name."""
  tx, _ = _state({"w": jnp.zeros(3)}, {})
  with pytest.raises(TypeError):
    make_train_step(_LeastSquares({}), None, tx, None)
  assert callable(make_train_step(method=_LeastSquares({}), apply_fn=None, tx=tx, axis_name=None))


@pytest.mark.parametrize("mode", ["jit", "shard_map", "pmap"])
def test_gathers_in_step_and_pmap_through_jit_by_process_count(mode, monkeypatch):
  """In one process every mode gathers its batch inside the step and pmap compiles through jit;
  with several processes pmap is ``jax.pmap`` and cannot (both are properties, read as bools).
  (Killed mutant: ``@property`` removed from ``gathers_in_step``, a bound method always truthy.)"""
  par = Parallel(mode, jax.devices()[:NUM_DEVICES])
  assert par.gathers_in_step is True
  assert par.pmap_through_jit is (mode == "pmap")
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert par.gathers_in_step is (mode != "pmap")
  assert par.pmap_through_jit is False


@pytest.mark.parametrize("mode,n", [("jit", 1), ("pmap", 4), ("shard_map", 2)])
def test_parallel_properties_are_plain_values(mode, n):
  """``Parallel``'s descriptors are properties (read as values, not called): its device count, the
  axis name (None under jit) and whether the step gathers its own batch. (Killed mutant of the
  clean-clone pass: ``@property`` removed from ``num_devices``, which made it a bound method.)"""
  par = Parallel(mode, jax.devices()[:n])
  assert par.num_devices == n and isinstance(par.num_devices, int)
  assert par.axis_name == (None if mode == "jit" else "data")
  assert par.gathers_in_step is True
