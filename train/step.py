"""The pure per-device training step and its three parallel forms (pmap, shard_map, jit).

``train_step(state, batch)`` is written once, for one device holding a slice of the global batch, with
the device axis named ``"data"``. The gradient is ``pmean(grad(pmean(loss)))``: correct both under
``pmap`` (per-device gradients are averaged) and under ``shard_map`` (where the gradient of a replicated
parameter is already summed over devices; the outer pmean then leaves it unchanged). Under ``jit`` the
step sees the whole global batch (``axis_name=None``) and the compiler partitions it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from labelwise.train.methods.base import LossOutput, Method, StepContext
from labelwise.train.state import TrainState

AXIS = "data"
PARALLEL_MODES = ("pmap", "shard_map", "jit")


def _pmean(x, axis_name):
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def _accumulate(loss_fn, params, model_state, batch, key, k: int):
  """Gradient accumulation: the batch as ``k`` equal micro-batches, one forward/backward each.

  Micro-batch ``i`` takes every ``k``-th example (so under ``jit`` it stays spread over all devices).
  Returns the mean loss, a ``LossOutput`` with mean metrics and the model state after the last
  micro-batch, and the mean gradient: for a loss that is a per-example mean this is the gradient of
  the whole batch. Batch statistics inside a loss or model (BatchNorm, average-K thresholds, EM
  marginals, entropy histograms) are computed over one micro-batch (times the devices).
  """
  def split(x):
    if x.shape[0] % k:
      raise ValueError(f"`grad_accum_steps` ({k}) must divide the per-device batch "
                       f"({x.shape[0]}).")
    return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def body(carry, xs):
    grad_sum, ms = carry
    i, micro = xs
    (loss, out), grads = grad_fn(params, ms, micro, jax.random.fold_in(key, i))
    metrics = {name: jnp.asarray(v, jnp.float32) for name, v in out.metrics.items()}
    return (jax.tree_util.tree_map(jnp.add, grad_sum, grads), out.model_state), (loss, metrics)

  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  (grad_sum, model_state), (losses, metrics) = jax.lax.scan(
      body, (zeros, model_state), (jnp.arange(k), jax.tree_util.tree_map(split, batch)))
  out = LossOutput(jnp.mean(losses), {name: jnp.mean(v) for name, v in metrics.items()},
                   model_state)
  return out.loss, out, jax.tree_util.tree_map(lambda g: g / k, grad_sum)


def make_train_step(method: Method, apply_fn: Callable, tx, *,
                    axis_name: Optional[str], nan_policy: str = "stop", accum_steps: int = 1):
  """Returns the per-device ``step(state, batch) -> (state, metrics)``.

  ``tx``: an ``optax.GradientTransformation``, or a function ``hparams -> GradientTransformation``
  called inside the step with ``state.hparams["optimizer"]`` (traced learning rate / weight decay).
  The method sees ``state.hparams["method"]`` as ``StepContext.hparams``.
  ``accum_steps > 1``: gradient accumulation over that many micro-batches of the (same) batch.
  """
  make_tx = tx if callable(tx) else (lambda hparams: tx)
  if int(accum_steps) < 1:
    raise ValueError(f"`accum_steps` must be >= 1, got {accum_steps}.")
  accum_steps = int(accum_steps)

  def step(state: TrainState, batch) -> Tuple[TrainState, Dict[str, jax.Array]]:
    key = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
      key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))

    def loss_fn(params, model_state=state.model_state, batch=batch, key=key):
      ctx = StepContext(params=params, model_state=model_state, buffers=state.buffers,
                        batch=batch, key=key, train=True, axis_name=axis_name, apply_fn=apply_fn,
                        step=state.step, hparams=state.hparams.get("method", {}))
      out = method.loss(ctx)
      return _pmean(out.loss, axis_name), out

    if accum_steps == 1:
      (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    else:
      loss, out, grads = _accumulate(loss_fn, state.params, state.model_state, batch, key,
                                     accum_steps)
    grads = _pmean(grads, axis_name)
    updates, opt_state = make_tx(state.hparams.get("optimizer", {})).update(
        grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    model_state = _pmean(out.model_state, axis_name)
    # one collective for all the method's metrics (a pytree pmean is one all-reduce)
    metrics = {"loss": loss, **_pmean({k: jnp.asarray(v, jnp.float32)
                                       for k, v in out.metrics.items()}, axis_name)}
    metrics["grad_norm"] = optax.global_norm(grads)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=model_state)
    if nan_policy == "skip":
      finite = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
      new_state = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new_state, state)
      skipped = state.skipped + (~finite).astype(jnp.int32)
      new_state = new_state.replace(step=state.step + 1, skipped=skipped)
      metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
      metrics["skipped_steps"] = skipped.astype(jnp.float32)
    return new_state, metrics

  return step


#: ``guard["step"]`` while every step so far had a finite loss and gradient norm.
ALL_FINITE = np.iinfo(np.int32).max


def new_guard() -> Dict[str, np.ndarray]:
  """The non-finite guard before any step (host arrays; place it like the state)."""
  return {"step": np.int32(ALL_FINITE), "loss": np.float32(0), "grad_norm": np.float32(0)}


def guard_nonfinite(step_fn):
  """``step(state, batch)`` -> ``step(state, guard, batch) -> (state, guard, metrics)``.

  ``guard`` (carried through the steps on the device, see :func:`new_guard`) holds the number of the
  first step (1-based: the value of ``state.step`` after it) whose loss or gradient norm was not
  finite, or :data:`ALL_FINITE`, and that step's loss and gradient norm. The loop reads it only when
  it syncs with the host, so a non-finite step is found at the next sync with its exact number. Any
  leading (e.g. replica) axes of the metrics are reduced: one non-finite value makes the step
  non-finite (its loss and gradient norm are those of the first non-finite entry).
  """
  def guarded(state, guard, *inputs):
    new_state, metrics = step_fn(state, *inputs)
    loss, norm = jnp.ravel(metrics["loss"]), jnp.ravel(metrics["grad_norm"])
    bad = ~(jnp.isfinite(loss) & jnp.isfinite(norm))
    first = jnp.argmax(bad)
    new = jnp.any(bad) & (guard["step"] == ALL_FINITE)
    done = jnp.max(new_state.step).astype(jnp.int32)
    guard = {"step": jnp.where(new, done, guard["step"]),
             "loss": jnp.where(new, loss[first].astype(jnp.float32), guard["loss"]),
             "grad_norm": jnp.where(new, norm[first].astype(jnp.float32), guard["grad_norm"])}
    return new_state, guard, metrics
  return guarded


def gather_batch(step_fn):
  """``step(state, batch)`` -> ``step(state, data, block, start)`` on ``data[block[i]]``.

  ``block`` holds the example indices of a run of consecutive steps (``[steps, ...batch axes]``)
  starting at step ``start``; the step reads its own row, ``i = state.step - start``, so the same
  placed block serves every step it covers and a step needs no transfer from the host. (In a sweep
  every replica's ``state.step`` is the same; the first is used.)
  """
  def gathered(state, data, block, start):
    i = jnp.ravel(state.step)[0].astype(jnp.int32) - start
    idx = jax.lax.dynamic_index_in_dim(block, i, axis=0, keepdims=False)
    return step_fn(state, jax.tree_util.tree_map(lambda v: v[idx], data))
  return gathered


def repeat_steps(step_fn, carried: int = 1):
  """``step(*carry, *inputs) -> (*carry, metrics)`` -> ``looped(*carry, *inputs, n)``: ``n`` steps.

  One call runs ``n`` (a traced int32 scalar, ``>= 1``) consecutive steps in a ``lax.fori_loop``
  with the first ``carried`` arguments (the state, and the non-finite guard) as the loop carry and
  the other inputs the same in every step: with :func:`gather_batch` each step reads its own row
  of the index block (``state.step - start``). Returns the carry after the last step and that
  step's metrics. ``n`` is an argument, not a shape: one compiled program serves every call
  length, and since the loop body is the same program whatever ``n`` is, how a run's steps are
  split into calls does not change a single bit of what it computes.
  """
  def looped(*args):
    *args, n = args
    carry, inputs = tuple(args[:carried]), tuple(args[carried:])
    # jit: the shapes below and the loop body share one trace of the step (no second trace)
    one = jax.jit(step_fn)
    shapes = jax.eval_shape(one, *carry, *inputs)[carried]
    metrics = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(_, carry_metrics):
      out = one(*carry_metrics[0], *inputs)
      return tuple(out[:carried]), out[carried]

    carry, metrics = jax.lax.fori_loop(0, jnp.asarray(n, jnp.int32).reshape(()), body,
                                       (carry, metrics))
    return (*carry, metrics)
  return looped


def _on_device_blocks(fn, stacked):
  """``fn`` on one device's values -> ``fn`` on its ``[1, ...]`` blocks of stacked arrays.

  ``stacked[i]``: whether argument ``i`` carries the leading device axis (else it is passed whole).
  Every output gets the leading axis back.
  """
  def blocks(*args):
    args = [jax.tree_util.tree_map(lambda x: x[0], a) if s else a for a, s in zip(args, stacked)]
    return jax.tree_util.tree_map(lambda x: x[None], fn(*args))
  return blocks


def make_predict_step(apply_fn: Callable):
  """``predict(params, model_state, inputs) -> outputs`` in eval mode (no collectives needed)."""
  def predict(params, model_state, inputs):
    return apply_fn({"params": params, **model_state}, inputs, train=False)
  return predict


class Parallel:
  """Places state and batches on devices and compiles the step for ``config.parallel``.

  * ``pmap``: state replicated with a leading device axis; batches reshaped ``[devices, per_device, ...]``.
    In one process the step is compiled as ``jax.jit(jax.shard_map(...))`` over that stacked layout
    (what ``jax.pmap`` itself lowers to since JAX 0.8, minus its Python dispatch path: see
    :attr:`pmap_through_jit`); with several processes it is ``jax.pmap``.
  * ``shard_map``: ``jax.jit(jax.shard_map(step))`` over a 1-D mesh; state replicated, batch sharded.
  * ``jit``: the global-batch step under ``jax.jit`` with a ``NamedSharding`` on the batch.

  ``replicas > 0`` (a sweep, :mod:`labelwise.train.sweep`): the state has a leading replica axis,
  batches are ``[replicas, batch, ...]`` (each replica its own), and the per-device step is
  ``jax.vmap``-ed over the replicas inside pmap / shard_map / jit; metrics come back per replica.
  """

  def __init__(self, mode: str, devices=None, replicas: int = 0):
    if mode not in PARALLEL_MODES:
      raise ValueError(f"`parallel` must be one of {list(PARALLEL_MODES)}, got {mode!r}.")
    self.mode = mode
    self.replicas = int(replicas)
    self.devices = list(devices if devices is not None else jax.devices())
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    self.mesh = Mesh(np.asarray(self.devices), (AXIS,),
                     axis_types=(jax.sharding.AxisType.Auto,))
    self.replicated = NamedSharding(self.mesh, P())
    # the batch axis is sharded over the devices (after the replica axis in a sweep)
    self.batch_spec = P(None, AXIS) if self.replicas else P(AXIS)
    self.batch_sharding = NamedSharding(self.mesh, self.batch_spec)
    # a block of steps' example indices (compile_train_step(on_data=True)): steps, then the batch
    self.block_spec = P(None, *self.batch_spec)
    self.block_sharding = NamedSharding(self.mesh, self.block_spec)
    self.eval_sharding = NamedSharding(self.mesh, P(AXIS))
    # pmap: arrays with a leading axis over this host's devices.
    self.local_mesh = Mesh(np.asarray(self.local_devices), (AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))
    self.stacked = NamedSharding(self.local_mesh, P(AXIS))

  @property
  def pmap_through_jit(self) -> bool:
    """``parallel="pmap"`` in one process: the step is ``jit(shard_map)`` over the stacked layout.

    Same program, same layout and the same collectives as ``jax.pmap`` (which JAX >= 0.8 also
    builds from ``jit`` and ``shard_map``), but dispatched through ``jit``'s C++ fast path instead
    of ``pmap``'s Python wrapper, which flattens and checks every argument leaf on every call
    (benchmarks/trainer_overhead.py). It also lets the step gather its batch from the
    device-resident split (``compile_train_step(on_data=True)``).
    """
    return self.mode == "pmap" and jax.process_count() == 1

  @property
  def gathers_in_step(self) -> bool:
    """Whether ``compile_train_step(on_data=True)`` is available (all but multi-process pmap)."""
    return self.mode != "pmap" or self.pmap_through_jit

  @property
  def axis_name(self) -> Optional[str]:
    return None if self.mode == "jit" else AXIS

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  # --- state -----------------------------------------------------------------------------------
  def put_state(self, state):
    """Host (or single-device) state -> the layout the compiled step expects."""
    if self.mode == "pmap":
      n = len(self.local_devices)
      return jax.device_put(
          jax.tree_util.tree_map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)),
                                 state), self.stacked)
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    """Device state -> one host copy (numpy leaves)."""
    if self.mode == "pmap":  # the first device's copy, without a dispatch per leaf
      return jax.tree_util.tree_map(lambda x: x[0], jax.device_get(jax.tree_util.tree_map(
          lambda x: x.addressable_shards[0].data, state)))
    return jax.device_get(state)

  # --- batches ---------------------------------------------------------------------------------
  def split_for_pmap(self, x):
    """``[B, ...]`` -> ``[devices, B / devices, ...]``; in a sweep ``[R, B, ...]`` ->
    ``[devices, R, B / devices, ...]`` (each device holds its slice of every replica's batch)."""
    n = len(self.local_devices)
    b = x.shape[1] if self.replicas else x.shape[0]
    if b % n:
      raise ValueError(f"the per-host batch ({b}) must be divisible by the number of local "
                       f"devices ({n}).")
    if not self.replicas:
      return x.reshape((n, b // n) + x.shape[1:])
    return jnp.swapaxes(x.reshape((x.shape[0], n, b // n) + x.shape[2:]), 0, 1)

  def put_batch(self, batch: Dict[str, np.ndarray]):
    """This host's batch -> device arrays (sharded over the devices); ``[R, B, ...]`` in a sweep."""
    if self.mode == "pmap":
      split = lambda x: np.asarray(self.split_for_pmap(x))  # noqa: E731
      return jax.device_put({k: split(v) for k, v in batch.items()}, self.stacked)
    if jax.process_count() == 1:  # one call for the whole batch: ~3x cheaper for small batches
      return jax.device_put(batch, self.batch_sharding)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)

  # --- compiled functions ----------------------------------------------------------------------
  def compile_train_step(self, step_fn, *, guard: bool = False, on_data: bool = False,
                         loop: bool = False):
    """The compiled, state-donating form of the per-device ``step_fn(state, batch)``.

    ``on_data``: ``(state, data, block, start)`` with the batch gathered inside the step (all but
    multi-process pmap): ``data`` is a training split already on the devices (replicated),
    ``block`` the example indices of consecutive steps from ``start`` (:func:`gather_batch`;
    steps first, then the batch axes: ``[steps, batch]``, ``[steps, R, batch]`` in a sweep,
    sharded on the batch axis; under pmap ``[devices, steps, ..., batch / devices]``), so a step
    is one dispatch and no transfer; under shard_map and pmap each device gathers its own slice.
    ``guard``: the step also carries the non-finite guard (:func:`guard_nonfinite`) as its
    second argument and second output (donated like the state).
    In a sweep (``replicas``) the step is vmapped over the replica axis of the state and of the
    batch (or of ``indices``, ``[R, batch]``).
    ``loop`` (with ``on_data``): ``(state, guard, data, block, start, n)`` runs ``n`` consecutive
    steps in one call (``n``: a placed int32 scalar, like ``start``), the rows ``state.step -
    start`` onwards of the block (:func:`repeat_steps`, inside pmap / shard_map / jit, outside the
    replicas' vmap), and returns the last step's metrics; the caller keeps a call inside one block.
    """
    if self.replicas:
      step_fn = jax.vmap(step_fn)
    if on_data:
      if not self.gathers_in_step:
        raise ValueError("compile_train_step(on_data=True): not for parallel='pmap' with several "
                         "processes (jax.pmap takes batches with a leading device axis; gather "
                         "them separately)")
      step_fn = gather_batch(step_fn)
    carried = 2 if guard else 1  # state (+ guard): replicated, donated
    if guard:
      step_fn = guard_nonfinite(step_fn)
    if loop:
      if not on_data:
        raise ValueError("compile_train_step(loop=True) needs on_data=True (each step gathers "
                         "its batch from its row of the index block)")
      step_fn = repeat_steps(step_fn, carried)
    donate = tuple(range(carried))
    if self.mode == "pmap" and not self.pmap_through_jit:
      return jax.pmap(step_fn, axis_name=AXIS, donate_argnums=donate)
    if self.mode == "pmap":  # every argument stacked [devices, ...], but the split (replicated)
      stacked = (True,) * carried + ((False, True, False) if on_data else (True,)) + (
          (False,) if loop else ())
      # check_vma=False as in jax.pmap: collectives transpose as under pmap (the gradient of the
      # per-device parameter copies is summed over the devices), unlike shard_map's typed default.
      mapped = jax.shard_map(_on_device_blocks(step_fn, stacked), mesh=self.local_mesh,
                             in_specs=tuple(P(AXIS) if s else P() for s in stacked),
                             out_specs=P(AXIS), check_vma=False)
      # out_shardings: on one device XLA would return some leaves as P() (not P(AXIS)), and the
      # next call, on those outputs, would compile a second program
      return jax.jit(mapped, donate_argnums=donate, out_shardings=self.stacked)
    inputs = ((P(), self.block_spec, P()) if on_data else (self.batch_spec,)) + (
        (P(),) if loop else ())
    if self.mode == "shard_map":
      # check_vma=False (as pmap): the per-device parameter gradients are averaged by the step's
      # one pmean, a single fused all-reduce. With shard_map's typed default every use of a
      # replicated parameter transposes to its own psum: 7 all-reduces instead of 2 for the digits
      # MLP, the 4-device step's main cost on XLA:CPU (benchmarks/trainer_overhead.py). The result
      # is the same either way (pmean(grad(pmean(loss))), tests/test_parallel.py).
      mapped = jax.shard_map(step_fn, mesh=self.mesh, in_specs=(P(),) * carried + inputs,
                             out_specs=(P(),) * (carried + 1), check_vma=False)
      return jax.jit(mapped, donate_argnums=donate)
    shardings = {P(): self.replicated, self.batch_spec: self.batch_sharding,
                 self.block_spec: self.block_sharding}
    return jax.jit(step_fn, in_shardings=(self.replicated,) * carried + tuple(
        shardings[spec] for spec in inputs), out_shardings=(self.replicated,) * (carried + 1),
                   donate_argnums=donate)

  def compile_train_step_on_data(self, step_fn, *, guard: bool = False, loop: bool = False):
    """``compile_train_step(step_fn, guard=guard, on_data=True, loop=loop)``."""
    return self.compile_train_step(step_fn, guard=guard, on_data=True, loop=loop)

  def compile_predict(self, predict_fn):
    """Eval forward pass, data-parallel over the mesh (all modes), on unreplicated params."""
    return jax.jit(predict_fn, in_shardings=(self.replicated, self.replicated, self.eval_sharding),
                   out_shardings=self.eval_sharding)

  def metrics_to_host(self, metrics) -> Dict[str, Any]:
    """Device metrics -> ``{name: float}``, or ``{name: [float per replica]}`` in a sweep."""
    host = self.get_state(metrics)
    if self.replicas:
      return {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in host.items()}
    return {k: float(v) for k, v in host.items()}
