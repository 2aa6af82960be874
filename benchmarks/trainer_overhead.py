r"""Trainer overhead: the trainer's steady-state examples/s against a minimal hand-written JAX loop.

Same model, batch, optimizer and data in both:

* **trainer**: ``train_and_evaluate`` on the config (``parallel`` = pmap, shard_map or jit), no
  checkpoints; examples/s is ``train/examples_per_sec`` from ``metrics.jsonl`` (the trainer times
  the steps between two log records, host syncs included), the median over the log records after
  the first one (which holds the compilation). Evaluation runs after the timed steps and is not
  counted. ``config.steps_per_call`` is the config's (0: auto, 16 steps per compiled call for
  these small models); ``--steps_per_call=1`` measures one step per call.
* **minimal**: the training split placed once on the devices, one ``jax.jit`` step with the state
  donated that gathers its batch from the split by indices (placed before timing), softmax
  cross-entropy, ``jax.value_and_grad``, the config's optax optimizer; no metrics; it waits for a
  step only every 20 steps (as the trainer; without it 4 fake CPU devices deadlock). ``jit`` with
  the batch sharded over the same devices.

Cases: digits MLP (128, 128), batch 128, Adam 1e-3 (``configs/digits_ce.py``) and SmallCNN on
MNIST-1D, batch 128, Adam 3e-3 cosine (``configs/mnist1d_ce.py``). One device and 4 fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``), each device count in its own subprocess.
Trainer and minimal loop alternate in rounds (machine load hits both); medians are reported.

    python benchmarks/trainer_overhead.py                 # full (writes benchmarks/results.md)
    python benchmarks/trainer_overhead.py --quick         # a smoke run, nothing written
    python benchmarks/trainer_overhead.py --modes=pmap,jit --devices=1 --no_write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

CASES = {  # key: (title, config module, steps per run, log_every)
    "mlp": ("digits MLP (128, 128)", "digits_ce", 3000, 250),
    "cnn": ("MNIST-1D SmallCNN", "mnist1d_ce", 1000, 100),
}
MODES = ("pmap", "shard_map", "jit")
# The minimal loop waits for its step every SYNC_EVERY steps, like the trainer (which syncs every
# min(log_every, 20) steps): with thousands of steps in flight, XLA:CPU's collectives on 4 fake
# devices deadlock (observed here: the 4-device worker hung in its first all-reduce).
SYNC_EVERY = 20


def make_config(module: str, steps: int, log_every: int, parallel: str, num_devices: int,
                steps_per_call: int = 0):
  import importlib
  config = importlib.import_module(f"labelwise.configs.{module}").get_config(None)
  config.total_steps = steps
  config.log_every = log_every
  config.checkpoint_every = -1
  config.parallel = parallel
  config.num_devices = num_devices
  config.progress_bar = False
  config.tensorboard = False
  config.steps_per_call = steps_per_call
  return config


def trainer_examples_per_sec(config):
  """``(examples/s, the run's resolved steps_per_call)``."""
  from labelwise.train import trainer
  from labelwise.train.writers import read_metrics
  with tempfile.TemporaryDirectory() as workdir:
    t = trainer.Trainer(config, workdir)
    t.run()
    rates = [m["train/examples_per_sec"] for m in read_metrics(workdir)
             if "train/examples_per_sec" in m]
  return _common.median(rates[1:]), getattr(t, "steps_per_call", 1)


def minimal_examples_per_sec(config) -> float:
  """The hand-written loop: data on the devices, gather inside a jitted donated step, no syncs."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  from labelwise.data import make_dataset
  from labelwise.models import get_model
  from labelwise.train import optim

  devices = jax.devices()[:config.num_devices] if config.num_devices > 0 else jax.devices()
  mesh = Mesh(np.asarray(devices), ("data",))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  ds = make_dataset(config)
  n = ds.train.num_examples
  split = ds.train.get(np.arange(n))
  data = jax.device_put({"input": split["input"], "label": split["label"]}, replicated)
  model = get_model(config.model, num_classes=ds.spec.num_classes, **dict(config.model_kwargs))
  tx = optim.make_optimizer(config.optimizer, int(config.total_steps))
  params = model.init(jax.random.PRNGKey(0), split["input"][:1], train=False)["params"]
  state = jax.device_put((params, tx.init(params)), replicated)

  def step(state, data, idx):
    params, opt_state = state
    x, y = data["input"][idx], data["label"][idx]

    def loss_fn(p):
      logits = model.apply({"params": p}, x, train=True)["logits"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  step = jax.jit(step, in_shardings=(replicated, replicated, sharded),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))
  steps, b = int(config.total_steps), int(config.batch_size)
  rng = np.random.default_rng(0)
  idxs = [jax.device_put(rng.integers(0, n, b).astype(np.int32), sharded) for _ in range(steps)]
  state, loss = step(state, data, idxs[0])  # compile
  jax.block_until_ready(loss)
  t0 = time.perf_counter()
  for i, idx in enumerate(idxs):
    state, loss = step(state, data, idx)
    if i % SYNC_EVERY == SYNC_EVERY - 1:  # as the trainer: see trainer.MAX_STEPS_IN_FLIGHT
      jax.block_until_ready(loss)
  jax.block_until_ready(loss)
  return steps * b / (time.perf_counter() - t0)


def dispatch_us(module: str, num_devices: int, calls: int) -> dict:
  """Microseconds per training step (batch on the device, a sync every 20 steps) per dispatch path.

  The trainer's own step function (digits MLP, CE, Adam, non-finite guard) compiled as
  ``jax.pmap``, as ``jit(shard_map)`` over the same stacked layout (``Parallel.pmap_through_jit``,
  the trainer's pmap path), under ``jit``; and the old loop's pmap step: ``jax.pmap`` plus a
  per-step metrics fetch (``x[0]`` of every metric, then ``device_get``).
  """
  import jax

  from labelwise.train import step as step_lib
  from labelwise.train import trainer

  out = {}
  with tempfile.TemporaryDirectory() as workdir:
    for mode in ("pmap", "jit"):
      t = trainer.Trainer(make_config(module, calls, calls, mode, num_devices), workdir)
      step_fn = step_lib.make_train_step(t.method, t.model.apply, t.tx,
                                         axis_name=t.parallel.axis_name)
      par = t.parallel
      variants = {f"{mode} (trainer, one step per call)": (
          par.compile_train_step(step_fn, guard=True), False)}
      if mode == "pmap":
        plain = jax.pmap(step_lib.guard_nonfinite(step_fn), axis_name=step_lib.AXIS,
                         donate_argnums=(0, 1))
        variants["jax.pmap"] = (plain, False)
        variants["jax.pmap + metrics fetched every step (old loop)"] = (plain, True)
      batch = par.put_batch(t.host_batch(0))
      host_state = t.initial_state()
      if t.train_steps_on_data is not None:  # the trainer's looped program, LOOP_STEPS per call
        looped = t.train_steps_on_data
        index_block = t.batch_feed(0, calls).next()[1]
        data = t._device_split.data
        loop_name = f"{mode} (trainer, {LOOP_STEPS} steps per call, per step)"
        out[loop_name] = _looped_us(par, t, host_state, looped, data, index_block, calls)
      for name, (fn, fetch) in variants.items():
        state, guard = par.put_state(host_state), t.new_guard()
        state, guard, metrics = fn(state, guard, batch)
        jax.block_until_ready(metrics)
        t0 = time.perf_counter()
        for i in range(calls):
          state, guard, metrics = fn(state, guard, batch)
          if fetch:
            jax.device_get(jax.tree_util.tree_map(lambda x: x[0], metrics))
          elif i % SYNC_EVERY == SYNC_EVERY - 1:  # as the trainer (see SYNC_EVERY)
            jax.block_until_ready(metrics)
        jax.block_until_ready(metrics)
        out[name] = (time.perf_counter() - t0) / calls * 1e6
  return out


LOOP_STEPS = 16


def _looped_us(par, t, host_state, looped, data, index_block, calls) -> float:
  """Microseconds per step of the trainer's looped program at LOOP_STEPS steps per call (a sync
  every 2 calls, as the trainer's default). Steps past the index block re-read its last row."""
  import jax
  import numpy as np

  count = jax.device_put(np.int32(LOOP_STEPS), t._device_split.place)
  args = (data, index_block.block, index_block.start, count)
  state, guard = par.put_state(host_state), t.new_guard()
  state, guard, metrics = looped(state, guard, *args)
  jax.block_until_ready(metrics)
  n = max(1, calls // LOOP_STEPS)
  t0 = time.perf_counter()
  for i in range(n):
    state, guard, metrics = looped(state, guard, *args)
    if i % 2 == 1:
      jax.block_until_ready(metrics)
  jax.block_until_ready(metrics)
  return (time.perf_counter() - t0) / (n * LOOP_STEPS) * 1e6


# XLA:CPU aborts a collective whose device threads do not all arrive within 40 s, which a heavily
# loaded machine can exceed: the workers wait up to 10 minutes instead.
PATIENT_COLLECTIVES = (" --xla_cpu_collective_timeout_seconds=600"
                       " --xla_cpu_collective_call_terminate_timeout_seconds=600")


def worker(args) -> None:
  """One device count (this process): rounds of trainer / minimal per case and mode.

  Prints one ``ROW {json}`` line per finished (case, mode), so a crash keeps the rows before it.
  """
  if "collective_call_terminate" not in os.environ.get("XLA_FLAGS", ""):  # before jax starts
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + PATIENT_COLLECTIVES
  out = []
  for case in args.cases.split(","):
    title, module, steps, log_every = CASES[case]
    if args.quick:
      steps, log_every = 60, 20
    spcs = [int(x) for x in str(args.steps_per_call).split(",")]
    minimal = []
    trainer = {(m, k): [] for m in args.modes.split(",") for k in spcs}
    resolved = {}
    for _ in range(args.rounds):
      minimal.append(minimal_examples_per_sec(make_config(module, steps, log_every, "jit",
                                                          args.num_devices)))
      for mode, spc in trainer:
        rate, resolved[mode, spc] = trainer_examples_per_sec(
            make_config(module, steps, log_every, mode, args.num_devices, spc))
        trainer[mode, spc].append(rate)
    for (mode, spc), rates in trainer.items():
      out.append(dict(case=title, devices=args.num_devices, mode=mode,
                      steps_per_call=resolved[mode, spc],
                      trainer=_common.median(rates), minimal=_common.median(minimal),
                      trainer_runs=rates, minimal_runs=minimal))
      print("ROW " + json.dumps(out[-1]), flush=True)
  from labelwise.train import trainer
  dispatch = {}
  if args.dispatch and hasattr(trainer.Trainer, "new_guard"):  # (an older checkout: skipped)
    dispatch = dispatch_us("digits_ce", args.num_devices, 50 if args.quick else 2000)
  print("RESULT " + json.dumps(dict(rows=out, dispatch=dispatch, env=_common.environment())),
        flush=True)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--cases", default=",".join(CASES))
  p.add_argument("--modes", default=",".join(MODES))
  p.add_argument("--devices", default="1,4", help="device counts, each in its own subprocess")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--steps_per_call", default="0",
                 help="the trainer's config.steps_per_call, a comma list (0: auto)")
  p.add_argument("--quick", action="store_true", help="tiny step counts; nothing written")
  p.add_argument("--no_write", action="store_true", help="print only, do not append results.md")
  p.add_argument("--label", default="", help="added to the section title (e.g. the commit)")
  p.add_argument("--no_dispatch", dest="dispatch", action="store_false",
                 help="skip the per-step dispatch table (needs this checkout's trainer)")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--num_devices", type=int, default=1, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    return worker(args)
  rows, envs, dispatch = [], [], {}
  for n in [int(d) for d in args.devices.split(",")]:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + PATIENT_COLLECTIVES +
                          f" --xla_force_host_platform_device_count={n}").strip())
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"--num_devices={n}",
           f"--cases={args.cases}", f"--modes={args.modes}", f"--rounds={args.rounds}",
           f"--steps_per_call={args.steps_per_call}"]
    cmd += ["--quick"] if args.quick else []
    cmd += [] if args.dispatch else ["--no_dispatch"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    if proc.returncode:  # keep the rows it finished
      print(f"worker ({n} devices) failed:\n{proc.stderr[-4000:]}", file=sys.stderr)
      rows += [json.loads(l[4:]) for l in lines if l.startswith("ROW ")]
      envs.append(f"{n} device(s): the worker failed (exit {proc.returncode}) after "
                  f"{sum(l.startswith('ROW ') for l in lines)} rows")
      continue
    result = json.loads([l for l in lines if l.startswith("RESULT ")][-1][7:])
    rows += result["rows"]
    dispatch[n] = result["dispatch"]
    envs.append(f"{n} device(s): {result['env']}")
  table = _common.table(
      ["case", "devices", "trainer parallel", "steps/call", "trainer ex/s", "minimal jit ex/s",
       "ratio", "runs (trainer / minimal)"],
      [(r["case"], r["devices"], r["mode"], r.get("steps_per_call", 1), r["trainer"], r["minimal"],
        f"{r['trainer'] / r['minimal']:.2f}x",
        " ".join(f"{x:,.0f}" for x in r["trainer_runs"]) + " / " +
        " ".join(f"{x:,.0f}" for x in r["minimal_runs"])) for r in rows])
  text = "\n".join(envs) + "\n\n" + table
  if any(dispatch.values()):
    names = list(next(d for d in dispatch.values() if d))
    text += ("\n\nPer-step cost by dispatch path, digits MLP step, batch on the device, a host "
             f"sync every {SYNC_EVERY} steps (the looped program: every 2 calls of {LOOP_STEPS} "
             "steps) (us/step):\n\n")
    text += _common.table(["step compiled as"] + [f"{n} device(s)" for n in dispatch],
                          [[name] + [dispatch[n].get(name, float("nan")) for n in dispatch]
                           for name in names])
  title = "Trainer overhead: trainer vs a minimal jitted loop" + (
      f" ({args.label})" if args.label else "")
  if args.quick or args.no_write:
    print(text)
  else:
    _common.report(title, text)


if __name__ == "__main__":
  main()
