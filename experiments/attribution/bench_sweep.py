r"""Why is a vmapped double-backprop sweep slow on CPU? One compiled training step, R replicas.

    python experiments/attribution/bench_sweep.py                       # the default measurement
    python experiments/attribution/bench_sweep.py --methods rrr --impls auto xla patches --chunks 5

The step is ``experiments/attribution/bench.py``'s (the real method ``loss`` under
``jax.value_and_grad`` plus Adam), on the study's model (``attribution_cnn``, channels 16/32, dense
128) and batch (32 x 28x28x1), ``jax.vmap``-ed over ``R`` replicas (each its own parameters,
optimizer state and batch), as the trainer's sweep does (``train/step.py``). ``--chunks C`` runs
the R replicas as ``lax.map`` over C groups of R / C vmapped replicas instead (one compiled
program). The configurations are compiled first, then timed in interleaved rounds (the shared CPU's
load changes by the minute); reported: the best round's seconds for R replica-steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import numpy as np  # noqa: E402


def build(method_name, impl, replicas, chunks, batch_size=32):
  import jax
  import jax.numpy as jnp
  import optax
  from labelwise.experiments.attribution import bench
  from labelwise.models import get_model
  from labelwise.train.methods.base import RunInfo

  model = get_model("attribution_cnn", num_classes=2, channels=(16, 32), dense=128,
                    conv_impl=impl)
  tx = optax.adam(1e-3)
  method, step = bench.make_step(method_name, model, tx)
  step = step.__wrapped__ if hasattr(step, "__wrapped__") else step
  rng = np.random.default_rng(0)
  shape = (28, 28, 1)
  x = rng.normal(size=(replicas, batch_size) + shape).astype(np.float32)
  m = np.zeros((replicas, batch_size) + shape[:2], np.float32)
  m[:, :, 7:21, 7:21] = 1.0
  batch = {"input": jnp.asarray(x),
           "label": jnp.asarray(rng.integers(0, 2, (replicas, batch_size)), jnp.int32),
           "mask": jnp.asarray(m),
           "index": jnp.tile(jnp.arange(batch_size, dtype=jnp.int32), (replicas, 1))}
  keys = jax.random.split(jax.random.PRNGKey(0), replicas)
  params = jax.vmap(lambda k: model.init(k, x[0, :1], train=False)["params"])(keys)
  opt = jax.vmap(tx.init)(params)
  info = RunInfo(num_classes=2, num_fine_classes=2, num_coarse_classes=None,
                 num_train_examples=batch_size, input_shape=shape)
  buffers = method.init_buffers(jax.random.PRNGKey(1), info=info)
  vstep = jax.vmap(step, in_axes=(0, 0, None, 0, 0))
  if chunks > 1:
    def grouped(p, o, b, k):
      split = lambda t: t.reshape((chunks, replicas // chunks) + t.shape[1:])  # noqa: E731
      out = jax.lax.map(lambda a: vstep(a[0], a[1], buffers, a[2], a[3]),
                        jax.tree_util.tree_map(split, (p, o, b, k)))
      return jax.tree_util.tree_map(lambda t: t.reshape((replicas,) + t.shape[2:]), out)
    fn = jax.jit(grouped)
    run = lambda p, o, b, k: fn(p, o, b, k)  # noqa: E731
  else:
    fn = jax.jit(vstep)
    run = lambda p, o, b, k: fn(p, o, buffers, b, k)  # noqa: E731
  return run, params, opt, batch, keys


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--methods", nargs="*", default=["ce", "gradmask", "rrr"])
  ap.add_argument("--replicas", type=int, default=30)
  ap.add_argument("--impls", nargs="*", default=["auto", "patches"])
  ap.add_argument("--chunks", type=int, default=1,
                  help="also time the R replicas as lax.map over this many vmapped groups")
  ap.add_argument("--reps", type=int, default=3)
  args = ap.parse_args(argv)
  import jax
  import labelwise.train.methods  # noqa: F401
  r = args.replicas
  print(f"backend {jax.default_backend()}, jax {jax.__version__}, load {os.getloadavg()[0]:.1f}")
  print(f"seconds per {r} replica-steps (min over {args.reps} interleaved rounds): R=1 = {r} "
        f"calls of the 1-replica step, R={r} = one call of the {r}-replica step")
  for method in args.methods:
    built = {}
    for impl in args.impls:
      setups = [(1, 1), (r, 1)] + ([(r, args.chunks)] if args.chunks > 1 else [])
      for reps, chunks in setups:
        built[(impl, reps, chunks)] = build(method, impl, reps, chunks)
        run, p, o, b, k = built[(impl, reps, chunks)]
        jax.block_until_ready(run(p, o, b, k))   # compile
    times = {key: [] for key in built}
    for _ in range(args.reps):
      for key, (run, p, o, b, k) in built.items():
        t0 = time.perf_counter()
        for _ in range(r // key[1]):
          out = run(p, o, b, k)
        jax.block_until_ready(out)
        times[key].append(time.perf_counter() - t0)
    for (impl, reps, chunks), ts in times.items():
      label = f"R={reps}" + (f" as {chunks} lax.map groups" if chunks > 1 else "")
      print(f"{method:9s} {impl:8s} {label:26s} {min(ts):7.2f} s   (load {os.getloadavg()[0]:.1f})",
            flush=True)


if __name__ == "__main__":
  main()
