r"""FIERCE offline study: does entropic feature regularization keep fine-grain information?

    python experiments/fierce/run.py                 # the study (5 seeds, see --help for its size)
    python experiments/fierce/run.py --smoke --out runs/fierce_smoke   # one point per arm, 5 steps
    python experiments/fierce/run.py --part fashion_mnist   # the Fashion-MNIST part (its own
                                  # options: experiments/fierce/fashion_mnist.py, --help)

Every model is trained by the trainer (``labelwise.train.trainer.train_and_evaluate``) from
``configs/digits_fierce.py``; this script only declares the arms, their grids and seeds, reads the
results and writes results.md, results.json and fierce.png.

scikit-learn digits, trained on COARSE labels: (a) halves {0-4} vs {5-9}, (b) parity, (c) pairs
{0,1},{2,3},...; MLP 64-256-256-64 + linear head, Adam, batch 128. Every arm is ONE trainer sweep
(its grid x seeds as replicas of one compiled program, ``experiments/tuning.py``); models train on
the training split less a fixed stratified 20% (``data.validation_fraction``), the validation split
on which the trainer's ``sweep_select`` chooses every arm's point; the test split is only reported.
Arms, each with the same budget of 8 grid points x seeds, chosen by the mean validation fine 5-NN
accuracy (FIERCE keeps the config's learning rate 1e-3, which is in CE's grid):

* CE: learning rate {5e-4, 1e-3, 2e-3, 4e-3} x weight decay {0, 1e-4};
* label smoothing: alpha {0.05, 0.1, 0.2, 0.3} x learning rate {1e-3, 2e-3};
* FIERCE (cosine logits against K = 100 fixed codes U(-0.01, 0.01)): lambda {0.5, 2} x logit scale
  {1, 10} x temperature {1, 0.1}.

Reference: raw inputs; upper bound: CE on the fine labels (learning rate 1e-3). Fine-grain metrics
(the ``fine_grain`` evaluator) on frozen test features fitted on the training features: 5-NN
accuracy (cosine) and a closed-form ridge probe on one-hot fine labels; plus coarse accuracy and the
noiseless feature entropy (bits) of FIERCE's codebook.

1-D bottleneck (closest to the paper's age experiment): MLP 64-256-256 then a LINEAR 1-D feature
(``model_kwargs.linear_features``) and a linear head, halves split; arms CE (learning rate), label
smoothing (alpha), FIERCE with the scalar-feature estimator (20 bins, logits -(s-k)^2) in the
difference form (lambda {0.3, 1} x logit scale {1, 10}) and the convex form (a {0.1, 0.3} x logit
scale {1, 10}), 4 points each, chosen by the mean validation Spearman of the feature with the digit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import numpy as np  # noqa: E402

from labelwise.experiments import provenance  # noqa: E402
from labelwise.experiments import tuning  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SPLITS = ("halves", "parity", "pairs")
SELECT = "val/fine_knn_accuracy:max"
SELECT_1D = "val/fine_spearman:max"
LR = "optimizer.learning_rate"

# arm name -> (config argument, grid): 8 points each.
ARMS = {
    "CE": ("method=ce", {LR: (5e-4, 1e-3, 2e-3, 4e-3), "optimizer.weight_decay": (0.0, 1e-4)}),
    "LS": ("method=label_smoothing",
           {"label_smoothing.alpha": (0.05, 0.1, 0.2, 0.3), LR: (1e-3, 2e-3)}),
    "FIERCE": ("method=fierce", {"fierce.lambda": (0.5, 2.0), "fierce.logit_scale": (1.0, 10.0),
                                 "fierce.temperature": (1.0, 0.1)}),
}
# 1-D bottleneck arms: 4 points each.
BOTTLENECK_ARMS = {
    "CE": ("method=ce", {LR: (5e-4, 1e-3, 2e-3, 4e-3)}),
    "LS": ("method=label_smoothing", {"label_smoothing.alpha": (0.05, 0.1, 0.2, 0.3)}),
    "FIERCE": ("method=fierce", {"fierce.lambda": (0.3, 1.0), "fierce.logit_scale": (1.0, 10.0)}),
    "FIERCE convex": ("method=fierce,form=convex",
                      {"fierce.lambda": (0.1, 0.3), "fierce.logit_scale": (1.0, 10.0)}),
}
# The old study's (own training loop) arm that each arm is compared with in results.md.
OLD_ARM = {"CE": "CE", "LS": "LS 0.1", "FIERCE": "FIERCE l=1", "FIERCE convex":
           "FIERCE convex a=0.2"}


def make_config(arg: str, *, split: str, steps: int, bottleneck: bool = False, train_on=None):
  from labelwise.configs import digits_fierce
  parts = [arg, f"coarse={split}"] + (["bottleneck"] if bottleneck else []) + (
      [f"train_on={train_on}"] if train_on else [])
  c = digits_fierce.get_config(",".join(p for p in parts if p))
  c.total_steps = steps
  c.parallel = "jit"
  c.num_devices = 1
  c.progress_bar = False
  c.tensorboard = False
  c.checkpoint_every = 0            # only at the end (a killed study reruns only unfinished runs)
  c.log_every = max(1, steps // 5)
  c.fine_grain_eval.probe = "ridge"
  return c


def smoke_grid(grid):
  return {k: v[:1] for k, v in grid.items()}


def raw_reference(config):
  """5-NN and ridge probe on the raw inputs (the same train / test splits as the models)."""
  from labelwise.data import make_dataset
  from labelwise.eval import fine_grain
  c = config.copy_and_resolve_references()
  c.data.validation_fraction = tuning.VALIDATION_FRACTION   # the rows the models train on
  ds = make_dataset(c)
  tr = ds.train.get(np.arange(ds.train.num_examples))
  te_split = ds.split(c.data.eval_split)
  te = te_split.get(np.arange(te_split.num_examples))
  x_tr, x_te = tr["input"].reshape(len(tr["input"]), -1), te["input"].reshape(len(te["input"]), -1)
  return {"fine_knn": fine_grain.knn_accuracy(x_tr, tr["label"], x_te, te["label"], k=5),
          "fine_probe": fine_grain.ridge_probe_accuracy(x_tr, tr["label"], x_te, te["label"])}


def main(argv=None):
  part = argparse.ArgumentParser(add_help=False)
  part.add_argument("--part", choices=("offline", "fashion_mnist"), default="offline")
  known, argv = part.parse_known_args(sys.argv[1:] if argv is None else argv)
  if known.part == "fashion_mnist":
    from labelwise.experiments.fierce import fashion_mnist
    return fashion_mnist.main(argv)
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--seeds", type=int, default=5)
  ap.add_argument("--steps", type=int, default=500)
  ap.add_argument("--splits", default=",".join(SPLITS))
  ap.add_argument("--bottleneck", type=int, default=1, help="0: skip the 1-D bottleneck part")
  ap.add_argument("--smoke", action="store_true",
                  help="1 seed, 5 steps, halves, the first grid point of every arm")
  ap.add_argument("--workdir", default="runs/fierce_study", help="trainer runs (reused)")
  ap.add_argument("--out", default=HERE)
  ap.add_argument("--render", action="store_true", help="only re-render results.md/png from json")
  args = ap.parse_args(argv)
  if args.smoke:
    args.seeds, args.steps, args.splits = 1, 5, "halves"
  os.makedirs(args.out, exist_ok=True)
  if args.render:
    with open(os.path.join(args.out, "results.json")) as f:
      results = json.load(f)
    write_markdown(results, args.out, provenance.load(os.path.join(args.out, "results.md")))
    plot(results, args.out)
    return results
  t0 = time.time()
  tuning.use_compilation_cache(args.workdir)
  splits = args.splits.split(",")
  grid = smoke_grid if args.smoke else (lambda g: g)
  arms = {s: {a: tuning.Arm(a, make_config(arg, split=s, steps=args.steps), grid(g))
              for a, (arg, g) in ARMS.items()} for s in splits}
  arms_1d = ({a: tuning.Arm(a, make_config(arg, split="halves", steps=args.steps,
                                           bottleneck=True), grid(g))
              for a, (arg, g) in BOTTLENECK_ARMS.items()} if args.bottleneck else {})
  upper = tuning.Arm("CE fine", make_config("method=ce", split="halves", steps=args.steps,
                                            train_on="fine"))
  seeds = list(range(args.seeds))
  from labelwise.data.registry import COARSE_MAPS
  record = provenance.collect(
      configs={"args": vars(args), "select": SELECT, "select_1d": SELECT_1D,
               "arms": {s: {a: arm.record() for a, arm in v.items()} for s, v in arms.items()},
               "bottleneck_arms": {a: arm.record() for a, arm in arms_1d.items()},
               "upper": upper.record(),
               "coarse_maps": {s: list(COARSE_MAPS[s]) for s in splits}},
      seeds=seeds)
  results = {"config": {k: v for k, v in vars(args).items() if k not in ("out", "workdir")},
             "select": SELECT, "select_1d": SELECT_1D, "main": {}, "bottleneck": {}}
  results["raw"] = raw_reference(upper.config)
  results["upper"] = tuning.run_arm(upper, os.path.join(args.workdir, "upper"), seeds=seeds,
                                    select="val/fine_knn_accuracy:max")
  print(f"upper bound done ({time.time() - t0:.0f}s)", flush=True)
  for split in splits:
    results["main"][split] = {}
    for name, arm in arms[split].items():
      res = tuning.run_arm(arm, os.path.join(args.workdir, split, name.replace(" ", "_")),
                           seeds=seeds, select=SELECT)
      results["main"][split][name] = res
      sel = tuning.selected(res)
      print(f"{split:7s} {name:8s} {tuning.point_label(res['selected']['point']):45s} "
            f"coarse {tuning.fmt(col(sel, 'eval/accuracy'))} "
            f"knn {tuning.fmt(col(sel, 'eval/fine_knn_accuracy'))} ({time.time() - t0:.0f}s)",
            flush=True)
  for name, arm in arms_1d.items():
    res = tuning.run_arm(arm, os.path.join(args.workdir, "bottleneck", name.replace(" ", "_")),
                         seeds=seeds, select=SELECT_1D)
    results["bottleneck"][name] = res
    sel = tuning.selected(res)
    print(f"1-D     {name:14s} {tuning.point_label(res['selected']['point']):30s} "
          f"rho {tuning.fmt(col(sel, 'eval/fine_spearman'), scale=1, digits=2)} "
          f"({time.time() - t0:.0f}s)", flush=True)
  results["seconds"] = time.time() - t0
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  record = provenance.write(os.path.join(args.out, "results.md"), record=record,
                            extra={"seconds": results["seconds"]})
  write_markdown(results, args.out, record)
  plot(results, args.out)
  print(f"wrote {args.out}/results.md ({results['seconds']:.0f}s)")
  return results


def col(replicas, key):
  """One metric over replicas; a NaN Spearman (constant feature: a dead model) counts as 0."""
  vals = tuning.values(replicas, key)
  if "spearman" in key:
    vals = [0.0 if math.isnan(v) else v for v in vals]
  return vals


def _old():
  path = os.path.join(HERE, "results_own_loop.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _prev():
  """The previous trainer run of this study (separate runs, validation = the last 20% of train)."""
  path = os.path.join(HERE, "results_separate_runs.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _prev_cell(prev, part, split, arm, key):
  try:
    r = prev[part][split][arm] if split else prev[part][arm]
  except (KeyError, TypeError):
    return "—"
  scale, digits = (1, 2) if "spearman" in key else (100, 1)
  v = np.asarray(col(tuning.selected(r), key), np.float64)
  return (f"{tuning.point_label(r['selected']['point'])}: "
          f"{scale * v.mean():.{digits}f} ± {scale * v.std(ddof=1):.{digits}f}")


def _old_cell(old, part, split, arm, key):
  try:
    rows = old[part][split][arm] if split else old[part][arm]
  except (KeyError, TypeError):
    return "—"
  v = np.asarray([r[key] for r in rows], np.float64)
  scale = 1 if "spearman" in key else 100
  digits = 2 if "spearman" in key else 1
  return f"{scale * v.mean():.{digits}f} ± {scale * v.std(ddof=1):.{digits}f}"


def write_markdown(res, out, record):
  cfg = res["config"]
  old, prev = _old(), _prev()
  f1 = lambda rows, key: tuning.fmt(col(rows, key))  # noqa: E731
  f2 = lambda rows, key: tuning.fmt(col(rows, key), scale=1, digits=2)  # noqa: E731
  upper = tuning.selected(res["upper"])
  lines = [
      "# FIERCE offline study (digits, coarse-label training)", "",
      f"Generated by `experiments/fierce/run.py`: every model trained by the trainer "
      f"(`configs/digits_fierce.py`), {cfg['seeds']} seeds, {cfg['steps']} Adam steps, batch 128, "
      f"{res['seconds']:.0f} s on a shared 2-core CPU. Every arm is ONE trainer sweep (its grid "
      "points x seeds as replicas of one compiled program). Models train on the training split "
      "less a fixed stratified 20% (`data.validation_fraction=0.2`, coarse labels); every arm's "
      "grid point (same budget per arm: 8 points main, 4 points 1-D) is chosen by the trainer's "
      f"`sweep_select` on that validation split (`{res['select']}`; 1-D part "
      f"`{res['select_1d']}`); the test split is only reported. Cells: mean ± std over seeds "
      "[95% t-interval of the mean]; "
      "accuracies in %. Fine metrics on frozen test features fitted on the training features: "
      "5-NN (cosine) and a closed-form ridge probe on one-hot fine labels (standardized features, "
      "l2 1e-3). H = noiseless argmax-histogram entropy of the test features against the run's "
      "FIERCE codebook (bits; max log2 100 = 6.64; FIERCE arms only).", "",
      f"References: raw inputs 5-NN {100 * res['raw']['fine_knn']:.1f}, probe "
      f"{100 * res['raw']['fine_probe']:.1f}; upper bound CE on fine labels: 5-NN "
      f"{f1(upper, 'eval/fine_knn_accuracy')}, probe {f1(upper, 'eval/fine_probe_accuracy')}.", ""]
  for split, arms in res["main"].items():
    lines += [f"## coarse = {split}", "",
              "| arm | chosen on validation | val 5-NN | coarse acc | fine 5-NN | fine probe | "
              "H (bits) | previous trainer run (separate runs): chosen, fine 5-NN | "
              "old study (own loop): arm, fine 5-NN |",
              "|---|---|---|---|---|---|---|---|---|"]
    for arm, r in arms.items():
      sel = tuning.selected(r)
      h = (tuning.fmt(col(sel, "eval/feature_entropy_bits"), scale=1, digits=2)
           if "eval/feature_entropy_bits" in sel[0] else "—")
      lines.append(
          f"| {arm} | {tuning.point_label(r['selected']['point'])} | "
          f"{100 * tuning.val_mean(r):.1f} | {f1(sel, 'eval/accuracy')} | "
          f"{f1(sel, 'eval/fine_knn_accuracy')} | {f1(sel, 'eval/fine_probe_accuracy')} | {h} | "
          f"{_prev_cell(prev, 'main', split, arm, 'eval/fine_knn_accuracy')} | "
          f"{OLD_ARM[arm]}: {_old_cell(old, 'main', split, OLD_ARM[arm], 'fine_knn')} |")
    lines.append("")
  if res["bottleneck"]:
    lines += ["## 1-D bottleneck (coarse = halves, target = digit as ordinal)", "",
              "| arm | chosen on validation | val Spearman | coarse acc | global Spearman | "
              "within-coarse Spearman | previous trainer run (separate runs): chosen, global "
              "Spearman | old study (own loop): arm, global Spearman |",
              "|---|---|---|---|---|---|---|---|"]
    for arm, r in res["bottleneck"].items():
      sel = tuning.selected(r)
      lines.append(
          f"| {arm} | {tuning.point_label(r['selected']['point'])} | "
          f"{tuning.val_mean(r):.2f} | {f1(sel, 'eval/accuracy')} | "
          f"{f2(sel, 'eval/fine_spearman')} | {f2(sel, 'eval/fine_spearman_within_coarse')} | "
          f"{_prev_cell(prev, 'bottleneck', None, arm, 'eval/fine_spearman')} | "
          f"{OLD_ARM[arm]}: {_old_cell(old, 'bottleneck', None, OLD_ARM[arm], 'spearman')} |")
    lines.append("")
  lines += ["## Every grid point (test fine 5-NN, mean over seeds; the chosen one in bold)", ""]
  for split, arms in res["main"].items():
    for arm, r in arms.items():
      cells = []
      for point in {tuple(sorted({k: v for k, v in q["overrides"].items()
                                  if k != "seed"}.items())): 0 for q in r["replicas"]}:
        p = dict(point)
        m = 100 * np.mean(col(tuning.at_point(r, p), "eval/fine_knn_accuracy"))
        label = f"{tuning.point_label(p)}: {m:.1f}"
        cells.append(f"**{label}**" if p == r["selected"]["point"] else label)
      lines.append(f"- {split}, {arm}: " + "; ".join(cells))
  lines += ["", "## Finding", ""]
  lines += findings(res)
  lines += ["", "## Old and new protocol", "",
            "Previous trainer run (`results_separate_runs.json`, commit 7e63c2f): the same "
            "configs, grids, seeds and steps, but every grid point x seed a separate `train_and_evaluate` "
            "and the validation split the LAST 20% of the training split (`train[80%:]`, TFDS's "
            "fixed order, not stratified) instead of the stratified 20% carved by the trainer "
            "now. The models therefore train on a different fifth-less subset and are chosen on "
            "a different validation set; a replica of a sweep equals the single run with its "
            "overrides (tests/test_sweep_train.py, tests/test_tuning.py), so the differences "
            "between the two trainer columns are those of the split and of the choice it makes, "
            "not of the sweep. " + split_note(res), "",
            "The old numbers (right-hand column, `results_own_loop.json`) came from the study's own "
            "vmapped training loop (minibatches drawn with replacement, all 1437 training images, "
            "fixed hyperparameters with no validation choice, the 1-D feature as here). The new "
            "runs go through the trainer (epoch permutations, 80% of the training images, the "
            "point chosen on the held-out 20%), so cells differ by the protocol as well as by "
            "noise: with a fifth fewer training images for the network and for the k-NN / probe "
            "fit every fine metric is expected to drop somewhat.",
            "", "## What the paper / method sheet claim", "",
            "- Paper (hyperspectral, the only readable number): linear-probe MSE CE 0.51, label "
            "smoothing 0.065, FIERCE 0.0045, with FIERCE 6 points worse on coarse accuracy; the "
            "CE probe there looks badly trained, so the gap is suspect.",
            "- Pilot expectation for MLP features: FIERCE about equal to CE, or 1-5 points worse, "
            "on fine 5-NN / probe; +0.1-0.2 global Spearman in the 1-D bottleneck with worse "
            "within-class ordering.", "", "![fine 5-NN per arm](fierce.png)"]
  md_path = os.path.join(out, "results.md")
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.fierce import fashion_mnist
  kept = fashion_mnist_runs.kept_section(md_path, fashion_mnist.MARKER)  # the other part's
  with open(md_path, "w") as f:
    f.write("\n".join(lines))
    f.write(provenance.footer(record, md_path))
    if kept:
      f.write("\n" + kept)


def _mean(r, key):
  return float(np.mean(col(tuning.selected(r), key)))


def findings(res):
  """A plain-language summary computed from the numbers (tuned arms, differences to tuned CE)."""
  out = []
  splits = list(res["main"])
  arms = [a for a in res["main"][splits[0]] if a != "CE"]
  for key, label in (("eval/fine_knn_accuracy", "fine 5-NN"),
                     ("eval/fine_probe_accuracy", "fine probe")):
    parts = [f"{a} {100 * np.mean([_mean(res['main'][s][a], key) - _mean(res['main'][s]['CE'], key) for s in splits]):+.1f}"  # noqa: E501
             for a in arms]
    out.append(f"- {label}, tuned arm minus tuned CE in points (mean over the {len(splits)} "
               "splits): " + ", ".join(parts) + ".")
  gain = max(np.mean([_mean(res["main"][s]["FIERCE"], k) - _mean(res["main"][s]["CE"], k)
                      for s in splits])
             for k in ("eval/fine_knn_accuracy", "eval/fine_probe_accuracy"))
  if gain <= 0.01:
    out.append("- **The effect does not reproduce here**: FIERCE, tuned on validation over "
               "lambda, logit scale and temperature, keeps no more fine-grain information than "
               f"tuned CE (best metric: {100 * gain:+.1f} points).")
  else:
    out.append(f"- Tuned FIERCE gains {100 * gain:.1f} points over tuned CE on some fine metric "
               "(mean over splits).")
  old = _old()
  if old:
    parts = []
    for a in res["main"][splits[0]]:
      d = [_mean(res["main"][s][a], "eval/fine_knn_accuracy")
           - np.mean([r["fine_knn"] for r in old["main"][s][OLD_ARM[a]]])
           for s in splits if OLD_ARM[a] in old["main"].get(s, {})]
      if d:
        parts.append(f"{a} {100 * np.mean(d):+.1f} (old arm {OLD_ARM[a]})")
    out.append("- New (tuned, trainer, 80% of the training images) minus old (own loop, fixed "
               "hyperparameters, all training images) fine 5-NN in points: " + ", ".join(parts)
               + ".")
  prev = _prev()
  if prev:
    out.append("- This run (one sweep per arm, stratified validation) minus the previous trainer "
               "run (separate runs, validation = last 20%), test metric of each arm's chosen point, "
               "with the standard error of the difference (unpaired, "
               "sqrt(s1^2/n1 + s2^2/n2)): " + "; ".join(compare_runs(res, prev)) + ".")
  b = res.get("bottleneck") or {}
  if "CE" in b:
    ce = _mean(b["CE"], "eval/fine_spearman")
    parts = [f"{a} {_mean(r, 'eval/fine_spearman') - ce:+.2f}" for a, r in b.items() if a != "CE"]
    out.append("- 1-D bottleneck, global Spearman of the tuned arm minus tuned CE: "
               + ", ".join(parts) + " (the method sheet's pilot expected +0.1 to +0.2).")
  return out


def split_note(res):
  """How much the change of fit rows alone moves a number (the raw-input 5-NN trains nothing)."""
  prev = _prev()
  if not prev or "raw" not in prev:
    return ""
  return (f"The raw-input 5-NN, which trains nothing, moved from {100 * prev['raw']['fine_knn']:.1f} "
          f"to {100 * res['raw']['fine_knn']:.1f} (probe {100 * prev['raw']['fine_probe']:.1f} -> "
          f"{100 * res['raw']['fine_probe']:.1f}) through the change of fit rows alone. The split "
          "is the same for every seed, so its effect is a shared offset that the seed-to-seed "
          "standard errors in the Finding above do not contain: a cell marked `*` there is outside "
          "the seed noise, not necessarily outside the noise of the choice of split.")


def compare_runs(res, prev):
  """Per cell: ``"<split> <arm> +d ± se"`` of this run minus ``prev`` (fine 5-NN in points, 1-D:
  global Spearman), ``*`` where |d| > 2 se (outside the noise of the two estimates)."""
  cells = []
  def one(label, new, old, key, scale):
    a = np.asarray(col(tuning.selected(new), key), np.float64)
    o = np.asarray(col(tuning.selected(old), key), np.float64)
    d = scale * (a.mean() - o.mean())
    se = (scale * math.sqrt(a.var(ddof=1) / len(a) + o.var(ddof=1) / len(o))
          if min(len(a), len(o)) > 1 else float("nan"))
    digits = 2 if scale == 1 else 1
    cells.append(f"{label} {d:+.{digits}f} ± {se:.{digits}f}{'*' if abs(d) > 2 * se else ''}")
  for split, arms in res["main"].items():
    for arm, r in arms.items():
      if arm in prev.get("main", {}).get(split, {}):
        one(f"{split} {arm}", r, prev["main"][split][arm], "eval/fine_knn_accuracy", 100)
  for arm, r in (res.get("bottleneck") or {}).items():
    if arm in prev.get("bottleneck", {}):
      one(f"1-D {arm}", r, prev["bottleneck"][arm], "eval/fine_spearman", 1)
  return cells


def plot(res, out):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  splits = list(res["main"])
  arms = list(res["main"][splits[0]])
  width = 0.8 / len(arms)
  for ax, key, title in ((axes[0], "eval/fine_knn_accuracy", "fine 5-NN accuracy"),
                         (axes[1], "eval/fine_probe_accuracy", "fine ridge-probe accuracy")):
    lo = 100.0
    for j, arm in enumerate(arms):
      ss = [tuning.stats(col(tuning.selected(res["main"][s][arm]), key)) for s in splits]
      lo = min(lo, min(100 * s["mean"] for s in ss))
      ax.bar(np.arange(len(splits)) + j * width, [100 * s["mean"] for s in ss], width,
             yerr=[100 * (s["std"] or 0.0) for s in ss], label=f"{arm} (tuned)", capsize=2)
    ax.axhline(100 * np.mean(col(tuning.selected(res["upper"]), key)), color="k", ls="--", lw=1,
               label="CE on fine labels")
    raw = res["raw"]["fine_knn" if "knn" in key else "fine_probe"]
    ax.axhline(100 * raw, color="gray", ls=":", lw=1, label="raw inputs")
    ax.set_xticks(np.arange(len(splits)) + 0.4 - width / 2)
    ax.set_xticklabels([f"coarse={s}" for s in splits])
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.set_ylim(max(0, lo - 15), 100)
  axes[1].legend(fontsize=7, loc="lower right")
  fig.suptitle("FIERCE on digits (trainer, tuned on validation): fine-grain information in "
               "features trained on coarse labels")
  fig.tight_layout()
  fig.savefig(os.path.join(out, "fierce.png"), dpi=110)


if __name__ == "__main__":
  main()
