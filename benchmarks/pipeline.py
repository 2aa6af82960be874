r"""Input pipeline cost: the trainer's step fed by the real pipeline vs the same step fed a batch that
is already on the device.

"Pipeline" is the trainer's step with its own feed (``Trainer.batch_feed``), then the compiled step
and ``metrics_to_host`` blocking on every step (the trainer itself syncs only every
``host_sync_every`` steps; here every step, so that the feed's cost is not hidden). The feed is one
of:

* device gather (``data.device_cache``, the default for cached splits without augmentation): the
  cached training split lives on the devices and each step's batch is gathered there from the
  step's indices, inside the compiled step under jit/shard_map (one transfer of ``batch_size`` int32
  per step, no thread);
* host thread: ``Dataset.train_batch(step)`` (TFDS ArrayRecord source or the in-memory cache,
  per-epoch permutation from (seed, epoch), batching, optional crop/flip augmentation, this host's
  slice) and ``Parallel.put_batch`` (device transfer, sharding) on the depth-2 background
  ``data.feed.Prefetcher``.

"On device" runs the same loop on one batch placed once. Rounds alternate the two feeds; medians are
reported. The goal: the pipeline costs at most 10%.

Datasets: the offline ``digits`` and ``mnist1d`` (device gather; the host thread on the in-memory
cache; and ``cache_limit=0``: every batch read from the ArrayRecord files), and a CIFAR-sized mock
(``tfds.testing.mock_data``, 32x32x3 uint8 images generated per record, augmentation on, never
cached, so always the host thread) trained with a ResNet-18.

    python benchmarks/pipeline.py            # full
    python benchmarks/pipeline.py --quick    # tiny smoke run, not appended to results.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402


def cases(quick: bool, cifar_width: int, cifar_examples: int):
  """(name, config module, overrides, mock examples or 0)."""
  host = dict(data__device_cache="off")
  out = [
      ("digits / mlp (cached, device gather)", "digits_ce", dict(model="mlp"), 0),
      ("digits / mlp (cached, host thread)", "digits_ce", dict(model="mlp", **host), 0),
      ("digits / mlp (ArrayRecord reads)", "digits_ce", dict(model="mlp", data__cache_limit=0), 0),
      ("mnist1d / small_cnn (cached, device gather)", "mnist1d_ce", {}, 0),
      ("mnist1d / small_cnn (cached, host thread)", "mnist1d_ce", host, 0),
      ("mnist1d / small_cnn (ArrayRecord reads)", "mnist1d_ce", dict(data__cache_limit=0), 0),
      (f"cifar10 mock / resnet18 w{cifar_width} (augment)", "cifar10_ce",
       dict(model_kwargs__width=cifar_width, data__cache_limit=0), cifar_examples),
  ]
  return out[:1] + out[-1:] if quick else out


def make_config(module: str, overrides: dict, batch_size: int):
  """``configs/<module>.py`` on one device (``jit``), no checkpoints, with dotted ``a__b`` overrides."""
  import importlib
  config = importlib.import_module(f"labelwise.configs.{module}").get_config()
  config.batch_size = batch_size
  config.checkpoint_every = -1
  config.progress_bar = False
  config.num_devices = 1
  config.parallel = "jit"
  from labelwise.configs import common
  return common.override(config, **overrides)


def build(module: str, overrides: dict, batch_size: int, workdir: str):
  from labelwise.train import trainer
  return trainer.Trainer(make_config(module, overrides, batch_size), workdir)


def time_loop(t, steps: int, feed: str, start: int):
  """Seconds per step of the trainer's loop over ``steps`` steps, fed by ``feed``."""
  dstate = t.parallel.put_state(t.host_state)
  if feed == "device":
    batch = t.parallel.put_batch(t.host_batch(start))
    next_batch = lambda: batch  # noqa: E731
    prefetch = None
  else:
    prefetch = t.batch_feed(start, start + steps)
    next_batch = lambda: prefetch.next()[1]  # noqa: E731
  guard = t.new_guard()
  try:
    t0 = time.perf_counter()
    for s in range(start, start + steps):
      if t.method.needs_host_update(s):
        host = t.host_context(s, dstate)
        buffers = t.method.host_update(host)
        if buffers is not None:
          dstate = t.parallel.put_state(host.state().replace(buffers=buffers))
      dstate, guard, dmetrics = t.apply_train_step(dstate, guard, next_batch())
      t.parallel.metrics_to_host(dmetrics)  # one step at a time: the feed's cost is not hidden
    elapsed = time.perf_counter() - t0
  finally:
    if prefetch is not None:
      prefetch.close()
  t.host_state = t.parallel.get_state(dstate)
  return elapsed / steps


