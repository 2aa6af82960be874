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
def torch_model(name: str, num_classes: int = _common.NUM_CLASSES, width: int = 64):
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
    return ResNet18(width)
  raise ValueError(f"`model` must be one of {list(MODELS)}, got {name!r}.")


TORCH_VARIANTS = ("eager", "channels_last", "compile")
# XLA:CPU variants (flags this jaxlib accepts; `XLA_FLAGS=--help python -c "import jax; ..."` lists
# them): YNNPACK fusions of convolutions / reductions switched off (XLA's own emitters instead).
XLA_VARIANTS = {
    "default": "",
    "ynn_conv_off": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "ynn_reduce_off": "--xla_cpu_experimental_ynn_fusion_type=-reduce",
}


def torch_step(name: str, host_batch, variant: str = "eager"):
  """A closure running one PyTorch training step (returns the loss as a float).

  ``eager``: NCHW, ``torch.optim.Adam`` defaults (the peer of earlier tables). ``channels_last``:
  channels-last model and input (conv models), fused Adam. ``compile``: ``channels_last`` plus
  ``torch.compile`` of the model (inductor, default mode; max-autotune's CPU autotuning takes
  minutes here), the backward compiled by AOTAutograd.
  """
  import numpy as np
  import torch
  if variant not in TORCH_VARIANTS:
    raise ValueError(f"`variant` must be one of {TORCH_VARIANTS}, got {variant!r}.")
  torch.manual_seed(0)
  model = torch_model(name)
  model.train()
  x = host_batch["input"]
  if x.ndim == 4:  # NHWC -> NCHW
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
  x = torch.from_numpy(x)
  tuned = variant != "eager"
  if tuned and x.ndim == 4:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  opt = torch.optim.Adam(model.parameters(), lr=_common.LEARNING_RATE, **(
      {"fused": True} if tuned else {}))
  forward = torch.compile(model) if variant == "compile" else model
  y = torch.from_numpy(host_batch["label"].astype(np.int64))
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(forward(x), y)
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


def measure(name: str, bs: int, dtype: str, *, steps: int, rounds: int, torch_variants) -> list:
  """Rows [model, batch, dtype, program, first s, ms median, ms min, ex/s] with the JAX step and
  every PyTorch variant alternating in each round (same process, same threads)."""
  compiled, state, batch, compile_s, host_batch = _common.jax_step(name, bs, dtype=dtype)
  state, _ = time_jax(compiled, state, batch, 1)  # warm-up
  programs = []
  for variant in torch_variants:
    if variant == "channels_last" and host_batch["input"].ndim != 4:
      continue  # no layout to change for the MLP
    try:
      tstep = torch_step(name, host_batch, variant)
      t0 = time.perf_counter()
      tstep()  # warm-up (allocator, kernels; compilation for `compile`)
      programs.append((f"PyTorch {variant}", tstep, time.perf_counter() - t0))
    except Exception as e:  # noqa: BLE001 - a variant that cannot run is reported, not fatal
      print(f"torch {variant} failed: {type(e).__name__}: {e}", flush=True)
  times = {"JAX": []}
  times.update({label: [] for label, _, _ in programs})
  for _ in range(rounds):
    state, t = time_jax(compiled, state, batch, steps)
    times["JAX"] += t
    for label, tstep, _ in programs:
      times[label] += time_torch(tstep, steps)
  first = {"JAX": compile_s, **{label: f for label, _, f in programs}}
  rows = []
  for label, ts in times.items():
    med = _common.median(ts)
    rows.append([name, bs, dtype, label, first[label], 1e3 * med, 1e3 * min(ts), bs / med])
  del state, compiled
  return rows


def _set_torch_threads():
  """PyTorch gets as many threads as XLA:CPU's pool (one per core); returns the count."""
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  return torch.get_num_threads()


def _child_main(a) -> None:
  """One XLA variant in its own process (XLA_FLAGS is read once per process): JSON rows."""
  import json
  if a.child_torch:
    _set_torch_threads()
  rows = measure(a.child_model, a.child_batch, "float32", steps=a.steps, rounds=a.rounds,
                 torch_variants=[a.child_torch] if a.child_torch else [])
  print("CHILD_ROWS " + json.dumps(rows), flush=True)


def run_variant_child(variant: str, name: str, bs: int, *, steps: int, rounds: int,
                      torch_variant: str) -> list:
  """Rows of the JAX step under XLA variant ``variant`` and of ``torch_variant`` next to it."""
  import json
  import subprocess
  flags = XLA_VARIANTS[variant]
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
  cmd = [sys.executable, os.path.abspath(__file__), "--child_model", name, "--child_batch",
         str(bs), "--child_torch", torch_variant, "--steps", str(steps), "--rounds", str(rounds)]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  for line in out.stdout.splitlines():
    if line.startswith("CHILD_ROWS "):
      rows = json.loads(line[len("CHILD_ROWS "):])
      for r in rows:
        r[3] = (f"JAX, XLA {variant} (`{flags}`)" if r[3] == "JAX"
                else f"{r[3]} (in the {variant} process)")
      return rows
  print(f"XLA variant {variant} failed (exit {out.returncode}): {out.stderr[-2000:]}", flush=True)
  return []


