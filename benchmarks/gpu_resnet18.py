r"""ResNet-18 (CIFAR stem) training-step throughput on one accelerator: JAX against a tuned PyTorch.

    python benchmarks/gpu_resnet18.py --batch 512 --steps 30 --torch [--out results_gpu.md]
    python benchmarks/gpu_resnet18.py --smoke --torch --torch_variants eager   # CPU, seconds (tests)

JAX: the project's ResNet-18, one jitted step (SGD + Nesterov momentum, donated buffers), float32
storage with the compute in XLA's default precision (TF32 convolutions and matmuls on an NVIDIA
GPU since Ampere) or in bfloat16 (parameters, optimizer state and the loss float32).
PyTorch (``--torch``), the same network (``throughput.torch_model``) and optimizer, tuned as a careful
user would run it: ``cudnn.benchmark=True``, channels_last, TF32 allowed for matmuls and cuDNN (the
same precision as XLA's default), bf16 via autocast (float32 weights, as on the JAX side), fused SGD,
and ``torch.compile(mode="max-autotune")`` (``compile``) next to eager (``eager``); compile time is
the first compiled step. Utilisation = examples/s x 3.33 GFLOPs (ResNet-18 CIFAR stem: 0.555 GMACs
forward per 32x32 image, x3 for the training step) / the card's dense peak for that precision.

Needs only jax, flax, optax (and torch for the peer), not the data stack: the batch is random and
already on the device, so this measures the compiled step alone. ``--smoke`` shrinks everything
(width 4, batch 4, 2 steps; the JAX network to two stages of one block) so that the script runs on
a CPU in seconds; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

GFLOPS_PER_EXAMPLE = 3.33  # training step, ResNet-18 width 64 with the CIFAR stem, 32x32x3 input
# Dense (no sparsity) peak TFLOPS by precision, from the vendors' data sheets (SXM parts).
PEAK_TFLOPS: Dict[str, Dict[str, float]] = {
    "H200": {"bfloat16": 989.0, "tf32": 494.0, "float32": 67.0},
    "H100": {"bfloat16": 989.0, "tf32": 494.0, "float32": 67.0},
    "A100": {"bfloat16": 312.0, "tf32": 156.0, "float32": 19.5},
}


def precision_name(dtype: str, device_kind: str) -> str:
  """What "float32" compute is on this device: TF32 on NVIDIA tensor-core GPUs (both frameworks)."""
  if dtype == "bfloat16":
    return "bfloat16"
  return "tf32" if any(k in device_kind for k in PEAK_TFLOPS) else "float32"


def utilisation(examples_per_s: float, precision: str, device_kind: str, width: int) -> str:
  for name, peaks in PEAK_TFLOPS.items():
    if name in device_kind and width == 64:
      return f"{100 * examples_per_s * GFLOPS_PER_EXAMPLE * 1e9 / (peaks[precision] * 1e12):.1f}%"
  return "n/a"


def jax_step_throughput(batch: int, steps: int, dtype: str, width: int = 64,
                        stage_sizes=(2, 2, 2, 2)):
  import jax
  import jax.numpy as jnp
  import optax
  from labelwise.losses.classification import softmax_cross_entropy
  from labelwise.models.resnet import ResNet18

  model = ResNet18(num_classes=10, width=width, stage_sizes=tuple(stage_sizes),
                   dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
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


def torch_step_throughput(batch: int, steps: int, dtype: str, *, compiled: bool,
                          compile_mode: str = "max-autotune", width: int = 64):
  """(examples/s, compile seconds or nan, loss, device name) of the tuned PyTorch step."""
  import torch

  import throughput
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  if dev == "cuda":
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True  # float32 = TF32, as XLA's default precision
    torch.backends.cudnn.allow_tf32 = True
  torch.manual_seed(0)
  m = throughput.torch_model("resnet18", width=width).to(dev).to(memory_format=torch.channels_last)
  try:
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, fused=True)
  except (RuntimeError, TypeError, ValueError):  # a build without the fused kernel for this device
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, foreach=True)
  x = torch.randn(batch, 3, 32, 32, device=dev).to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,), device=dev)
  lossf = torch.nn.CrossEntropyLoss()
  forward = torch.compile(m, mode=compile_mode) if compiled else m

  def sync():
    if dev == "cuda":
      torch.cuda.synchronize()

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
      loss = lossf(forward(x).float(), y)
    loss.backward()
    opt.step()
    return loss

  t0 = time.perf_counter()
  step()
  sync()
  first_s = time.perf_counter() - t0
  for _ in range(2):
    step()
  sync()
  t0 = time.perf_counter()
  for _ in range(steps):
    loss = step()
  sync()
  dt = time.perf_counter() - t0
  name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
  return batch * steps / dt, (first_s if compiled else float("nan")), float(loss), name


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=512)
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--torch", action="store_true", help="also time the tuned PyTorch peer")
  p.add_argument("--torch_variants", default="compile,eager",
                 help="comma list from: compile (torch.compile), eager")
  p.add_argument("--compile_mode", default="max-autotune")
  p.add_argument("--smoke", action="store_true", help="tiny sizes for a CPU smoke run (tests)")
  p.add_argument("--out", default="")
  a = p.parse_args(argv)
  dtypes = [d for d in a.dtypes.split(",") if d]
  for d in dtypes:
    if d not in ("float32", "bfloat16"):
      p.error(f"--dtypes: got {d!r}; expected float32 and/or bfloat16")
  variants = [v for v in a.torch_variants.split(",") if v]
  for v in variants:
    if v not in ("compile", "eager"):
      p.error(f"--torch_variants: got {v!r}; expected compile and/or eager")
  batch, steps, width, stages = a.batch, a.steps, 64, (2, 2, 2, 2)
  if a.smoke:  # JAX: two stages of one block (compiles in seconds on a CPU); PyTorch: full depth
    batch, steps, width, stages = 4, 2, 4, (1, 1)
    try:
      import torch
      torch.set_num_threads(1)  # tiny ops: 2 spinning threads on a shared CPU cost seconds per step
    except ImportError:
      pass
  rows: List[list] = []
  jax_ex: Dict[str, float] = {}
  for dtype in dtypes:
    ex, comp, _, dev = jax_step_throughput(batch, steps, dtype, width, stages)
    prec = precision_name(dtype, dev)
    jax_ex[dtype] = ex
    rows.append(["JAX (labelwise ResNet18, jit)", prec, dev, ex, f"{comp:.1f}",
                 utilisation(ex, prec, dev, width), "1.00x"])
    print(rows[-1], flush=True)
  if a.torch:
    try:
      import torch  # noqa: F401
    except ImportError:
      print("PyTorch is not installed (pip install 'labelwise[bench]'); JAX rows only.")
      variants = []
    for dtype in dtypes:
      for variant in variants:
        label = ("PyTorch, torch.compile(mode=%r)" % a.compile_mode if variant == "compile"
                 else "PyTorch, eager") + ", channels_last, fused SGD"
        try:
          ex, comp, _, dev = torch_step_throughput(batch, steps, dtype, compiled=variant == "compile",
                                                   compile_mode=a.compile_mode, width=width)
        except Exception as e:  # noqa: BLE001 - a failing variant is reported, not fatal
          print(f"torch {variant} {dtype} failed: {type(e).__name__}: {e}", flush=True)
          rows.append([label, dtype, "-", float("nan"), "failed", "-", "-"])
          continue
        prec = precision_name(dtype, dev)
        rows.append([label, prec, dev, ex, "-" if comp != comp else f"{comp:.1f}",
                     utilisation(ex, prec, dev, width), f"{jax_ex[dtype] / ex:.2f}x"])
        print(rows[-1], flush=True)
  lines = [f"ResNet-18 (CIFAR stem{'' if width == 64 else f', width {width}, smoke run'}) training "
           f"step, batch {batch}, {steps} timed steps after warm-up, random data on device", "",
           "| framework | compute precision | device | examples/s | compile s | % of dense peak | "
           "JAX / this |", "|---|---|---|---|---|---|---|"]
  lines += [f"| {f} | {d} | {dev} | {ex:,.0f} | {c} | {u} | {r} |" for f, d, dev, ex, c, u, r in rows]
  lines += ["", f"Utilisation: examples/s x {GFLOPS_PER_EXAMPLE} GFLOPs / dense peak of the precision "
            "(tf32 = float32 storage with TF32 tensor-core compute, XLA's and cuDNN's default)."]
  text = "\n".join(lines)
  print(text)
  if a.out:
    with open(a.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