def time_data_only(t, steps: int, start: int):
  import jax
  if t.device_cache:  # the indices (jit/shard_map: the gather runs inside the step) or the gather
    feed = t.batch_feed(start, start + steps)
    t0 = time.perf_counter()
    for _ in range(steps):
      batch = feed.next()[1]
      jax.block_until_ready(getattr(batch, "value", batch))
    return (time.perf_counter() - t0) / steps
  t0 = time.perf_counter()
  for s in range(start, start + steps):
    jax.block_until_ready(t.parallel.put_batch(t.host_batch(s)))
  return (time.perf_counter() - t0) / steps


def run(quick: bool, steps: int, rounds: int, batch_size: int, cifar_width: int,
        cifar_examples: int):
  import tensorflow_datasets as tfds
  rows = []
  for name, module, overrides, mock in cases(quick, cifar_width, cifar_examples):
    ctx = tfds.testing.mock_data(num_examples=mock) if mock else contextlib.nullcontext()
    with ctx, tempfile.TemporaryDirectory() as workdir:
      t = build(module, overrides, batch_size, workdir)
      t.host_state = t.initial_state()
      time_loop(t, 1, "device", 0)  # compile the step
      time_loop(t, 1, "pipeline", 0)  # and the feed (the device gather)
      dev, pipe, data = [], [], []
      pos = 1
      for _ in range(rounds):
        dev.append(time_loop(t, steps, "device", pos))
        pipe.append(time_loop(t, steps, "pipeline", pos))
        data.append(time_data_only(t, steps, pos))
        pos += steps
      d, p, r = _common.median(dev), _common.median(pipe), _common.median(data)
      row = [name, "device gather" if t.device_cache else "host thread", batch_size, f"{1e3 * d:.1f}", f"{1e3 * p:.1f}", f"{100 * (p / d - 1):+.1f}%",
             f"{1e3 * r:.1f}", "yes" if p <= 1.10 * d else "NO", _common.loadavg()]
      print(row, flush=True)
      rows.append(row)
  headers = ["dataset / model", "feed", "batch", "on-device ms/step", "pipeline ms/step",
             "pipeline cost", "data alone ms/batch", "<= 10%", "loadavg"]
  note = (f"Median over {rounds} rounds x {steps} steps, rounds alternating the two feeds; one "
          f"device, `parallel=jit`. 'data alone' is making one batch with no step running (host "
          f"thread: reading + transferring, hidden by the prefetcher when shorter than the step; "
          f"device gather: making the indices; under pmap also the gather, which jit and shard_map run inside the step).")
  return _common.table(headers, rows) + "\n\n" + note


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--cifar_width", type=int, default=16,
                 help="ResNet-18 width for the CIFAR-sized mock (64 = the real ResNet-18)")
  p.add_argument("--cifar_examples", type=int, default=4096)
  p.add_argument("--quick", action="store_true", help="tiny smoke run, not appended to results")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  a = p.parse_args(argv)
  for k in ("steps", "rounds", "batch_size", "cifar_width", "cifar_examples"):
    if getattr(a, k) < 1:
      p.error(f"--{k} must be >= 1, got {getattr(a, k)}")
  steps, rounds, bs, width = a.steps, a.rounds, a.batch_size, a.cifar_width
  if a.quick:
    steps, rounds, bs, width = 3, 1, 32, 4
  text = run(a.quick, steps, rounds, bs, width, a.cifar_examples)
  _common.report("Input pipeline (benchmarks/pipeline.py)", text, append=not a.quick,
                 out_dir=a.out_dir)


if __name__ == "__main__":
  main()
