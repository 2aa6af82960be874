r"""Where the CPU training step spends its time: an XLA op profile next to a PyTorch op profile.

For each model the project's jitted step (CE + Adam, as in ``throughput.py``) runs under
``jax.profiler``; every XLA:CPU op event is attributed to the JAX operation that produced it (from
the ``op_name`` metadata of the compiled HLO) and summed into categories: forward convolutions,
backward convolutions (input and kernel gradients), matrix products, pooling (and the argmax iotas
of its gradient), normalization/elementwise, and the rest. The step is profiled twice:
``conv_impl="xla"`` (flax ``nn.Conv`` and ``nn.max_pool`` as they come) and the project's default
(``labelwise.models.conv``: kernel gradients as patch matmuls; max-pool as reshape + first-maximum select). The PyTorch peer
step is profiled with ``torch.profiler`` (self CPU time per aten op).

    python benchmarks/profile_cpu.py                                  # small_cnn 128, resnet18 32
    python benchmarks/profile_cpu.py --models=resnet18 --batch_sizes=128 --steps=2

Times are thread-milliseconds per step (the sum over XLA's worker threads, so they can exceed the
wall time on a multi-core CPU); the wall time per step is printed next to them.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

CATEGORIES = ("conv forward", "conv backward (input grad)", "conv backward (kernel grad)",
              "matmul (dense layers, patch-matmul kernel grads)", "pooling + its gradient",
              "argmax iotas (max-pool gradient)",
              "data movement (pads, slices, concatenations, transposes)",
              "normalization + elementwise", "other")
_MOVES = ("pad", "slice", "concatenate", "transpose", "reshape", "copy", "broadcast_in_dim",
          "squeeze", "expand_dims", "gather", "scatter")


def _dims(shape: str):
  m = re.match(r"\w+\[([\d,]*)\]", shape)
  return tuple(sorted(int(d) for d in m.group(1).split(",") if d)) if m else ()


def hlo_ops(hlo_text: str):
  """HLO instruction name -> (opcode, op_name metadata, result dims) of its main operation.

  A fusion is described by the convolution or dot inside it when it has one (XLA:CPU fuses e.g. the
  max-pool gradient into the input-gradient convolution, and labels the fusion with the former).
  """
  inst = {}
  comps = collections.defaultdict(list)
  current = None
  for line in hlo_text.splitlines():
    head = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
    if head:
      current = head.group(1)
      continue
    m = re.match(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(", line)
    if not m:
      continue
    meta = re.search(r'op_name="([^"]*)"', line)
    calls = re.search(r"calls=%([\w.\-]+)", line)
    rec = (m.group(3), meta.group(1) if meta else "", _dims(m.group(2)),
           calls.group(1) if calls else None)
    inst[m.group(1)] = rec
    comps[current].append(rec)
  out = {}
  for name, (opcode, op_name, dims, calls) in inst.items():
    inner = [r for r in comps.get(calls, []) if r[0] in ("convolution", "dot")] if calls else []
    out[name] = inner[0][:3] if inner else (opcode, op_name, dims)
  return out


def categorize(event: str, opcode: str, op_name: str, dims, kernel_dims) -> str:
  if "iota" in event or opcode == "iota":
    return "argmax iotas (max-pool gradient)"
  backward = "transpose(" in op_name
  if opcode == "convolution" or "conv_general_dilated" in op_name:
    if not backward:
      return "conv forward"
    return "conv backward (kernel grad)" if dims in kernel_dims else "conv backward (input grad)"
  if opcode == "dot" or "dot_general" in op_name:
    return "matmul (dense layers, patch-matmul kernel grads)"
  if "reduce-window" in event or "reduce_window" in op_name or "select_and" in op_name:
    return "pooling + its gradient"
  last = op_name.rsplit("/", 1)[-1]
  if any(last.startswith(m) for m in _MOVES) or "transpose_copy" in event or \
      "concatenate" in event:
    return "data movement (pads, slices, concatenations, transposes)"
  if op_name:
    return "normalization + elementwise"
  return "other"


def build(model_name: str, batch: int, impl: str):
  """[compiled step, state, batch] for ``conv_impl=impl`` ("xla" also uses flax's max-pool)."""
  import flax.linen as nn
  from labelwise.models import cnn
  kwargs = dict(_common.MODEL_KWARGS[model_name])
  kwargs["conv_impl"] = impl
  own_pool = cnn.max_pool
  if impl == "xla":  # "as is": flax's reduce_window max-pool too
    cnn.max_pool = lambda x, window: nn.max_pool(x, tuple(window), strides=tuple(window))
  try:
    compiled, state, batch_arrays, _, _ = _common.jax_step(model_name, batch, model_kwargs=kwargs)
  finally:
    cnn.max_pool = own_pool
  return [compiled, state, batch_arrays]


def time_alternating(runs, steps: int, rounds: int = 3):
  """Median unprofiled seconds per step of each ``runs[name] = [step, state, batch]``, alternating."""
  import jax
  times = {name: [] for name in runs}
  for _ in range(rounds):
    for name, run in runs.items():
      compiled, state, batch = run
      for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times[name].append(time.perf_counter() - t0)
      run[1] = state
  return {name: _common.median(ts) for name, ts in times.items()}


def xla_op_events(trace_dir: str, names):
  """(HLO instruction name, duration ns) of every XLA:CPU op event in the trace under
  ``trace_dir`` whose name is in ``names`` (the instructions of the profiled program)."""
  from jax.profiler import ProfileData
  data = ProfileData.from_file(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"),
                                         recursive=True)[0])
  for plane in data.planes:
    for line in plane.lines:
      if "XLAEigen" not in line.name and "PjRtCpuClient" not in line.name:
        continue
      for ev in line.events:
        if ev.name in names:
          yield ev.name, ev.duration_ns


