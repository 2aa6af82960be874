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

# (row name, config module, config arg, overrides, the metrics the table shows for this method)
QUICKSTART = [
    ("digits / ce", "digits_ce", "", dict(total_steps=300), ("eval/accuracy", "eval/loss")),
    ("mnist1d / ce", "mnist1d_ce", "", dict(total_steps=400), ("eval/accuracy", "eval/loss")),
    # Method rows (one line each):
    ("crosses / actdiff", "crosses_attribution", "method=actdiff,lam=0.1", dict([("total_steps", 200), ("attribution_eval.ig_steps", 8)]), ("eval/accuracy", "eval/test_shift/auc")),  # noqa: E501
    ("diabetes / simloss r=.9", "diabetes_simloss", "r=0.9", dict(total_steps=300), ("eval/accuracy", "eval/mae")),  # noqa: E501
    ("gaussians / two_head avg-K", "gaussians_avgk", "method=two_head,runlocal", dict([("total_steps", 300), ("avgk_eval.ks", (2.0,))]), ("eval/accuracy", "eval/avgk/multilabel/K2/regret")),  # noqa: E501
    ("digits / collision_soft mix .8", "digits_collision_soft", "targets=mix,level=0.8", dict(total_steps=300), ("eval/accuracy", "eval/loss")),  # noqa: E501
    ("digits halves / fierce l=1", "digits_fierce", "lam=1", dict(total_steps=300), ("eval/accuracy", "eval/fine_knn_accuracy")),  # noqa: E501
    ("digits / collision clustering", "digits_cluster", "", dict(total_steps=300, evaluators=("clustering", "kmeans_baseline")), ("eval/cluster_accuracy", "eval/nmi", "eval/kmeans_cluster_accuracy", "eval/kmeans_nmi")),  # noqa: E501
]

# What to expect, per (row, metric): (chance level, the value this row reached in our run, seed 0, on
# the project's 2-core CPU machine; runs on other machines differ in the last digits). Chance:
# accuracy 1/C for balanced classes (digits, mnist1d, diabetes deciles: 10; crosses: 2; digits
# halves: 2 coarse classes, the fine k-NN 10), the largest class prior (0.388) for the imbalanced gaussians;
# a cross-entropy loss log C; AUC 0.5; the MAE of uniform guesses over 10 ordinal classes (C^2-1)/3C;
# NMI 0. The average-K regret has no chance level (lower is better, 0 is the Bayes-optimal set).
EXPECTED = {
    ("digits / ce", "eval/accuracy"): (0.10, 0.9749),
    ("digits / ce", "eval/loss"): (2.303, 0.1085),
    ("mnist1d / ce", "eval/accuracy"): (0.10, 0.918),
    ("mnist1d / ce", "eval/loss"): (2.303, 0.2569),
    ("crosses / actdiff", "eval/accuracy"): (0.50, 1.0),
    ("crosses / actdiff", "eval/test_shift/auc"): (0.50, 1.0),
    ("diabetes / simloss r=.9", "eval/accuracy"): (0.10, 0.1444),
    ("diabetes / simloss r=.9", "eval/mae"): (3.30, 1.8667),
    ("gaussians / two_head avg-K", "eval/accuracy"): (0.388, 0.52),
    ("gaussians / two_head avg-K", "eval/avgk/multilabel/K2/regret"): (None, 0.0365),
    ("digits / collision_soft mix .8", "eval/accuracy"): (0.10, 0.961),
    ("digits / collision_soft mix .8", "eval/loss"): (2.303, 0.1704),
    ("digits halves / fierce l=1", "eval/accuracy"): (0.50, 0.9666),
    ("digits halves / fierce l=1", "eval/fine_knn_accuracy"): (0.10, 0.8496),
    ("digits / collision clustering", "eval/cluster_accuracy"): (0.10, 0.6221),
    ("digits / collision clustering", "eval/nmi"): (0.0, 0.6481),
    ("digits / collision clustering", "eval/kmeans_cluster_accuracy"): (0.10, 0.793),
    ("digits / collision clustering", "eval/kmeans_nmi"): (0.0, 0.7418),
}


def _number(x) -> str:
  return "-" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def format_table(rows) -> str:
  """Markdown: one line per (run, metric) with its value, the chance level and what to expect."""
  lines = ["| run | steps | metric | value | chance | expected (our run) | seconds | workdir |",
           "|---|---|---|---|---|---|---|---|"]
  for name, steps, values, secs, workdir in rows:
    for i, (metric, value) in enumerate(values.items()):
      chance, expected = EXPECTED.get((name, metric), (None, None))
      first = i == 0
      lines.append(f"| {name if first else ''} | {steps if first else ''} | {metric} | "
                   f"{_number(value)} | {_number(chance)} | {_number(expected)} | "
                   f"{f'{secs:.1f}' if first else ''} | {workdir if first else ''} |")
  return "\n".join(lines)


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
  for name, module, arg, overrides, metrics in QUICKSTART:
    if args.only and not any(o in name for o in args.only):
      continue
    config = apply_overrides(load_config(module, arg), dict(
        progress_bar=False, checkpoint_every=0, log_every=100, **overrides))
    workdir = os.path.join(args.workdir, name.replace(" / ", "_").replace(" ", "_"))
    t0 = time.time()
    results = train_and_evaluate(config, workdir)
    values = {m: float(results.get(m, float("nan"))) for m in metrics}
    rows.append((name, config.total_steps, values, time.time() - t0, workdir))
    print(f"  {name}: " + ", ".join(f"{m} {v:.4f}" for m, v in values.items())
          + f" ({time.time() - t0:.1f}s)", flush=True)
  print()
  print(format_table(rows))


if __name__ == "__main__":
  main()
