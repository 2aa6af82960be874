r"""What a sweep costs: R replicas in one compiled program (``config.sweep``) vs R single runs.

Both sides are the trainer end to end (``train_and_evaluate``: data, compilation, training,
evaluation, results.json), measured side by side in one process, so the ratio is robust to the
machine's load; absolute times are not.

* ``cpu``: the digits MLP (128, 128), batch 128, Adam: an 8-seed sweep vs 8 single runs (goal: the
  sweep costs <= 0.4x the single runs' wall time).
* ``gpu``: SmallCNN on MNIST-1D, batch 128: a 16-replica sweep vs ONE single run (goal on a GPU:
  <= 2x). On a CPU run it with ``--quick`` as a smoke test only (a CPU has no idle lanes to fill).

    python benchmarks/sweep_cost.py                  # both cases, appends to results.md
    python benchmarks/sweep_cost.py --cases=cpu --steps=500
    python benchmarks/sweep_cost.py --quick          # seconds, not appended to results.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

# case -> (config module, model overrides, replicas in the sweep, single runs to compare with)
CASES = {
    "cpu": ("digits_ce", {"model": "mlp"}, 8, 8),
    "gpu": ("mnist1d_ce", {"model": "small_cnn"}, 16, 1),
}


def _config(module: str, steps: int, parallel: str, **overrides):
  import importlib
  config = importlib.import_module(f"labelwise.configs.{module}").get_config()
  config.total_steps = steps
  config.batch_size = 128
  config.log_every = max(1, steps // 4)
  config.checkpoint_every = -1
  config.progress_bar = False
  config.tensorboard = False
  config.parallel = parallel
  config.num_devices = 1
  for k, v in overrides.items():
    config[k] = v
  return config


def _timed(config) -> float:
  from labelwise.train.trainer import train_and_evaluate
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    train_and_evaluate(config, workdir)
    return time.perf_counter() - t0


def measure(case: str, steps: int, parallel: str):
  module, overrides, replicas, singles = CASES[case]
  single_s = [_timed(_config(module, steps, parallel, seed=s, **overrides))
              for s in range(singles)]
  sweep_cfg = _config(module, steps, parallel, **overrides)
  sweep_cfg.sweep = "seed=" + ",".join(str(s) for s in range(replicas))
  sweep_s = _timed(sweep_cfg)
  return {"case": case, "module": module, "model": overrides["model"], "replicas": replicas,
          "singles": singles, "single_s": sum(single_s), "sweep_s": sweep_s,
          "ratio": sweep_s / sum(single_s)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--cases", default="cpu,gpu")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--parallel", default="jit")
  p.add_argument("--quick", action="store_true", help="20 steps, not appended to results.md")
  args = p.parse_args(argv)
  steps = 20 if args.quick else args.steps
  rows = []
  for case in args.cases.split(","):
    r = measure(case.strip(), steps, args.parallel)
    rows.append([r["case"], f"{r['module']} / {r['model']}", r["replicas"], r["singles"],
                 r["single_s"], r["sweep_s"], r["ratio"]])
  import jax
  text = (f"{steps} steps, batch 128, parallel={args.parallel}, one {jax.default_backend()} "
          "device; wall time of train_and_evaluate (compile, train, evaluate) per side.\n\n" +
          _common.table(["case", "config / model", "sweep replicas", "single runs",
                         "single runs s (sum)", "sweep s", "sweep / single runs"], rows))
  _common.report("Sweep cost (benchmarks/sweep_cost.py)", text, append=not args.quick)
  return rows


if __name__ == "__main__":
  main()
