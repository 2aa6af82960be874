r"""Fallback for machines with JAX but without flax/optax: the CIFAR ResNet-18 training step in pure JAX.

Same network as ``labelwise.models.ResNet18`` (3x3 stem, no max-pool, BasicBlocks 2-2-2-2, BatchNorm in
training mode with the last scale of each block zero-initialised, 1x1 projection shortcuts), softmax
cross-entropy and Adam (lr 1e-3), under ``jax.jit`` with the state donated. ``--dtype=bfloat16``
computes convolutions/matmuls in bfloat16 while parameters, BatchNorm statistics, the loss and Adam stay
float32 (the project's mixed-precision option). The running BatchNorm averages are not kept (a few
elementwise ops per layer). Used by ``benchmarks/gpu.sh`` only when ``labelwise`` cannot be imported.

    python3 benchmarks/resnet_purejax.py --batch_size=512 --dtypes=float32,bfloat16
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def init(key, width: int = 64, num_classes: int = 10, in_ch: int = 3):
  keys = iter(jax.random.split(key, 128))

  def conv(cin, cout, k):
    return jax.random.normal(next(keys), (k, k, cin, cout), jnp.float32) * np.sqrt(2.0 / (k * k * cin))

  def bn(c, zero=False):
    return {"scale": (jnp.zeros if zero else jnp.ones)((c,), jnp.float32),
            "bias": jnp.zeros((c,), jnp.float32)}

  p = {"stem": conv(in_ch, width, 3), "stem_bn": bn(width), "blocks": []}
  cin = width
  for i in range(4):
    for j in range(2):
      cout = width * 2**i
      b = {"c1": conv(cin, cout, 3), "b1": bn(cout), "c2": conv(cout, cout, 3),
           "b2": bn(cout, zero=True)}
      if i > 0 and j == 0:
        b["sc"], b["sb"] = conv(cin, cout, 1), bn(cout)
      p["blocks"].append(b)
      cin = cout
  lim = 1.0 / np.sqrt(cin)
  p["head"] = {"w": jax.random.uniform(next(keys), (cin, num_classes), jnp.float32, -lim, lim),
               "b": jnp.zeros((num_classes,), jnp.float32)}
  return p


def _conv(x, w, stride, dtype):
  pad = (w.shape[0] - 1) // 2
  return jax.lax.conv_general_dilated(x, w.astype(dtype), (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _bn(x, p, dtype, eps=1e-5):
  x32 = x.astype(jnp.float32)
  mean = x32.mean((0, 1, 2))
  var = jnp.mean(jnp.square(x32 - mean), (0, 1, 2))
  return ((x32 - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]).astype(dtype)


def apply(p, x, dtype=jnp.float32):
  x = x.astype(dtype)
  x = jax.nn.relu(_bn(_conv(x, p["stem"], 1, dtype), p["stem_bn"], dtype))
  for b in p["blocks"]:
    stride = 2 if "sc" in b else 1
    y = jax.nn.relu(_bn(_conv(x, b["c1"], stride, dtype), b["b1"], dtype))
    y = _bn(_conv(y, b["c2"], 1, dtype), b["b2"], dtype)
    if "sc" in b:
      x = _bn(_conv(x, b["sc"], stride, dtype), b["sb"], dtype)
    x = jax.nn.relu(x + y)
  feats = x.mean((1, 2))
  return (feats @ p["head"]["w"].astype(dtype)).astype(jnp.float32) + p["head"]["b"]


def make_step(dtype, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
  def loss_fn(p, x, y):
    logits = apply(p, x, dtype)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

  def step(state, x, y):
    p, m, v, t = state
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    t = t + 1
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
    c1, c2 = 1 - b1**t, 1 - b2**t
    p = jax.tree_util.tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
    return (p, m, v, t), loss
  return jax.jit(step, donate_argnums=(0,))


def bench(batch_size: int, dtype_name: str, steps: int, width: int = 64):
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype_name]
  p = init(jax.random.PRNGKey(0), width)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
  state = (p, zeros, jax.tree_util.tree_map(jnp.zeros_like, p), jnp.zeros((), jnp.float32))
  rng = np.random.default_rng(0)
  x = jax.device_put(rng.standard_normal((batch_size, 32, 32, 3)).astype(np.float32))
  y = jax.device_put(rng.integers(0, 10, batch_size).astype(np.int32))
  step = make_step(dtype)
  t0 = time.perf_counter()
  compiled = step.lower(state, x, y).compile()
  compile_s = time.perf_counter() - t0
  state, loss = compiled(state, x, y)
  jax.block_until_ready(loss)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, loss = compiled(state, x, y)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
  ms = 1e3 * float(np.median(times))
  return compile_s, batch_size / (ms / 1e3), ms, float(loss)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch_size", type=int, default=512)
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  a = p.parse_args(argv)
  dev = jax.devices()[0]
  lines = [f"pure-JAX fallback (no flax/optax), jax {jax.__version__}, backend "
           f"{jax.default_backend()}, device {dev.device_kind}, loadavg {os.getloadavg()[0]:.1f}",
           "", "| model | batch | dtype | compile s | ex/s | ms/step | final loss |",
           "|---|---|---|---|---|---|---|"]
  for d in a.dtypes.split(","):
    if d not in ("float32", "bfloat16"):
      p.error(f"--dtypes: got {d!r}; expected float32 and/or bfloat16")
    c, eps, ms, loss = bench(a.batch_size, d, a.steps, a.width)
    lines.append(f"| resnet18 (pure JAX, width {a.width}) | {a.batch_size} | {d} | {c:.1f} | "
                 f"{eps:,.0f} | {ms:.1f} | {loss:.3f} |")
    print(lines[-1], flush=True)
  text = "\n".join(lines)
  print("\n" + text)
  if a.out_dir:
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "results_purejax.md"), "a") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
