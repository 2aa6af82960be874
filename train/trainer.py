"""``train_and_evaluate(config, workdir)``: the one trainer every method runs in.

It builds the dataset, model, optimizer and method from the config, resumes from the newest checkpoint
in ``workdir/checkpoints``, runs the compiled step (``config.parallel``: pmap, shard_map or jit), logs
metrics to ``workdir/metrics.jsonl`` (and TensorBoard), evaluates with the configured evaluators, and
writes ``workdir/results.json``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Optional

import jax
import numpy as np
from absl import logging

from labelwise.data import feed as feed_lib
from labelwise.data import make_dataset
from labelwise.data.registry import get_dataset_spec
from labelwise.eval import evaluators as evaluators_lib
from labelwise.models import get_model
from labelwise.models.conv import IMPLS as CONV_IMPLS
from labelwise.models.registry import MODELS
from labelwise.train import checkpoint as checkpoint_lib
from labelwise.train import methods as methods_lib
from labelwise.train import optim
from labelwise.train import preemption
from labelwise.train import replicas as replicas_lib
from labelwise.train import step as step_lib
from labelwise.train import sweep as sweep_lib
from labelwise.train import workdir as workdir_lib
from labelwise.train import writers
from labelwise.train.methods.base import HostContext, RunInfo
from labelwise.train.state import create_state, run_hparams

NAN_POLICIES = ("stop", "skip")
DTYPES = ("float32", "bfloat16")  # config.dtype: model compute; params and losses float32
#: at most this many steps are dispatched without a host sync by default (`host_sync_every` = 0):
#: bounds the work queued on the devices. XLA:CPU's collectives on fake CPU devices deadlock with
#: thousands of unsynchronised steps in flight (seen in benchmarks/trainer_overhead.py: 3 of 4
#: device threads waited 600 s in one all-reduce).
MAX_STEPS_IN_FLIGHT = 20
#: ``steps_per_call`` 0 (``"auto"``): this many steps per compiled call when the batches are gathered
#: on the devices and a step's forward pass costs at most ``AUTO_STEPS_MAX_FLOPS`` (XLA's estimate
#: for one example times the batch and the replicas), else 1. A call's host cost (feed, dispatch,
#: the loop's checks: ~30-45 us on a 2-core CPU) is then paid once per 16 steps, which matters only
#: for steps this small (the digits MLP at batch 128: 6.7 MFLOP, ~440 us); a bigger step dwarfs
#: it, and XLA:CPU ran the MNIST-1D SmallCNN's step (65 MFLOP) ~10% slower inside the loop
#: (benchmarks/results.md); one step per call also keeps preemption at every step.
AUTO_STEPS_PER_CALL = 16
AUTO_STEPS_MAX_FLOPS = 2e7


def configured_steps_per_call(config) -> int:
  """``config.steps_per_call`` (checked by :func:`validate_config`) as an int: 0 for auto."""
  spc = config.get("steps_per_call", 0)
  return 0 if spc == "auto" else int(spc)


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


def select_devices(config):
  n = int(config.get("num_devices", -1))
  devices = jax.devices()
  if n == -1 or n is None:
    return devices
  if jax.process_count() > 1 and n != len(devices):
    raise ValueError(f"`num_devices` must be -1 (all {len(devices)} devices of the "
                     f"{jax.process_count()} processes) in a multi-process run, got {n}.")
  if not 1 <= n <= len(devices):
    raise ValueError(f"`num_devices` must be -1 (all) or in [1, {len(devices)}], got {n}.")
  return devices[:n]


def validate_config(config) -> Optional[sweep_lib.Sweep]:
  """Fails fast, before any data is read or anything compiled, on names and shapes that cannot work."""
  get_dataset_spec(config.dataset)
  if config.model not in MODELS:
    raise ValueError(f"Unknown model {config.model!r}; known models: {sorted(MODELS)}.")
  if config.method not in methods_lib.METHODS:
    raise ValueError(f"Unknown method {config.method!r}; known methods: "
                     f"{sorted(methods_lib.METHODS)}.")
  if config.parallel not in step_lib.PARALLEL_MODES:
    raise ValueError(f"`parallel` must be one of {list(step_lib.PARALLEL_MODES)}, "
                     f"got {config.parallel!r}.")
  if config.get("nan_policy", "stop") not in NAN_POLICIES:
    raise ValueError(f"`nan_policy` must be one of {list(NAN_POLICIES)}, got {config.nan_policy!r}.")
  if int(config.get("host_sync_every", 0) or 0) < 0:
    raise ValueError(f"`host_sync_every` must be >= 0 (0: the log interval), got "
                     f"{config.host_sync_every}.")
  spc = config.get("steps_per_call", 0)
  if spc != "auto" and (isinstance(spc, bool) or not isinstance(spc, (int, np.integer))
                        or spc < 0):
    raise ValueError(f"`steps_per_call` must be an int >= 1 (training steps per compiled call) or "
                     f"0 / 'auto' (16 for small models), got {spc!r}.")
  if (config.get("dtype") or "float32") not in DTYPES:
    raise ValueError(f"`dtype` (the model compute dtype) must be one of {list(DTYPES)}, "
                     f"got {config.dtype!r}.")
  if (config.get("conv_impl") or "auto") not in CONV_IMPLS:
    raise ValueError(f"`conv_impl` must be one of {list(CONV_IMPLS)}, got {config.conv_impl!r}.")
  for key in ("batch_size", "total_steps"):
    if int(config[key]) < 1:
      raise ValueError(f"`{key}` must be >= 1, got {config[key]}.")
  n = len(select_devices(config))
  for key in ("batch_size", "eval_batch_size"):
    value = config.get(key) or config.batch_size
    if value % n:
      raise ValueError(f"`{key}` ({value}) must be divisible by the number of devices ({n}); "
                       f"set --config.{key} to a multiple of {n} or --config.num_devices.")
  accum = config.get("grad_accum_steps", 1)
  if not isinstance(accum, int) or accum < 1 or config.batch_size % (n * accum):
    raise ValueError(f"`grad_accum_steps` must be an int >= 1 dividing the per-device batch "
                     f"(batch_size {config.batch_size} / {n} devices), got {accum!r}.")
  for name in config.get("evaluators") or ():
    evaluators_lib.get_evaluator(name)
  sweep = sweep_lib.parse(config)  # refuses keys that change shapes or structure
  if config.get("sweep_select") and not float(config.data.get("validation_fraction", 0) or 0):
    raise ValueError("config.sweep_select chooses on a validation split carved from the training "
                     "split: set config.data.validation_fraction (e.g. 0.1); the test split never "
                     "takes part in a choice.")
  return sweep


class Trainer:
  """One run. ``Trainer(config, workdir).run()`` is ``train_and_evaluate``."""

  def __init__(self, config, workdir: str):
    sweep = validate_config(config)
    workdir_lib.check(config, workdir, num_devices=len(select_devices(config)))  # changes nothing
    self.config = config
    self.workdir = workdir
    self.is_writer = jax.process_index() == 0
    # One config and method object per replica of a sweep (validated here, before anything runs);
    # the compiled step uses replica 0's method (its static options are every replica's).
    self.replicas = replicas_lib.Replicas(config, sweep)
    os.makedirs(workdir, exist_ok=True)
    self.method = self.replicas.methods[0]
    self.parallel = step_lib.Parallel(config.parallel, select_devices(config),
                                      replicas=self.replicas.count if sweep else 0)
    self.dataset = make_dataset(config)
    data_cfg = config.get("data", {})
    self.train_on = data_cfg.get("train_on", "label")
    self.eval_split = data_cfg.get("eval_split", "test")
    self.dataset.check_labels(self.eval_split)  # every label in [0, C), once, on the host
    self.eval_batch_size = int(config.get("eval_batch_size") or config.batch_size)
    if self.train_on not in ("label", "coarse_label"):
      raise ValueError(f"`data.train_on` must be 'label' or 'coarse_label', got {self.train_on!r}.")
    if self.train_on == "coarse_label" and self.dataset.coarse_map is None:
      raise ValueError("`data.train_on='coarse_label'` needs a coarse map: set `data.coarse`.")
    spec = self.dataset.spec
    num_classes = (self.dataset.num_coarse_classes if self.train_on == "coarse_label"
                   else spec.num_classes)
    self.info = RunInfo(
        num_classes=num_classes, num_fine_classes=spec.num_classes,
        num_coarse_classes=self.dataset.num_coarse_classes,
        num_train_examples=self.dataset.train.num_examples,
        input_shape=tuple(self.dataset.input_shape()), fine_to_coarse=self.dataset.coarse_map)
    kwargs = dict(config.get("model_kwargs", {}) or {})
    model_cls = MODELS[config.model]
    fields = getattr(model_cls, "__dataclass_fields__", {})
    if "bn_axis_name" in fields and self.parallel.axis_name is not None:
      kwargs.setdefault("bn_axis_name", self.parallel.axis_name)
    if "dtype" in fields and config.get("dtype"):
      kwargs.setdefault("dtype", {"float32": jax.numpy.float32,
                                  "bfloat16": jax.numpy.bfloat16}[config.dtype])
    if "conv_impl" in fields and config.get("conv_impl"):
      kwargs.setdefault("conv_impl", config.conv_impl)
    heads = self.method.extra_heads(self.info)
    if heads:
      kwargs["extra_heads"] = {**dict(kwargs.get("extra_heads") or {}), **heads}
    self.model = get_model(config.model, num_classes=num_classes, **kwargs)
    decay = self.replicas.decay_always
    self.tx = optim.make_optimizer(config.optimizer, int(config.total_steps), decay_always=decay)
    make_tx = lambda hparams: optim.make_optimizer(  # noqa: E731  (traced lr / weight decay)
        config.optimizer, int(config.total_steps), hparams, decay_always=decay)
    self.checkpointer = (checkpoint_lib.Checkpointer(workdir, keep=config.get("keep_checkpoints", 3))
                         if config.get("checkpoint_every", 0) >= 0 else None)
    step_fn = step_lib.make_train_step(self.method, self.model.apply, make_tx,
                                       axis_name=self.parallel.axis_name,
                                       nan_policy=config.get("nan_policy", "stop"),
                                       accum_steps=config.get("grad_accum_steps", 1))
    # The compiled steps carry the non-finite guard: (state, guard, batch) -> (state, guard, metrics).
    self.train_step = self.parallel.compile_train_step(step_fn, guard=True)
    self.predict = self.parallel.compile_predict(step_lib.make_predict_step(self.model.apply))
    self._device_split: Optional[feed_lib.DeviceSplit] = None  # placed on first use (batch_feed)
    self.device_cache, self.device_cache_reason = feed_lib.device_cache_choice(
        config.data.get("device_cache", "auto"), self.dataset)
    gathers = self.device_cache and self.parallel.gathers_in_step
    self.train_step_on_data = (self.parallel.compile_train_step_on_data(step_fn, guard=True)
                               if gathers else None)
    # several steps per call (config.steps_per_call): one program for every call length
    self.train_steps_on_data = (self.parallel.compile_train_step_on_data(step_fn, guard=True,
                                                                         loop=True)
                                if gathers else None)
    spc = configured_steps_per_call(config)
    if spc > 1 and not gathers:
      why = (self.device_cache_reason if not self.device_cache else
             "parallel='pmap' with several processes takes host-built batches")
      raise ValueError(f"`steps_per_call` {spc} needs the training batches gathered on the "
                       f"devices (data.device_cache), not possible here: {why}. Use 1 or 'auto'.")
    self.steps_per_call = 1  # resolved by resolve_steps_per_call() when the run starts

  def resolve_steps_per_call(self, state) -> int:
    """``config.steps_per_call`` for this run's (host) ``state``: an int >= 1 as is; ``0`` or
    ``"auto"``: :data:`AUTO_STEPS_PER_CALL` with the batches gathered on the devices and a forward
    pass of at most :data:`AUTO_STEPS_MAX_FLOPS` per step, else 1."""
    spc = configured_steps_per_call(self.config)
    if spc:
      return spc
    if self.train_steps_on_data is None:
      return 1
    flops = self.forward_flops(state)
    if flops is None:  # no estimate from this backend
      return 1
    return AUTO_STEPS_PER_CALL if flops <= AUTO_STEPS_MAX_FLOPS else 1

  def forward_flops(self, state) -> Optional[float]:
    """XLA's FLOP estimate of one training step's forward pass (eval mode, one example, times the
    global batch and the replicas), from the lowered program (nothing is compiled or run)."""
    one = replicas_lib.take(state, 0) if self.replicas.active else state
    sample = self.dataset.train.get(np.arange(1))["input"]
    forward = jax.jit(lambda p, ms, x: self.model.apply({"params": p, **ms}, x, train=False))
    try:
      cost = forward.lower(one.params, one.model_state, sample).cost_analysis()
    except Exception:  # noqa: BLE001 - an estimate only: no estimate, no loop
      return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if not cost or "flops" not in cost:
      return None
    return float(cost["flops"]) * int(self.config.batch_size) * self.replicas.count

  def new_guard(self):
    """A fresh non-finite guard on the devices (see ``step.guard_nonfinite``)."""
    return self.parallel.put_state(step_lib.new_guard())

  def apply_train_step(self, dstate, guard, batch):
    """One compiled call on a batch from :meth:`batch_feed` (device arrays, one step, or
    ``feed.Indices``, ``batch.steps`` steps): ``(state, guard, metrics of the call's last step)``,
    all on the devices (nothing is fetched). With ``steps_per_call > 1`` every call (of any
    length) runs the one looped program, so the split into calls changes no bit."""
    if isinstance(batch, feed_lib.Indices):
      if self.steps_per_call > 1:
        return self.train_steps_on_data(dstate, guard, self._device_split.data, batch.block,
                                        batch.start, batch.count)
      if batch.steps != 1:
        raise ValueError(f"a call of {batch.steps} steps with steps_per_call=1")
      return self.train_step_on_data(dstate, guard, self._device_split.data, batch.block,
                                     batch.start)
    return self.train_step(dstate, guard, batch)

  def batch_feed(self, start: int, stop: int):
    """The training batches of steps ``start..stop-1`` on the devices: ``next() -> (step, batch)``.

    Gathered on the devices from the cached split when ``self.device_cache``
    (``data.feed.DeviceFeed``), otherwise read, placed and prefetched on a background thread
    (``data.feed.Prefetcher``).
    """
    if self.device_cache:
      if self._device_split is None:
        ds = self.dataset
        self._device_split = feed_lib.DeviceSplit(
            self.relabel(ds.train.get(np.arange(ds.train.num_examples))), self.parallel,
            ds.local_batch_size)
      return feed_lib.DeviceFeed(self.dataset, self.parallel, self._device_split, start, stop,
                                 self.replicas)
    return feed_lib.Prefetcher(lambda s: self.parallel.put_batch(self.host_batch(s)), start, stop)

  # --- data ------------------------------------------------------------------------------------
  def relabel(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Training on coarse labels: ``label`` <- ``coarse_label``, the fine one kept as ``fine_label``."""
    if self.train_on == "coarse_label":
      batch = dict(batch)
      batch["fine_label"] = batch["label"]
      batch["label"] = batch["coarse_label"]
    return batch

  def host_batch(self, step: int) -> Dict[str, np.ndarray]:
    """The training batch of ``step``; ``[R, B, ...]`` (each replica's seed) in a sweep."""
    return self.replicas.batch(lambda s, seed: self.relabel(self.dataset.train_batch(s, seed)),
                               step)

  def predictions(self, split: str, state_host=None) -> Dict[str, np.ndarray]:
    """Eval-mode outputs and batch fields for every example of ``split`` exactly once."""
    state_host = self.host_state if state_host is None else state_host
    params = jax.device_put(state_host.params, self.parallel.replicated)
    model_state = jax.device_put(state_host.model_state, self.parallel.replicated)
    chunks: Dict[str, list] = {}
    # `eval_batch_size` is global, like `batch_size`: each process evaluates its share of it.
    per_host = self.eval_batch_size // jax.process_count()
    for batch in self.dataset.eval_batches(split, per_host):
      batch = self.relabel(batch)
      inputs = jax.make_array_from_process_local_data(self.parallel.eval_sharding, batch["input"])
      outputs = self.predict(params, model_state, inputs)
      batch = {k: v for k, v in batch.items() if k != "input"}
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        outputs = multihost_utils.process_allgather(outputs, tiled=True)
        batch = multihost_utils.process_allgather(batch, tiled=True)
      outputs = jax.device_get(outputs)
      keep = np.asarray(batch["valid"]) > 0
      for k, v in {**batch, **outputs}.items():
        chunks.setdefault(k, []).append(np.asarray(v)[keep])
    out = {k: np.concatenate(v) for k, v in chunks.items()}
    if jax.process_count() > 1:  # hosts hold contiguous slices: restore the split's order
      order = np.argsort(out["index"], kind="stable")
      out = {k: v[order] for k, v in out.items()}
    return out

  # --- evaluation ------------------------------------------------------------------------------
  def evaluate(self, state_host, *, validation: bool = False):
    """The configured evaluators on the eval split (keys ``eval/...``) and, with ``validation``
    and a carved validation split (``data.validation_fraction``), on it (keys ``val/...``).

    A sweep evaluates every replica's state with its own config and method: a list of dicts.
    """
    if not self.replicas.active:
      return self._evaluate_one(state_host, self.config, self.method, self.workdir, validation)
    return [self._evaluate_one(replicas_lib.take(state_host, r), self.replicas.configs[r],
                               self.replicas.methods[r],
                               os.path.join(self.workdir, "replicas", str(r)), validation)
            for r in range(self.replicas.count)]

  def _evaluate_one(self, state_host, config, method, workdir, validation) -> Dict[str, float]:
    names = config.get("evaluators") or method.evaluators
    splits = [("eval", self.eval_split)]
    if validation and self.dataset.validation is not None:
      splits.insert(0, ("val", self.dataset.validation.split))
    out = {}
    for prefix, split in splits:
      if self.is_writer and prefix == "eval":
        os.makedirs(workdir, exist_ok=True)
      ctx = evaluators_lib.EvalContext(
          config=config, params=state_host.params, model_state=state_host.model_state,
          buffers=state_host.buffers, model=self.model, method=method, dataset=self.dataset,
          eval_split=split, workdir=workdir if self.is_writer and prefix == "eval" else None,
          predict_fn=lambda s: self.predictions(s, state_host))
      for name in names:
        for k, v in evaluators_lib.get_evaluator(name)(ctx).items():
          out[f"{prefix}/{k}"] = float(v)
    return out

  # --- the run ---------------------------------------------------------------------------------
  def initial_state(self):
    """The initial host state; a sweep stacks its replicas' (each from its own seed, options and
    hyperparameters)."""
    sample = self.dataset.train.get(np.arange(1))["input"]
    def one(config, method):
      return jax.device_get(create_state(self.model, self.tx, method, self.info,
                                         seed=int(config.seed), sample_input=sample,
                                         hparams=run_hparams(method, config.optimizer)))
    return self.replicas.initial_state(one)

  def _write_eval(self, writer, step: int, eval_metrics) -> None:
    if not self.replicas.active:
      writer.write(step, eval_metrics)
      return
    for r, one in enumerate(eval_metrics):
      writer.write(step, one, replica=r)

  def _last_logged_loss(self, writer):
    """The last logged ``train/loss`` (per replica in a sweep); NaN when none was logged."""
    logged = [m for m in writers.read_metrics(self.workdir) if "train/loss" in m] \
        if os.path.exists(writer.path) else []
    if not self.replicas.active:
      return logged[-1]["train/loss"] if logged else float("nan")
    last = {m.get("replica"): m["train/loss"] for m in logged}
    return [last.get(r, float("nan")) for r in range(self.replicas.count)]

  def save(self, step: int, state_host) -> None:
    if self.checkpointer is not None:
      self.checkpointer.save(step, state_host)

  def host_context(self, step: int, dstate, replica: Optional[int] = None,
                   get_state=None) -> HostContext:
    """What ``method.host_update`` sees before ``step`` (fetches the state only if asked); in a
    sweep, replica ``replica``'s view (``get_state`` returns its slice of the host state)."""
    guard = getattr(self, "preemption_guard", None)
    first = ((lambda: self.host_batch(0)) if replica is None else
             (lambda: replicas_lib.take(self.host_batch(0), replica)))
    return HostContext(
        step, num_train_examples=self.dataset.train.num_examples, apply=self.model.apply,
        get_state=get_state or (lambda: self.parallel.get_state(dstate)),
        predictions=lambda host_state: self.predictions(self.dataset.train.split, host_state),
        first_batch=first, stop_requested=lambda: guard is not None and guard.requested)

  def host_update(self, step: int, dstate):
    """Runs the method's host work before ``step``; returns the (possibly new) device state.

    In a sweep every replica's method object runs it on that replica's state (its own options,
    e.g. the EM's fairness weight) and the new buffers are stacked again.
    """
    if not self.replicas.active:
      host = self.host_context(step, dstate)
      buffers = self.method.host_update(host)
      if buffers is None:
        return dstate
      return self.parallel.put_state(host.state().replace(buffers=buffers))
    full = self.parallel.get_state(dstate)
    new, changed = [], False
    for r, method in enumerate(self.replicas.methods):
      mine = replicas_lib.take(full, r)
      buffers = method.host_update(self.host_context(step, dstate, r, get_state=lambda s=mine: s))
      changed |= buffers is not None
      new.append(mine.buffers if buffers is None else buffers)
    if not changed:
      return dstate
    return self.parallel.put_state(full.replace(buffers=replicas_lib.stack(new)))

  def host_sync_every(self, steps_per_call: int = 1) -> int:
    """Steps between host syncs (``config.host_sync_every``; 0: the log interval, at most
    ``MAX_STEPS_IN_FLIGHT`` steps or two calls of ``steps_per_call``, whichever is more)."""
    n = int(self.config.get("host_sync_every", 0) or 0)
    return n or min(max(1, int(self.config.get("log_every", 50))),
                    max(MAX_STEPS_IN_FLIGHT, 2 * int(steps_per_call)))

  def call_length(self, step: int, intervals, total: int) -> int:
    """How many steps the call that starts at ``step`` may run: at most ``steps_per_call``, and
    it ends at the next multiple of every positive interval in ``intervals`` (log, eval,
    checkpoint, host sync), at ``total``, and before the next step that needs the method's host
    update. (The feed also ends it at its index block's end.)"""
    n = min(self.steps_per_call, total - step)
    for every in intervals:
      if every > 0:
        n = min(n, every - step % every)
    for j in range(1, n):
      if self.method.needs_host_update(step + j):
        return j
    return n

  def _raise_if_nonfinite(self, guard, done: int, dmetrics, last_good: int) -> None:
    """Stop policy: raises :class:`NonFiniteLossError` if a step up to ``done`` was non-finite."""
    first = int(np.asarray(self.parallel.get_state(guard["step"])))  # one transfer while finite
    if first == step_lib.ALL_FINITE:
      return
    guard = self.parallel.get_state(guard)
    loss, norm = float(guard["loss"]), float(guard["grad_norm"])
    metrics = self.parallel.metrics_to_host(dmetrics) if dmetrics is not None else {}
    raise NonFiniteLossError(
        f"non-finite loss or gradient at step {first} (method {self.config.method!r}; loss "
        f"{loss}, gradient norm {norm}; found at the host sync after step {done}, metrics of step "
        f"{done}: {metrics}); the last good checkpoint (step {last_good}) is kept in "
        f"{os.path.join(self.workdir, 'checkpoints')}. Lower the learning rate (in a new "
        f"--workdir: the workdir holds this config's run) or resume with "
        f"--config.nan_policy=skip.")

  def run(self) -> Dict[str, Any]:
    """Trains to ``total_steps`` holding the workdir (``train/workdir.py``); the results dict."""
    # The guard (SIGTERM/SIGINT -> checkpoint and stop) covers the whole run, the final save too.
    with workdir_lib.claim(self.config, self.workdir, num_devices=len(self.parallel.devices)), \
        preemption.PreemptionGuard() as self.preemption_guard:
      return self._run()

  def _run(self) -> Dict[str, Any]:
    """Trains from the newest checkpoint to ``total_steps``, evaluates, writes ``results.json``.

    The loop keeps metrics on the devices: the host syncs (waits for the steps in flight) only
    every ``host_sync_every`` steps and at log, eval, checkpoint, host-update and preemption
    steps. One compiled call runs up to ``steps_per_call`` steps and ends at each of those steps
    (:meth:`call_length`; a preemption request is honoured at the end of the running call). A log
    record holds the metrics of its own step. The non-finite guard is read at every
    sync, so under ``nan_policy="stop"`` a non-finite step is reported with its exact number at
    the next sync and no checkpoint of a non-finite state is ever written.
    """
    started = time.time()
    config = self.config
    total = int(config.total_steps)
    state = self.initial_state()
    start = 0
    if self.checkpointer is not None:
      restored, state = self.checkpointer.restore(state)
      if restored is not None:
        start = int(restored)
        logging.warning("resumed from step %d (the checkpoint in %s)", start, self.workdir)
    workdir_lib.write_config(config, self.workdir, num_devices=len(self.parallel.devices))
    writer = writers.MetricWriter(self.workdir, active=self.is_writer,
                                  tensorboard=config.get("tensorboard", True))
    writer.truncate_after(start)
    self.host_state = state
    dstate = self.parallel.put_state(state)
    log_every = max(1, int(config.get("log_every", 50)))
    eval_every = int(config.get("eval_every", 0) or 0)
    ckpt_every = int(config.get("checkpoint_every", 0) or 0)
    self.steps_per_call = self.resolve_steps_per_call(state)
    sync_every = self.host_sync_every(self.steps_per_call)
    stop_on_nan = config.get("nan_policy", "stop") == "stop"
    last_good = start
    metrics: Dict[str, float] = {}
    progress = None
    if self.is_writer and config.get("progress_bar", True) and start < total:
      from tqdm import tqdm
      progress = tqdm(total=total, initial=start, desc=f"{config.method}@{config.dataset}",
                      dynamic_ncols=True, leave=False)
    prefetch = self.batch_feed(start, total)
    nonfinite = self.new_guard()
    t0, seen, shown = time.time(), 0, start
    guard = self.preemption_guard
    preempted = False
    intervals = (log_every, eval_every, ckpt_every, sync_every)
    try:
      step = start
      while step < total:
        if self.method.needs_host_update(step):
          if stop_on_nan:
            self._raise_if_nonfinite(nonfinite, step, None, last_good)
          dstate = self.host_update(step, dstate)
        _, batch = prefetch.next(self.call_length(step, intervals, total))
        steps = batch.steps if isinstance(batch, feed_lib.Indices) else 1
        dstate, nonfinite, dmetrics = self.apply_train_step(dstate, nonfinite, batch)
        seen += steps * config.batch_size
        done = step = step + steps
        log_now = done % log_every == 0 or done == total
        eval_now = eval_every > 0 and done % eval_every == 0 and done != total
        ckpt_now = ckpt_every > 0 and done % ckpt_every == 0  # -1: never, 0: only at the end
        stop_now = guard.should_stop(done) and done < total  # honoured at the end of a call
        if not (log_now or eval_now or ckpt_now or stop_now or done % sync_every == 0):
          continue  # no host sync: the next call is dispatched while this one runs
        if stop_on_nan:  # waits for the steps in flight
          self._raise_if_nonfinite(nonfinite, done, dmetrics, last_good)
        if log_now:
          metrics = self.parallel.metrics_to_host(dmetrics)
          elapsed = max(time.time() - t0, 1e-9)
          for r, c in enumerate(self.replicas.configs):
            one = ({k: v[r] for k, v in metrics.items()} if self.replicas.active else metrics)
            record = {f"train/{k}": v for k, v in one.items()}
            record["train/examples_per_sec"] = seen / elapsed  # of each replica
            record["train/learning_rate"] = float(optim.make_schedule(
                c.optimizer, total)(done - 1))
            writer.write(done, record, replica=r if self.replicas.active else None)
          t0, seen = time.time(), 0
        if progress is not None:
          progress.update(done - shown)
          shown = done
          if metrics:
            progress.set_postfix(loss=f"{np.mean(metrics['loss']):.4f}", refresh=False)
        if eval_now or ckpt_now:
          self.host_state = self.parallel.get_state(dstate)
        if eval_now:
          self._write_eval(writer, done, self.evaluate(self.host_state))
        if ckpt_now:
          self.save(done, self.host_state)
          last_good = done
        if stop_now:  # preempted: checkpoint `done` below, return
          logging.warning("preempted at step %d: saving a checkpoint and stopping; rerun the same "
                          "command to resume", done)
          preempted = True
          break
    finally:
      prefetch.close()
      if progress is not None:
        progress.close()
    self.host_state = self.parallel.get_state(dstate)
    final_step = int(np.asarray(self.host_state.step).reshape(-1)[0])  # replicas: all equal
    self.save(final_step, self.host_state)
    if preempted:  # no evaluation, no results.json: the run is not finished
      writer.close()
      if self.checkpointer is not None:
        self.checkpointer.close()
      return {"step": final_step, "preempted": True,
              "train/loss": self.parallel.metrics_to_host(dmetrics)["loss"]}
    if not metrics:  # resumed at the end: recover the last logged training loss
      metrics = {"loss": self._last_logged_loss(writer)}
    eval_metrics = self.evaluate(self.host_state, validation=True)
    self._write_eval(writer, final_step, eval_metrics)
    if self.replicas.active:
      results = self.replicas.results(
          [{"step": final_step, "train/loss": loss, **ev}
           for loss, ev in zip(metrics["loss"], eval_metrics)], config.get("sweep_select", ""))
    else:
      results = {"step": final_step, "train/loss": metrics["loss"], **eval_metrics}
    if self.is_writer:
      with open(os.path.join(self.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    writer.close()
    if self.checkpointer is not None:
      self.checkpointer.close()
    if self.is_writer:
      print(writers.run_summary(steps=final_step, start_step=start, batch_size=config.batch_size,
                                wall_seconds=time.time() - started, workdir=self.workdir,
                                results=results), flush=True)
    return results


def train_and_evaluate(config, workdir: str) -> Dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns the results dict."""
  return Trainer(config, workdir).run()