def _ratio_rows(group: list) -> list:
  """(row, JAX speed / PyTorch speed): JAX rows against the best PyTorch row, PyTorch rows against
  the JAX row of the same process (the first row)."""
  jax_rows = [r for r in group if r[3].startswith("JAX")]
  torch_rows = [r for r in group if r[3].startswith("PyTorch")]
  best = min((r[5] for r in torch_rows), default=float("nan"))
  return ([(r, best / r[5]) for r in jax_rows] + [(r, r[5] / jax_rows[0][5]) for r in torch_rows])


def run(models, batch_sizes, dtypes, *, steps: int, rounds: int, use_torch: bool,
        torch_variants=TORCH_VARIANTS, xla_variants=("default",)):
  import jax
  threads = _set_torch_threads() if use_torch else "-"
  rows = []
  for name in models:
    for bs in batch_sizes:
      for dtype in dtypes:
        tv = list(torch_variants) if use_torch and dtype == "float32" else []
        group = measure(name, bs, dtype, steps=steps, rounds=rounds, torch_variants=tv)
        pairs = _ratio_rows(group)
        torch_rows = [r for r in group if r[3].startswith("PyTorch")]
        best = min(torch_rows, key=lambda r: r[5])[3].split()[-1] if torch_rows else ""
        for variant in xla_variants:
          if variant != "default" and dtype == "float32":
            pairs += _ratio_rows(run_variant_child(variant, name, bs, steps=steps, rounds=rounds,
                                                   torch_variant=best))
        for r, ratio in pairs:
          rows.append([r[0], _common.DATASET_OF[r[0]], r[1], r[2], r[3], f"{r[4]:.2f}",
                       f"{r[5]:.1f}", f"{r[6]:.1f}", r[7],
                       "-" if ratio != ratio else f"{ratio:.2f}x", _common.loadavg()])
          print(rows[-1], flush=True)
  headers = ["model", "input", "batch", "dtype", "program", "compile / 1st step s",
             "ms/step (median)", "ms/step (min)", "ex/s (median)", "JAX / PyTorch (speed)",
             "loadavg"]
  dev = jax.devices()[0]
  note = (f"{rounds} rounds x {steps} steps per program after one warm-up step; in every round the "
          f"JAX step and each PyTorch variant run one after the other in one process (PyTorch with "
          f"{threads} threads, XLA:CPU's pool on {os.cpu_count()} cores). JAX / PyTorch (speed): "
          f"for a JAX row the best PyTorch variant's median over this row's median; for a PyTorch "
          f"row the same process's JAX median over this one's (> 1: JAX faster). XLA variants "
          f"other than the default run in their own process (XLA_FLAGS is read once), each "
          f"alternating with the best PyTorch variant, and are compared with it there. Device: "
          f"{dev.device_kind} ({jax.default_backend()}).")
  return _common.table(headers, rows) + "\n\n" + note


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--batch_sizes", default="128,512")
  p.add_argument("--dtypes", default="float32")
  p.add_argument("--steps", type=int, default=5, help="timed steps per round and framework")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--no_torch", action="store_true", help="JAX only (e.g. on a GPU machine)")
  p.add_argument("--quick", action="store_true", help="tiny smoke run, not appended to results")
  p.add_argument("--torch_variants", default=",".join(TORCH_VARIANTS),
                 help=f"comma list from {list(TORCH_VARIANTS)}")
  p.add_argument("--xla_variants", default="default",
                 help=f"comma list from {list(XLA_VARIANTS)} (extra rows, one process each)")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  p.add_argument("--child_model", default="", help=argparse.SUPPRESS)
  p.add_argument("--child_batch", type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument("--child_torch", default="", help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.child_model:
    return _child_main(a)
  torch_variants = [v for v in a.torch_variants.split(",") if v]
  for v in torch_variants:
    if v not in TORCH_VARIANTS:
      p.error(f"--torch_variants: unknown variant {v!r}; expected a comma list from "
              f"{list(TORCH_VARIANTS)}")
  xla_variants = [v for v in a.xla_variants.split(",") if v]
  for v in xla_variants:
    if v not in XLA_VARIANTS:
      p.error(f"--xla_variants: unknown variant {v!r}; expected a comma list from "
              f"{list(XLA_VARIANTS)}")
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
    torch_variants = [v for v in torch_variants if v != "compile"]
  use_torch = not a.no_torch
  if use_torch:
    try:
      import torch  # noqa: F401
    except ImportError:
      print("PyTorch is not installed (pip install 'labelwise[bench]'); JAX column only.")
      use_torch = False
  text = run(models, batch_sizes, dtypes, steps=steps, rounds=rounds, use_torch=use_torch,
             torch_variants=torch_variants, xla_variants=xla_variants)
  _common.report("Training-step throughput (benchmarks/throughput.py)", text,
                 append=not a.quick, out_dir=a.out_dir)


if __name__ == "__main__":
  main()