def profile_jax(run, steps: int):
  import jax
  compiled, state, batch_arrays = run
  names = hlo_ops(compiled.as_text())
  kernel_dims = {tuple(sorted(leaf.shape)) for leaf in jax.tree_util.tree_leaves(state.params)
                 if leaf.ndim >= 3}  # conv kernels [*window, C_in, C_out], in any layout
  tmp = tempfile.mkdtemp()  # (the runs are warm: main times them before profiling)
  t0 = time.perf_counter()
  jax.profiler.start_trace(tmp)
  for _ in range(steps):
    state, metrics = compiled(state, batch_arrays)
    jax.block_until_ready(metrics)
  jax.profiler.stop_trace()
  run[1] = state
  wall = (time.perf_counter() - t0) / steps
  by_cat = collections.Counter()
  by_op = collections.Counter()
  for name, duration_ns in xla_op_events(tmp, names):
    if name.startswith("ThunkExecutor"):
      continue
    opcode, op_name, dims = names[name]
    cat = categorize(name, opcode, op_name, dims, kernel_dims)
    by_cat[cat] += duration_ns / 1e6 / steps
    by_op[(cat, op_name.replace("jit(step)/", "")[-70:] or name)] += duration_ns / 1e6 / steps
  return by_cat, by_op, wall


def profile_torch(model_name: str, batch: int, steps: int):
  import numpy as np
  import torch
  from torch.profiler import ProfilerActivity, profile
  import throughput
  rng = np.random.default_rng(0)
  host_batch = {"input": rng.standard_normal((batch,) + _common.INPUT_SHAPES[model_name]).astype(
      np.float32), "label": rng.integers(0, _common.NUM_CLASSES, batch).astype(np.int32)}
  step = throughput.torch_step(model_name, host_batch)
  for _ in range(2):
    step()
  t0 = time.perf_counter()
  with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(steps):
      step()
  wall = (time.perf_counter() - t0) / steps
  rows = collections.Counter()
  for ev in prof.key_averages():
    rows[ev.key] += ev.self_cpu_time_total / 1e3 / steps
  del torch
  return rows, wall


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default="small_cnn,resnet18")
  p.add_argument("--batch_sizes", default="128,32", help="one per model")
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  p.add_argument("--no_append", action="store_true")
  args = p.parse_args(argv)
  models = args.models.split(",")
  batches = [int(b) for b in args.batch_sizes.split(",")]
  if len(batches) != len(models):
    raise SystemExit(f"--batch_sizes needs one size per model ({len(models)}), got {batches}")
  parts = []
  for name, bs in zip(models, batches):
    runs = {impl: build(name, bs, impl) for impl in ("xla", "auto")}
    for run in runs.values():  # warm-up
      time_alternating({"w": run}, 1, 1)
    plain = time_alternating(runs, args.steps)
    cat_x, op_x, wall_x = profile_jax(runs["xla"], args.steps)
    cat_a, op_a, wall_a = profile_jax(runs["auto"], args.steps)
    rows = [[c, f"{cat_x.get(c, 0):.1f}", f"{cat_a.get(c, 0):.1f}"] for c in CATEGORIES
            if cat_x.get(c, 0) + cat_a.get(c, 0) > 0]
    rows.append(["**sum of op time**", f"{sum(cat_x.values()):.1f}", f"{sum(cat_a.values()):.1f}"])
    rows.append(["wall time per step while profiled", f"{1e3 * wall_x:.1f}", f"{1e3 * wall_a:.1f}"])
    rows.append(["**wall time per step, not profiled (median, 3 alternating rounds)**",
                 f"**{1e3 * plain['xla']:.1f}**", f"**{1e3 * plain['auto']:.1f}**"])
    text = [f"### {name}, batch {bs}: JAX op profile (thread-ms per step)", "",
            _common.table(["category", "flax/XLA as is (conv_impl=xla)",
                           "labelwise default (conv_impl=auto)"], rows), "",
            "Largest ops, flax/XLA as is:", "",
            _common.table(["category", "JAX op", "thread-ms/step"],
                          [[c, f"`{o}`", f"{t:.1f}"] for (c, o), t in op_x.most_common(6)]), ""]
    if not args.no_torch:
      trows, twall = profile_torch(name, bs, args.steps)
      text += [f"PyTorch peer: {1e3 * twall:.1f} ms wall per step; largest aten ops (self CPU ms "
               "per step):", "",
               _common.table(["aten op", "ms/step"],
                             [[f"`{k}`", f"{v:.1f}"] for k, v in trows.most_common(8)]), ""]
    print("\n".join(text), flush=True)
    parts.append("\n".join(text))
  body = "\n".join(parts) + (
      f"\n{args.steps} profiled steps after one warm-up step and {3 * args.steps} timed ones; "
      f"loadavg {_common.loadavg()}.")
  _common.report("CPU step profile (benchmarks/profile_cpu.py)", body,
                 append=not args.no_append, out_dir=args.out_dir)


if __name__ == "__main__":
  main()
