r"""Speed of one two-head training step relative to one CE step (same model, same optimizer).

    python experiments/average_k/bench_step.py                     # MLP, C = 1081, B = 256
    python experiments/average_k/bench_step.py --model resnet18 --classes 10 --batch 256

The issue's target is at most 1.3x. The two-head step adds a second linear head, a batch-wide
top-k over B x (C-1) log-probabilities, a scatter, and the BCE. Timings are the median of
``--repeats`` jitted steps after warm-up, on whatever device JAX picks (state which one when you
quote a number). Writes ``bench_step.md`` next to this file when ``--write`` is given.
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


def make_step(model, tx, two_head: bool, k: float):
  from labelwise import losses

  def loss_fn(params, model_state, x, y):
    variables = {"params": params, **model_state}
    if model_state:
      out, new_state = model.apply(variables, x, train=True, mutable=list(model_state))
    else:
      out, new_state = model.apply(variables, x, train=True), model_state
    if two_head:
      per = losses.two_head_loss(out["logits"], out["multilabel"], y, k=k)
    else:
      per = losses.softmax_cross_entropy(out["logits"], y)
    return per.mean(), new_state

  @jax.jit
  def step(params, opt_state, model_state, x, y):
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, model_state, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_state, loss

  return step


def time_step(model_name, classes, batch, k, repeats, two_head):
  from labelwise.models import get_model
  kwargs = {"num_classes": classes}
  if model_name == "mlp":
    kwargs["hidden"] = (512, 512)
    x = np.random.default_rng(0).normal(size=(batch, 256)).astype(np.float32)
  else:
    kwargs.update(norm="batch")
    x = np.random.default_rng(0).normal(size=(batch, 32, 32, 3)).astype(np.float32)
  if two_head:
    kwargs["extra_heads"] = {"multilabel": classes}
  model = get_model(model_name, **kwargs)
  y = np.random.default_rng(1).integers(0, classes, batch).astype(np.int32)
  variables = dict(model.init(jax.random.PRNGKey(0), x[:2], train=False))
  params = variables.pop("params")
  tx = optax.sgd(0.01, momentum=0.9)
  opt_state = tx.init(params)
  step = make_step(model, tx, two_head, k)
  state = (params, opt_state, variables)
  for _ in range(3):
    out = step(*state, x, y)
    state = out[:3]
  jax.block_until_ready(out)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = step(*state, x, y)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
    state = out[:3]
  return float(np.median(times))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="mlp")
  p.add_argument("--classes", type=int, default=1081)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--k", type=float, default=3.0)
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--write", action="store_true")
  a = p.parse_args(argv)
  ce = time_step(a.model, a.classes, a.batch, a.k, a.repeats, two_head=False)
  th = time_step(a.model, a.classes, a.batch, a.k, a.repeats, two_head=True)
  device = jax.devices()[0].device_kind
  line = (f"| {a.model} | {a.classes} | {a.batch} | {device} | {ce * 1e3:.2f} | {th * 1e3:.2f} | "
          f"{th / ce:.2f}x |")
  print("| model | classes | batch | device | CE step (ms) | two-head step (ms) | ratio |")
  print("|---|---|---|---|---|---|---|")
  print(line)
  if a.write:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_step.md")
    new = not os.path.exists(path)
    with open(path, "a") as f:
      if new:
        f.write("# Two-head step vs CE step (`experiments/average_k/bench_step.py`)\n\n"
                "Median of jitted SGD steps after warm-up; the CPU numbers were taken on a "
                "shared 2-core machine.\n\n"
                "| model | classes | batch | device | CE step (ms) | two-head step (ms) | ratio |\n"
                "|---|---|---|---|---|---|---|\n")
      f.write(line + "\n")


if __name__ == "__main__":
  main()
