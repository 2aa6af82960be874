r"""Scaling: the same trajectory on 1, 2 and 4 devices, and accelerator throughput when there is one.

1. Correctness (CPU, 4 fake devices set here before JAX starts): the trainer's loop, fed by the real
   pipeline, for ``--steps`` SGD steps on digits with an MLP and with a BatchNorm ResNet-18 (batch
   statistics averaged across devices), under ``pmap``, ``shard_map`` and ``jit`` on 1, 2 and 4
   devices; the table gives the largest parameter difference to the 1-device ``jit`` run and the
   examples/s of each.
2. Accelerator (only when JAX sees a GPU/TPU): ResNet-18 at batch 512, float32 and bfloat16 compute
   (params and losses float32), via ``throughput.py``; the card's name is in the table.

    python benchmarks/scaling.py             # full
    python benchmarks/scaling.py --quick     # tiny smoke run, not appended to results.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=4").strip()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

MODES = ("pmap", "shard_map", "jit")


def train(model: str, mode: str, devices: int, steps: int, batch_size: int, workdir: str):
  import pipeline
  from labelwise.train import trainer
  over = dict(parallel=mode, num_devices=devices, model=model)
  if model == "resnet18":
    over["model_kwargs"] = {"width": 8, "stage_sizes": (1, 1, 1, 1), "norm": "batch"}
  config = pipeline.make_config("digits_ce", over, batch_size)
  config.optimizer.update(name="sgd", learning_rate=0.01, momentum=0.9)
  t = trainer.Trainer(config, workdir)
  t.host_state = t.initial_state()
  pipeline.time_loop(t, 1, "pipeline", 0)  # compiles (step 0)
  sec = pipeline.time_loop(t, steps - 1, "pipeline", 1)
  return t.host_state, batch_size / sec


def correctness(models, steps: int, batch_size: int):
  import jax
  rows = []
  for model in models:
    with tempfile.TemporaryDirectory() as d:
      ref, _ = train(model, "jit", 1, steps, batch_size, os.path.join(d, "ref"))
      for n in (1, 2, 4):
        if n > jax.device_count():
          continue
        for mode in MODES:
          state, eps = train(model, mode, n, steps, batch_size, os.path.join(d, f"{mode}{n}"))
          diff = _common.max_abs_diff(state.params, ref.params)
          label = model if model == "mlp" else "resnet18 (width 8, 1-1-1-1, BatchNorm)"
          rows.append([label, mode, n, f"{diff:.1e}", "yes" if diff < 1e-5 else "NO", eps,
                       _common.loadavg()])
          print(rows[-1], flush=True)
  headers = ["model", "parallel", "devices", "max abs(param - param of 1-device jit)",
             "same (< 1e-5)",
             "ex/s", "loadavg"]
  note = (f"digits, batch {batch_size}, {steps} SGD steps (momentum 0.9) through the real pipeline; "
          f"fake CPU devices share the same cores, so ex/s shows overhead, not speed-up.")
  return _common.table(headers, rows) + "\n\n" + note


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--quick", action="store_true", help="tiny smoke run, not appended to results")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  a = p.parse_args(argv)
  if a.steps < 2 or a.batch_size % 4:
    p.error(f"--steps must be >= 2 and --batch_size a multiple of 4, got {a.steps}, "
            f"{a.batch_size}")
  import jax
  if jax.default_backend() == "cpu":
    models = ["mlp"] if a.quick else ["mlp", "resnet18"]
    steps = 3 if a.quick else a.steps
    _common.report("Scaling: 1, 2, 4 devices (benchmarks/scaling.py)",
                   correctness(models, steps, a.batch_size), append=not a.quick,
                   out_dir=a.out_dir)
  else:
    print(f"backend {jax.default_backend()}: the fake-CPU-device correctness check is skipped "
          f"(run it with JAX_PLATFORMS=cpu).")
    import throughput
    text = throughput.run(["resnet18"], [512], ["float32", "bfloat16"],
                          steps=2 if a.quick else 10, rounds=1 if a.quick else 3,
                          use_torch=False)
    _common.report(f"ResNet-18 on {jax.devices()[0].device_kind} (benchmarks/scaling.py)", text,
                   append=not a.quick, out_dir=a.out_dir)


if __name__ == "__main__":
  main()
