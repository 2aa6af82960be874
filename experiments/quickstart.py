r"""The quickstart behind ``make demo``: short runs on offline datasets, then a results table.

    python experiments/quickstart.py --workdir runs/quickstart [--only NAME ...]

Each row trains one method for a few hundred steps on CPU and evaluates it; runs are written under
``--workdir/<row name>`` (delete the folder to start from scratch: existing runs resume and finish at once).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

# Runnable as a script from the repository root (before `pip install`, too).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# (row name, config module, config arg, overrides, the metric reported beside accuracy)
QUICKSTART = [
    ("digits / ce", "digits_ce", "", dict(total_steps=300), "eval/loss"),
    ("mnist1d / ce", "mnist1d_ce", "", dict(total_steps=400), "eval/loss"),
    # Method rows (one line each):
    ("crosses / actdiff", "crosses_attribution", "method=actdiff,lam=0.1", dict([("total_steps", 200), ("attribution_eval.ig_steps", 8)]), "eval/test_shift/auc"),  # noqa: E501
    ("diabetes / simloss r=.9", "diabetes_simloss", "r=0.9", dict(total_steps=300), "eval/mae"),
    ("gaussians / two_head avg-K", "gaussians_avgk", "method=two_head,runlocal", dict([("total_steps", 300), ("avgk_eval.ks", (2.0,))]), "eval/avgk/multilabel/K2/regret"),  # noqa: E501
    ("digits / collision_soft mix .8", "digits_collision_soft", "targets=mix,level=0.8", dict(total_steps=300), "eval/loss"),  # noqa: E501
    ("digits halves / fierce l=1", "digits_fierce", "lam=1", dict(total_steps=300), "eval/fine_knn_accuracy"),  # noqa: E501
]


def load_config(module: str, arg: str):
  return importlib.import_module(f"labelwise.configs.{module}").get_config(arg or None)


def apply_overrides(config, overrides):
  for key, value in overrides.items():
    node = config
    parts = key.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  return config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/quickstart")
  parser.add_argument("--only", nargs="*", default=None, help="row names (substring match)")
  args = parser.parse_args(argv)
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from labelwise.train.trainer import train_and_evaluate
  rows = []
  for name, module, arg, overrides, extra in QUICKSTART:
    if args.only and not any(o in name for o in args.only):
      continue
    config = apply_overrides(load_config(module, arg), dict(
        progress_bar=False, checkpoint_every=0, log_every=100, **overrides))
    workdir = os.path.join(args.workdir, name.replace(" / ", "_").replace(" ", "_"))
    t0 = time.time()
    results = train_and_evaluate(config, workdir)
    rows.append((name, config.total_steps, results["eval/accuracy"], extra,
                 results.get(extra, float("nan")), time.time() - t0, workdir))
    print(f"  {name}: accuracy {results['eval/accuracy']:.4f} ({time.time() - t0:.1f}s)", flush=True)
  print()
  print("| run | steps | eval accuracy | other metric | value | seconds | workdir |")
  print("|---|---|---|---|---|---|---|")
  for name, steps, acc, extra, value, secs, workdir in rows:
    print(f"| {name} | {steps} | {acc:.4f} | {extra} | {value:.4f} | {secs:.1f} | {workdir} |")


if __name__ == "__main__":
  main()
