r"""ResNet-18 (CIFAR stem) training-step throughput on one accelerator: JAX float32 / bfloat16 vs PyTorch.

    python benchmarks/gpu_resnet18.py --batch 512 --steps 50 [--torch] [--out results.md]

Needs only jax, flax, optax (and torch/torchvision for the peer), not the data stack: the batch is
random and already on the device, so this measures the compiled step alone. Mixed precision: the model
computes in bfloat16 (``dtype``), parameters, optimizer state and the loss stay float32.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def jax_step_throughput(batch: int, steps: int, dtype: str):
  import jax
  import jax.numpy as jnp
  import optax
  from labelwise.losses.classification import softmax_cross_entropy
  from labelwise.models.resnet import ResNet18

  model = ResNet18(num_classes=10, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (batch, 32, 32, 3), jnp.float32)
  y = jax.random.randint(key, (batch,), 0, 10)
  variables = model.init(key, x[:2], train=False)
  params, stats = variables["params"], variables["batch_stats"]
  tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
  opt = tx.init(params)

  def step(params, stats, opt, x, y):
    def loss_fn(p):
      out, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                             mutable=["batch_stats"])
      return softmax_cross_entropy(out["logits"], y).mean(), new["batch_stats"]
    (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), stats, opt, loss

  step = jax.jit(step, donate_argnums=(0, 1, 2))
  t0 = time.perf_counter()
  params, stats, opt, loss = step(params, stats, opt, x, y)
  loss.block_until_ready()
  compile_s = time.perf_counter() - t0
  for _ in range(3):
    params, stats, opt, loss = step(params, stats, opt, x, y)
  loss.block_until_ready()
  t0 = time.perf_counter()
  for _ in range(steps):
    params, stats, opt, loss = step(params, stats, opt, x, y)
  loss.block_until_ready()
  dt = time.perf_counter() - t0
  return batch * steps / dt, compile_s, float(loss), str(jax.devices()[0].device_kind)


def torch_step_throughput(batch: int, steps: int, dtype: str):
  import torch
  import torchvision
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  m = torchvision.models.resnet18(num_classes=10)
  m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem, no max-pool
  m.maxpool = torch.nn.Identity()
  m = m.to(dev).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True)
  x = torch.randn(batch, 3, 32, 32, device=dev).to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,), device=dev)
  lossf = torch.nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
      loss = lossf(m(x).float(), y)
    loss.backward()
    opt.step()
    return loss

  for _ in range(3):
    step()
  if dev == "cuda":
    torch.cuda.synchronize()
  t0 = time.perf_counter()
  for _ in range(steps):
    loss = step()
  if dev == "cuda":
    torch.cuda.synchronize()
  dt = time.perf_counter() - t0
  name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
  return batch * steps / dt, float(loss), name


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=512)
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--torch", action="store_true")
  p.add_argument("--out", default="")
  a = p.parse_args(argv)
  rows = []
  for dtype in ("float32", "bfloat16"):
    ex, comp, loss, dev = jax_step_throughput(a.batch, a.steps, dtype)
    rows.append(("JAX (labelwise resnet18, jit)", dtype, dev, ex, comp))
    print(rows[-1], flush=True)
  if a.torch:
    for dtype in ("float32", "bfloat16"):
      try:
        ex, loss, dev = torch_step_throughput(a.batch, a.steps, dtype)
        rows.append(("PyTorch (torchvision resnet18, eager)", dtype, dev, ex, float("nan")))
        print(rows[-1], flush=True)
      except Exception as e:  # noqa: BLE001 - the peer is optional
        print(f"torch {dtype} failed: {type(e).__name__}: {e}", flush=True)
  lines = [f"ResNet-18 (CIFAR stem) training step, batch {a.batch}, {a.steps} timed steps after "
           f"warm-up, random data on device", "",
           "| framework | compute dtype | device | examples/s | compile s |", "|---|---|---|---|---|"]
  lines += [f"| {f} | {d} | {dev} | {ex:,.0f} | {c:.1f} |" for f, d, dev, ex, c in rows]
  text = "\n".join(lines)
  print(text)
  if a.out:
    with open(a.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
