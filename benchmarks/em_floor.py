r"""The collision EM against the memory floor: per-iteration cost of ``collision_pseudo_labels``.

For each ``N x K`` (default 8192 x 10 and 131072 x 1000), side by side in one process, rounds
alternating between the programs:

* the EM (``losses.collision_pseudo_labels``, strong fairness, ``tol=0`` so that exactly
  ``max_iter`` iterations run), per iteration = (time(M2 iterations) - time(M1)) / (M2 - M1), which
  removes dispatch, the start point and the return;
* one Sinkhorn-Knopp iteration on the same ``N x K`` (the balancing step of SeLa/SwAV), jitted
  ``fori_loop``, in two forms: SwAV's (the matrix ``Q`` is re-normalized by columns then rows,
  read and written every iteration) and the scaling-vector form (``Q`` read-only, two matrix-vector
  products per iteration, as SeLa's);
* the same EM iterations as a numpy loop (float32, the loop of experiments/collision/bench.py).

The floor: an EM iteration must read ``sigma`` and ``y`` and write the new ``y`` (3 x N x K x 4
bytes); divided by this machine's memory bandwidth, measured here with a numpy copy of a large
array (bytes read + written / time), that is the bound. At N = 8192, K = 10 every array is 320 KiB
and stays in cache, so the bound there is far below the fixed cost of an iteration.

    python benchmarks/em_floor.py                     # both sizes (about a minute on 2 CPU cores)
    python benchmarks/em_floor.py --quick             # seconds, not appended
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Callable, List, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402


def memory_bandwidth(mib: int = 512, repeats: int = 5) -> float:
  """Bytes per second of ``np.copyto`` between two ``mib``-MiB arrays (read + write counted)."""
  import numpy as np
  src = np.ones(mib * 2**20 // 4, np.float32)
  dst = np.empty_like(src)
  np.copyto(dst, src)
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    np.copyto(dst, src)
    best = min(best, time.perf_counter() - t0)
  return 2 * src.nbytes / best


def probs(n: int, k: int, seed: int = 0, scale: float = 3.0):
  import numpy as np
  z = np.random.default_rng(seed).standard_normal((n, k), dtype=np.float32) * scale
  z -= z.max(1, keepdims=True)
  e = np.exp(z)
  e /= e.sum(1, keepdims=True)
  return e


@functools.lru_cache(maxsize=None)
def _collision_bench():
  import importlib.util
  path = os.path.join(os.path.dirname(HERE), "experiments", "collision", "bench.py")
  spec = importlib.util.spec_from_file_location("_collision_bench", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def numpy_em(sigma, lam: float, iters: int):
  """The strong-fairness EM iterations as a plain numpy loop (float32): the loop of
  experiments/collision/bench.py, loaded from there."""
  return _collision_bench().numpy_em(sigma, lam, iters)


def sinkhorn_programs():
  """(swav, scaling): jitted ``f(q, iters)`` running ``iters`` Sinkhorn-Knopp iterations (``iters``
  traced, as ``max_iter`` of the EM: one compilation serves every count)."""
  import jax
  import jax.numpy as jnp

  @jax.jit
  def swav(q, iters):
    n, k = q.shape

    def body(_, q):
      q = q / (jnp.sum(q, axis=0, keepdims=True) * k)
      return q / (jnp.sum(q, axis=1, keepdims=True) * n)
    return jax.lax.fori_loop(0, iters, body, q)

  @jax.jit
  def scaling(q, iters):
    n, k = q.shape

    def body(_, uv):
      u, v = uv
      v = (1.0 / k) / (u @ q)
      u = (1.0 / n) / (q @ v)
      return u, v
    u, v = jax.lax.fori_loop(0, iters, body, (jnp.ones((n,), q.dtype), jnp.ones((k,), q.dtype)))
    return u[:, None] * q * v[None, :]

  return swav, scaling


def timed_counts(run: Callable[[int], object], m1: int, m2: int) -> Tuple[float, float]:
  """Seconds of ``run(m1)`` and of ``run(m2)`` (one call each, blocking on the result)."""
  import jax
  ts = []
  for m in (m1, m2):
    t0 = time.perf_counter()
    jax.block_until_ready(run(m))
    ts.append(time.perf_counter() - t0)
  return ts[0], ts[1]


def per_iteration(t1: Sequence[float], t2: Sequence[float], m1: int, m2: int):
  """(median-based, min-based) seconds per iteration: (t(m2) - t(m1)) / (m2 - m1) over the rounds'
  medians and over their minima (the minima are the robust estimate on a loaded machine)."""
  return ((_common.median(list(t2)) - _common.median(list(t1))) / (m2 - m1),
          (min(t2) - min(t1)) / (m2 - m1))


def size_rows(n: int, k: int, bandwidth: float, m1: int, m2: int, rounds: int,
              numpy_iters: Tuple[int, int]) -> list:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from labelwise import losses

  sigma_np = probs(n, k)
  sigma = jnp.asarray(sigma_np)
  swav, scaling = sinkhorn_programs()
  programs = {
      "EM (collision_pseudo_labels)": lambda m: losses.collision_pseudo_labels(
          sigma, tol=0.0, max_iter=m)[0],
      "Sinkhorn, SwAV form (Q re-normalized)": lambda m: swav(sigma, m),
      "Sinkhorn, scaling vectors (Q read-only)": lambda m: scaling(sigma, m),
  }
  for run in programs.values():  # compile every iteration count once
    timed_counts(run, m1, m2)
  _collision_bench()  # load the numpy loop's module before any timing
  programs["numpy EM loop (float32)"] = lambda m: numpy_em(sigma_np, 1.0, m)
  counts = {name: (m1, m2) for name in programs}
  counts["numpy EM loop (float32)"] = numpy_iters
  times = {name: ([], []) for name in programs}
  for _ in range(rounds):
    for name, run in programs.items():
      a, b = timed_counts(run, *counts[name])
      times[name][0].append(a)
      times[name][1].append(b)
  est = {name: per_iteration(t1, t2, *counts[name]) for name, (t1, t2) in times.items()}
  floor_bytes = 3 * n * k * 4
  floor_s = floor_bytes / bandwidth
  em = est["EM (collision_pseudo_labels)"][1]
  np_it = est["numpy EM loop (float32)"][1]
  rows = []
  for name, (med, low) in est.items():
    rows.append([f"{n} x {k}", name, f"{1e6 * med:.1f}", f"{1e6 * low:.1f}",
                 f"{low / floor_s:.1f}x", f"{em / low:.2f}x" if name.startswith("Sinkhorn") else "-",
                 f"{np_it / low:.1f}x"])
  # Same iterations, same result: the device EM against the numpy loop (a correctness guard).
  diff = float(np.max(np.abs(np.asarray(programs["EM (collision_pseudo_labels)"](m1))
                             - numpy_em(sigma_np, 1.0, m1))))
  return rows, floor_bytes, floor_s, diff


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sizes", default="8192x10,131072x1000", help="comma list of NxK")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--quick", action="store_true", help="tiny smoke run, not appended to results")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  a = p.parse_args(argv)
  sizes: Sequence[Tuple[int, int]] = []
  for item in a.sizes.split(","):
    try:
      n, k = (int(v) for v in item.lower().split("x"))
    except ValueError:
      p.error(f"--sizes: expected a comma list of NxK (e.g. 8192x10), got {item!r}")
    sizes.append((n, k))
  rounds = a.rounds
  if a.quick:
    sizes, rounds = [(512, 10)], 1
  bandwidth = memory_bandwidth(64 if a.quick else 512)
  rows, notes = [], []
  for n, k in sizes:
    small = n * k <= 2**22
    m1, m2 = (20, 120) if small else (2, 6)
    np_iters = (5, 25) if small else (1, 3)
    r, fb, fs, diff = size_rows(n, k, bandwidth, m1, m2, rounds, np_iters)
    rows += r
    notes.append(f"{n} x {k}: floor {fb / 2**20:.1f} MiB per iteration = {1e6 * fs:.1f} us; "
                 f"EM vs numpy after {m1} iterations: max |diff| {diff:.1e}; iterations "
                 f"{m1} -> {m2} (numpy {np_iters[0]} -> {np_iters[1]})")
    print(notes[-1], flush=True)
  headers = ["N x K", "program", "us / iteration (from medians)", "us / iteration (from minima)",
             "/ memory floor", "EM / this", "numpy loop / this"]
  note = (f"Memory bandwidth (numpy copy, read + write): {bandwidth / 1e9:.1f} GB/s; floor = "
          f"3 N K x 4 bytes / bandwidth. Per-iteration = difference of two iteration counts, from "
          f"the medians (and from the minima) of {rounds} rounds alternating the programs, the "
          f"numpy loop included; the ratio columns use the minima; loadavg "
          f"{_common.loadavg()}.\n\n" + "\n".join(f"- {s}" for s in notes))
  _common.report("Collision EM against the memory floor (benchmarks/em_floor.py)",
                 _common.table(headers, rows) + "\n\n" + note, append=not a.quick,
                 out_dir=a.out_dir)


if __name__ == "__main__":
  main()
