r"""Training-step throughput: the project's jitted JAX step against the same step in PyTorch.

Same architecture (MLP on MNIST-1D-sized signals, SmallCNN on 28x28x1, CIFAR ResNet-18 on 32x32x3),
same optimizer (Adam, lr 1e-3), same loss (softmax cross-entropy), same batch, in one process. The two
frameworks alternate in rounds so that a change in machine load hits both; the median step time over
all rounds is reported, with compile time separately (JAX: lower + compile; PyTorch: eager, none).
Every JAX step blocks on its metrics, like the trainer does.

    python benchmarks/throughput.py                      # full: 3 models x batch 128, 512
    python benchmarks/throughput.py --quick              # seconds: tiny step counts, MLP + CNN only
    python benchmarks/throughput.py --no_torch --models=resnet18 --batch_sizes=512 \
        --dtypes=float32,bfloat16                         # GPU: ResNet-18 float32 vs bfloat16

Needs ``pip install 'labelwise[bench]'`` (``torch==2.13.0``) for the PyTorch column.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

MODELS = ("mlp", "small_cnn", "resnet18")


# --- PyTorch peers -----------------------------------------------------------------------------
def torch_model(name: str, num_classes: int = _common.NUM_CLASSES):
  import torch
  from torch import nn

  if name == "mlp":
    (in_dim,) = _common.INPUT_SHAPES["mlp"]
    return nn.Sequential(nn.Flatten(), nn.Linear(in_dim, 128), nn.ReLU(), nn.Linear(128, 128),
                         nn.ReLU(), nn.Linear(128, num_classes))
  if name == "small_cnn":
    class SmallCNN(nn.Module):
      def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1)
        self.d = nn.Linear(64, 128)
        self.head = nn.Linear(128, num_classes)

      def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.head(torch.relu(self.d(x.mean((2, 3)))))
    return SmallCNN()
  if name == "resnet18":
    def bn(c):
      return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)  # = flax momentum 0.9

    class Block(nn.Module):
      def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = bn(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = bn(cout)
        nn.init.zeros_(self.b2.weight)
        self.short = None
        if stride != 1 or cin != cout:
          self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

      def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return torch.relu((x if self.short is None else self.short(x)) + y)

    class ResNet18(nn.Module):
      def __init__(self, width=64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), bn(width), nn.ReLU())
        blocks, cin = [], width
        for i in range(4):
          for j in range(2):
            cout = width * 2**i
            blocks.append(Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

      def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))
    return ResNet18()
  raise ValueError(f"`model` must be one of {list(MODELS)}, got {name!r}.")


def torch_step(name: str, host_batch):
  """A closure running one eager PyTorch training step (returns the loss as a float)."""
  import numpy as np
  import torch
  model = torch_model(name)
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=_common.LEARNING_RATE)
  x = host_batch["input"]
  if x.ndim == 4:  # NHWC -> NCHW
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
  x = torch.from_numpy(x)
  y = torch.from_numpy(host_batch["label"].astype(np.int64))
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())
  return step


# --- timing ------------------------------------------------------------------------------------
def time_jax(compiled, state, batch, steps: int):
  import jax
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return state, times


def time_torch(step, steps: int):
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  return times


def run(models, batch_sizes, dtypes, *, steps: int, rounds: int, use_torch: bool):
  import jax
  rows = []
  for name in models:
    for bs in batch_sizes:
      for dtype in dtypes:
        compiled, state, batch, compile_s, host_batch = _common.jax_step(name, bs, dtype=dtype)
        state, _ = time_jax(compiled, state, batch, 1)  # warm-up
        tstep = None
        if use_torch and dtype == "float32":
          tstep = torch_step(name, host_batch)
          t0 = time.perf_counter()
          tstep()  # warm-up (allocator, kernels)
          torch_first = time.perf_counter() - t0
        jt, tt = [], []
        for _ in range(rounds):
          state, t = time_jax(compiled, state, batch, steps)
          jt += t
          if tstep is not None:
            tt += time_torch(tstep, steps)
        j = _common.median(jt)
        row = [name, _common.DATASET_OF[name], bs, dtype, f"{compile_s:.2f}", bs / j,
               f"{1e3 * j:.1f}"]
        if tstep is not None:
          t = _common.median(tt)
          row += [f"{torch_first:.2f}", bs / t, f"{1e3 * t:.1f}", f"{t / j:.2f}x"]
        else:
          row += ["-", "-", "-", "-"]
        row.append(_common.loadavg())
        rows.append(row)
        print(row, flush=True)
        del state, compiled
  headers = ["model", "input", "batch", "dtype", "JAX compile s", "JAX ex/s", "JAX ms/step",
             "torch 1st step s", "torch ex/s", "torch ms/step", "JAX / torch", "loadavg"]
  dev = jax.devices()[0]
  note = (f"Median over {rounds} rounds x {steps} steps after one warm-up step, rounds alternating "
          f"JAX and PyTorch; device: {dev.device_kind} ({jax.default_backend()}).")
  return _common.table(headers, rows) + "\n\n" + note


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--batch_sizes", default="128,512")
  p.add_argument("--dtypes", default="float32")
  p.add_argument("--steps", type=int, default=5, help="timed steps per round and framework")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--no_torch", action="store_true", help="JAX only (e.g. on a GPU machine)")
  p.add_argument("--quick", action="store_true", help="tiny smoke run, not appended to results")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  a = p.parse_args(argv)
  models = [m for m in a.models.split(",") if m]
  for m in models:
    if m not in MODELS:
      p.error(f"--models: unknown model {m!r}; expected a comma list from {list(MODELS)}")
  dtypes = [d for d in a.dtypes.split(",") if d]
  for d in dtypes:
    if d not in ("float32", "bfloat16"):
      p.error(f"--dtypes: got {d!r}; expected float32 and/or bfloat16")
  batch_sizes = [int(b) for b in a.batch_sizes.split(",") if b]
  steps, rounds = a.steps, a.rounds
  if a.quick:
    models = [m for m in models if m != "resnet18"] or models
    batch_sizes, steps, rounds = [min(batch_sizes)], 2, 1
  use_torch = not a.no_torch
  if use_torch:
    try:
      import torch  # noqa: F401
    except ImportError:
      print("PyTorch is not installed (pip install 'labelwise[bench]'); JAX column only.")
      use_torch = False
  text = run(models, batch_sizes, dtypes, steps=steps, rounds=rounds, use_torch=use_torch)
  _common.report("Training-step throughput (benchmarks/throughput.py)", text,
                 append=not a.quick, out_dir=a.out_dir)


if __name__ == "__main__":
  main()
