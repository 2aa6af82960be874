r"""Value+grad time of ``simloss`` under jit against optax's integer-label cross-entropy and the
authors' formula, on the same inputs (the issue's benchmark, kept next to the study).

    python experiments/simloss/benchmark.py            # writes experiments/simloss/benchmark.md

"authors' formula" is the reference PyTorch code's maths (``-log(sum_c S[y, c] softmax(z)_c + 1e-8)``),
timed twice: written in JAX (jit), and in PyTorch itself (eager, value + backward) when PyTorch is
importable (it is not a dependency of this project).
Timings are the median of 20 calls after warm-up, on whatever backend JAX uses (see the header).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from labelwise import losses  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def authors_formula(logits, labels, similarity):
  p = jax.nn.softmax(logits, axis=-1)
  return -jnp.log(jnp.sum(similarity[labels] * p, axis=-1) + 1e-8)


def timed(fn, *args, repeats=20):
  jax.block_until_ready(fn(*args))
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t)
  return float(np.median(ts))


def torch_authors_ms(z, y, s, repeats=20):
  """The authors' PyTorch formula, value + backward, on the same inputs (None without PyTorch)."""
  try:
    import torch
  except ImportError:
    return None
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  zt = torch.tensor(np.asarray(z), device=dev, requires_grad=True)
  yt = torch.tensor(np.asarray(y), device=dev, dtype=torch.long)
  st = torch.tensor(np.asarray(s), device=dev)

  def step():
    zt.grad = None
    p = torch.softmax(zt, dim=1)
    loss = torch.mean(-torch.log(torch.sum(st[yt, :] * p, dim=1) + 1e-8))
    loss.backward()
    if dev == "cuda":
      torch.cuda.synchronize()

  for _ in range(3):
    step()
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t)
  return float(np.median(ts)) * 1e3


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join(HERE, "benchmark.md"))
  parser.add_argument("--batch", type=int, default=4096)
  parser.add_argument("--classes", type=int, nargs="*", default=[100, 1000])
  args = parser.parse_args(argv)
  rows = []
  for c in args.classes:
    key = jax.random.PRNGKey(0)
    z = jax.random.normal(key, (args.batch, c)) * 3.0
    y = jax.random.randint(jax.random.PRNGKey(1), (args.batch,), 0, c)
    s = losses.ordinal_similarity(c, reduction_factor=0.5)
    fns = {
        "optax CE (integer labels)": lambda z, y, s: optax.softmax_cross_entropy_with_integer_labels(
            z, y).mean(),
        "simloss (stable, default)": lambda z, y, s: losses.simloss(z, y, s).mean(),
        "simloss (epsilon=1e-8)": lambda z, y, s: losses.simloss(z, y, s, epsilon=1e-8).mean(),
        "authors' formula in JAX": lambda z, y, s: authors_formula(z, y, s).mean(),
    }
    times = {name: timed(jax.jit(jax.value_and_grad(f)), z, y, s) for name, f in fns.items()}
    torch_ms = torch_authors_ms(z, y, s)
    if torch_ms is not None:
      times["authors' formula in PyTorch (eager)"] = torch_ms / 1e3
    base = times["optax CE (integer labels)"]
    for name, t in times.items():
      rows.append((args.batch, c, name, t * 1e3, t / base))
      print(f"B={args.batch} C={c:5d} {name:36s} {t * 1e3:8.3f} ms  x{t / base:.2f}", flush=True)
  dev = jax.devices()[0]
  md = ["# SimLoss value+grad timing", "",
        f"`python experiments/simloss/benchmark.py` on {dev.platform} ({dev.device_kind}, "
        f"{platform.processor() or platform.machine()}), jax {jax.__version__}, median of 20 "
        "jitted calls. Ratio is to optax's integer-label cross-entropy on the same inputs.",
        f"Load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
        + (" Timings on a shared, loaded CPU are noisy; see benchmark_gpu.md for an accelerator."
           if dev.platform == "cpu" else ""), "",
        "| B | C | loss | ms | ratio to optax CE |", "|---|---|---|---|---|"]
  md += [f"| {b} | {c} | {n} | {ms:.3f} | {r:.2f} |" for b, c, n, ms, r in rows]
  md.append("")
  with open(args.out, "w") as f:
    f.write("\n".join(md))
  print("wrote", args.out)


if __name__ == "__main__":
  main()
