r"""Timings of the pseudo-label solvers and of the loss (CPU; small, noisy on shared machines).

    python experiments/collision/bench.py [--n 8192] [--repeats 3]

1. EM on device (``collision_pseudo_labels``, ``lax.while_loop``, jit) vs the same iterations in a
   numpy loop: N = 8192, K = 10, exactly 200 iterations (tol = 0).
2. EM vs projected gradient descent: wall-clock to reach the objective of a long EM run within a
   relative gap of 1e-4, for K = 10 and K = 100 and several PGD step sizes.
3. value + grad of collision CE vs optax's soft-target softmax cross-entropy, [8192, K].

Writes ``experiments/collision/bench.md``. Compilation is excluded (one warm-up call each).
"""

from __future__ import annotations

import argparse
import os
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


def probs(n, k, seed=0, scale=3.0):
  z = np.random.default_rng(seed).normal(size=(n, k)) * scale
  e = np.exp(z - z.max(1, keepdims=True))
  return (e / e.sum(1, keepdims=True)).astype(np.float32)


def timeit(fn, repeats):
  fn()  # warm-up / compile
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def numpy_em(sigma, lam, iters):
  sigma = sigma.astype(np.float32)
  k = sigma.shape[1]
  y = sigma.copy()
  for _ in range(iters):
    ybar = y.mean(0)
    w = sigma / np.sum(sigma * y, 1, keepdims=True) + lam / (k * ybar)
    y = y * w
    y /= y.sum(1, keepdims=True)
  return y


def objective(sigma, y, lam=1.0):
  return float(losses.self_labeling_objective(sigma, np.asarray(y), fairness_weight=lam))


def main(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--n", type=int, default=8192)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=os.path.join(HERE, "bench.md"))
  args = parser.parse_args(argv)
  lines = ["# Collision solvers and loss: timings", "",
           f"`python experiments/collision/bench.py --n {args.n}` on "
           f"{jax.devices()[0].platform.upper()} ({jax.devices()[0].device_kind}); best of "
           f"{args.repeats}, compilation excluded; the numpy loop runs on the host CPU. "
           f"jax {jax.__version__}.", ""]

  # 1. EM on device vs numpy loop
  sigma = probs(args.n, 10)
  em = jax.jit(lambda s: losses.collision_pseudo_labels(s, tol=0.0, max_iter=200))
  t_dev = timeit(lambda: jax.block_until_ready(em(sigma)), args.repeats)
  t_np = timeit(lambda: numpy_em(sigma, 1.0, 200), args.repeats)
  y_dev = np.asarray(em(sigma)[0])
  agree = float(np.abs(y_dev - numpy_em(sigma, 1.0, 200)).max())
  lines += ["## EM on device vs the same 200 iterations in numpy (N = %d, K = 10)" % args.n, "",
            "| implementation | seconds | speed-up |", "|---|---|---|",
            f"| numpy loop (float32) | {t_np:.3f} | 1.0x |",
            f"| `collision_pseudo_labels` (jit, while_loop) | {t_dev:.3f} | {t_np / t_dev:.1f}x |",
            "", f"Max abs difference of the two results: {agree:.2e}.", ""]
  print("\n".join(lines[-8:]), flush=True)

  # 2. EM vs PGD to the same objective value
  lines += ["## EM vs PGD: time to reach the objective of a long EM run (relative gap 1e-4)", "",
            "| K | solver | step size | iterations | seconds | reached |", "|---|---|---|---|---|---|"]
  for k in (10, 100):
    sigma = probs(args.n, k, seed=k)
    y_ref, _ = losses.collision_pseudo_labels(sigma, tol=0.0, max_iter=5000)
    f_ref = objective(sigma, y_ref)
    target = f_ref + 1e-4 * abs(f_ref)

    def first_reaching(solver, max_iters):
      # smallest iteration count (doubling then bisection) whose objective is <= target
      lo, hi = 0, 1
      while hi <= max_iters and objective(sigma, solver(hi)) > target:
        lo, hi = hi, hi * 2
      if hi > max_iters:
        return None
      while hi - lo > 1:
        mid = (lo + hi) // 2
        if objective(sigma, solver(mid)) <= target:
          hi = mid
        else:
          lo = mid
      return hi

    # The solvers are jitted inside the library with max_iter and step_size as traced arguments:
    # one compilation serves every iteration count.
    sj = jnp.asarray(sigma)
    solvers = [("EM", None,
                lambda m: losses.collision_pseudo_labels(sj, tol=0.0, max_iter=m)[0])]
    for step in (0.01, 0.1, 1.0, 10.0):
      solvers.append(("PGD", step, lambda m, st=step: losses.pgd_pseudo_labels(
          sj, step_size=st, tol=0.0, max_iter=m)[0]))
    for name, step, solver in solvers:
      iters = first_reaching(solver, 4096)
      if iters is None:
        lines.append(f"| {k} | {name} | {step if step else '-'} | > 4096 | - | no |")
      else:
        secs = timeit(lambda: jax.block_until_ready(solver(iters)), args.repeats)
        lines.append(f"| {k} | {name} | {step if step else '-'} | {iters} | {secs:.3f} | yes |")
      print(lines[-1], flush=True)
  lines.append("")

  # 3. value+grad of the loss vs optax
  lines += ["## value + grad: collision CE vs optax soft-target cross-entropy", "",
            "| K | collision CE (s) | optax.softmax_cross_entropy (s) | ratio |", "|---|---|---|---|"]
  for k in (10, 100, 1000):
    z = jnp.asarray(np.random.default_rng(1).normal(size=(args.n, k)), jnp.float32)
    t = jnp.asarray(probs(args.n, k, seed=2, scale=1.0))
    f1 = jax.jit(jax.value_and_grad(lambda z: jnp.mean(losses.collision_cross_entropy(z, t))))
    f2 = jax.jit(jax.value_and_grad(lambda z: jnp.mean(optax.softmax_cross_entropy(z, t))))
    a = timeit(lambda: jax.block_until_ready(f1(z)), args.repeats * 5)
    b = timeit(lambda: jax.block_until_ready(f2(z)), args.repeats * 5)
    lines.append(f"| {k} | {a * 1e3:.2f} ms | {b * 1e3:.2f} ms | {a / b:.2f}x |")
    print(lines[-1], flush=True)
  lines.append("")
  with open(args.out, "w") as f:
    f.write("\n".join(lines))
  print(f"-> {args.out}")


if __name__ == "__main__":
  main()
