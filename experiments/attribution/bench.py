r"""Step time of the attribution methods relative to cross-entropy (one jitted training step).

    python experiments/attribution/bench.py                    # both models, B = 64
    python experiments/attribution/bench.py --iters 5 --out runs/attribution_bench.md   # a quick look

Models: ``attribution_cnn`` on 28x28x1 (the crosses study) and ResNet-18 (CIFAR 3x3 stem,
GroupNorm: the masked_folder config) on 32x32x3, batch 64, float32. The step is the real method
``loss`` under ``jax.value_and_grad`` plus an Adam update, jitted, timed after warm-up with
``block_until_ready``; the median over ``--iters`` steps is reported. Needs only jax, flax, optax
(no dataset), so it also runs on an accelerator machine. Writes a markdown table to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import numpy as np  # noqa: E402

METHODS = ("ce", "classify_masked", "actdiff", "gradmask", "rrr")
LIMITS = {"actdiff": 2.2, "gradmask": 3.0, "rrr": 3.0}  # issue 7's targets (x CE)


def make_step(method_name, model, tx):
  import jax
  import optax
  from labelwise.train.methods import METHODS as REGISTRY
  from labelwise.train.methods.base import StepContext

  config = {"seed": 0, method_name: {}}

  class _Cfg(dict):
    def get(self, k, d=None):
      return dict.get(self, k, d)

  method = REGISTRY[method_name](_Cfg(config))

  def step(params, opt_state, buffers, batch, key):
    def loss_fn(p):
      ctx = StepContext(params=p, model_state={}, buffers=buffers, batch=batch, key=key,
                        train=True, axis_name=None, apply_fn=model.apply)
      out = method.loss(ctx)
      return out.loss, out.metrics
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return method, jax.jit(step)


def bench_model(model_name, model_kwargs, shape, batch_size, iters, warmup):
  import jax
  import jax.numpy as jnp
  import optax
  from labelwise.models import get_model
  from labelwise.train.methods.base import RunInfo

  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch_size,) + shape).astype(np.float32)
  m = np.zeros((batch_size,) + shape[:2], np.float32)
  m[:, shape[0] // 4: 3 * shape[0] // 4, shape[1] // 4: 3 * shape[1] // 4] = 1.0
  batch = {"input": jnp.asarray(x), "label": jnp.asarray(rng.integers(0, 2, batch_size), jnp.int32),
           "mask": jnp.asarray(m), "index": jnp.arange(batch_size, dtype=jnp.int32)}
  model = get_model(model_name, num_classes=2, **model_kwargs)
  params = model.init(jax.random.PRNGKey(0), batch["input"][:1], train=False)["params"]
  tx = optax.adam(1e-3)
  info = RunInfo(num_classes=2, num_fine_classes=2, num_coarse_classes=None,
                 num_train_examples=batch_size, input_shape=shape)
  times = {}
  for name in METHODS:
    method, step = make_step(name, model, tx)
    buffers = method.init_buffers(jax.random.PRNGKey(1), info=info)
    p, o = params, tx.init(params)
    key = jax.random.PRNGKey(2)
    for _ in range(warmup):
      p, o, loss = step(p, o, buffers, batch, key)
    jax.block_until_ready(loss)
    ts = []
    for i in range(iters):
      t0 = time.perf_counter()
      p, o, loss = step(p, o, buffers, batch, jax.random.fold_in(key, i))
      jax.block_until_ready((p, loss))
      ts.append(time.perf_counter() - t0)
    times[name] = float(np.median(ts))
    print(f"{model_name:16s} {name:16s} {1e3 * times[name]:8.3f} ms/step", flush=True)
  return times


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iters", type=int, default=30)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "bench.md"))
  parser.add_argument("--models", nargs="*", default=["attribution_cnn", "resnet18"])
  args = parser.parse_args(argv)
  import jax
  import labelwise.train.methods  # noqa: F401  registers the methods and attribution_cnn

  setups = {
      "attribution_cnn": (dict(channels=(16, 32), dense=128), (28, 28, 1)),
      "resnet18": (dict(norm="group"), (32, 32, 3)),
  }
  dev = jax.devices()[0]
  lines = [f"# Attribution methods: step time relative to CE\n",
           f"`python experiments/attribution/bench.py` on {dev.platform} ({dev.device_kind}), "
           f"jax {jax.__version__}, batch {args.batch_size}, float32, median of {args.iters} "
           f"jitted steps (loss + gradient + Adam) after {args.warmup} warm-up steps. Targets "
           f"(issue 7): ActDiff <= 2.2x, GradMask and RRR <= 3x.\n",
           "| model | input | " + " | ".join(METHODS) + " |",
           "|---|---|" + "---|" * len(METHODS)]
  for name in args.models:
    kwargs, shape = setups[name]
    t = bench_model(name, kwargs, shape, args.batch_size, args.iters, args.warmup)
    cells = [f"{1e3 * t['ce']:.2f} ms"] + [
        f"{t[k] / t['ce']:.2f}x" + (" (over target)" if k in LIMITS and t[k] / t["ce"] > LIMITS[k]
                                    else "") for k in METHODS[1:]]
    lines.append(f"| {name} | {'x'.join(map(str, shape))} | " + " | ".join(cells) + " |")
  with open(args.out, "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
