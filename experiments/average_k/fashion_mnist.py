r"""Average-K study, Fashion-MNIST part: two-head loss vs softmax thresholding, AN and EPR on the
balanced and the long-tailed (rho 100) training splits.

    python experiments/average_k/run.py --part fashion_mnist          # the part (see --help)
    python experiments/average_k/run.py --part fashion_mnist --train_ks 1.5 2 3   # every K (long)
    python experiments/average_k/run.py --part fashion_mnist --smoke --data_dir D --out O  # a test's

Every model is trained by the trainer from ``configs/fashion_mnist_avgk.py`` (the 2-conv CNN of
the CE baseline, Adam with a cosine decay, batch 128, no augmentation), shortened to fit a 2-core
CPU: ``--steps`` (100) steps on

* ``balanced``: the first ``--balanced_examples`` images of ``train`` (default: as many as
  ``train_lt100`` holds, so the two splits differ in their class balance, not their size);
* ``lt100``: ``train_lt100`` (CIFAR-LT protocol, class c keeps ``5500 * 100^(-c/9)`` images:
  5,500 T-shirts down to 55 ankle boots).

Each (grid point, seed) is one trainer run (``experiments/fashion_mnist_runs.py``). Every arm gets
the same budget: 4 grid points tried on ``--tune_seeds`` seeds (1: seed 0), the point with the
best mean **validation** average-K accuracy of the arm's own head at the training K
(``val/avgk/<head>/K<k>/accuracy``) then trained on every seed (``--seeds``); ``test`` is only
reported. The ``average_k`` evaluator calibrates the global threshold on the balanced
``validation`` split (5,000 images) for both training splits, and reports K in {1.5, 2, 3}:

* softmax thresholding (CE): learning rate {5e-4, 1e-3, 2e-3, 4e-3};
* assume negative (AN, one sigmoid head): learning rate {5e-4, 1e-3, 2e-3, 4e-3};
* two-head loss, rule B (true label + the batch's top softmax entries, K B positives):
  alpha {1, 3, 10, 30};
* EPR (expected positive regularization): lambda {10, 30, 100, 300};

two-head and EPR at the config's learning rate 1e-3. CE and AN do not depend on K: they are
trained once per split and chosen at each training K from the same runs. Two-head and EPR are
trained at every ``--train_ks`` (default K = 2 only, for the budget) and, like CE and AN, evaluated
at K = 1.5, 2 and 3 at the point chosen at the training K.

Tail classes: the evaluator's ``ceil(L / 3)`` least frequent classes of the calibration labels;
``validation`` is balanced (500 per class), so ties pick the highest indices: classes 7, 8, 9
(Sneaker, Bag, Ankle boot), which are exactly the three smallest classes of ``train_lt100``. On
the balanced split their accuracy is the same subset's, not a tail.
"""

from __future__ import annotations

import os
import time

import numpy as np

from labelwise.experiments import fashion_mnist_runs as fmr
from labelwise.experiments import provenance
from labelwise.experiments import tuning
from labelwise.train.sweep import stats

HERE = os.path.dirname(os.path.abspath(__file__))
LR = "optimizer.learning_rate"
LRS = (5e-4, 1e-3, 2e-3, 4e-3)
SPLITS = {"balanced": 0, "lt100": 100}           # name -> the config's `lt`
EVAL_KS = (1.5, 2.0, 3.0)
K_INDEPENDENT = ("ce", "assume_negative")
#: variant -> (grid, head it is chosen by)
ARMS = {
    "ce": ({LR: LRS}, "softmax"),
    "two_head": ({"two_head.weight": (1.0, 3.0, 10.0, 30.0)}, "multilabel"),
    "assume_negative": ({LR: LRS}, "multilabel"),
    "epr": ({"epr.weight": (10.0, 30.0, 100.0, 300.0)}, "multilabel"),
}
SMOKE_GRIDS = {"ce": {LR: (1e-3,)}, "two_head": {"two_head.weight": (1.0, 10.0)},
               "assume_negative": {LR: (1e-3,)}, "epr": {"epr.weight": (100.0,)}}
#: (variant, head, label): the rows reported (two-head's softmax head at the point its
#: multi-label head chose: one model, two heads)
ROWS = (("ce", "softmax", "softmax thresholding (CE)"),
        ("two_head", "multilabel", "two-head (rule B)"),
        ("two_head", "softmax", "two-head, its softmax head"),
        ("assume_negative", "multilabel", "assume negative (AN)"),
        ("epr", "multilabel", "EPR"))
METRICS = ("accuracy", "macro_accuracy", "tail_accuracy", "set_size")
TAIL = (7, 8, 9)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
MARKER = ("<!-- fashion_mnist part: written by experiments/average_k/run.py --part "
          "fashion_mnist -->")
NAME = "results_fashion_mnist"
SAME_LR = 1e-3                # the two-head and EPR arms' learning rate (the config's)
CE_FULL = 0.9245              # configs/fashion_mnist_ce.py, 4,300 steps on all of train, seed 0


def select_key(variant: str, k: float) -> str:
  return f"val/avgk/{ARMS[variant][1]}/{_tag(k)}/accuracy:max"


def _tag(k) -> str:
  return f"K{float(k):g}"


def make_config(variant: str, split: str, k: float, args, *, train_split: str = ""):
  from labelwise.configs import fashion_mnist_avgk
  c = fashion_mnist_avgk.get_config(f"method={variant},k={k:g},lt={SPLITS[split]}"
                                    + (",runlocal" if args.smoke else ""))
  c = fmr.study_config(c, steps=args.steps, batch_size=args.batch_size,
                       data_dir=args.data_dir, manual_dir=args.manual_dir)
  if train_split:
    c.data.train_split = train_split
  c.avgk_eval.ks = tuple(EVAL_KS)
  if variant not in K_INDEPENDENT and c.optimizer.learning_rate != SAME_LR:
    raise ValueError(f"the {variant} arm must train at learning rate {SAME_LR} (CE's grid holds "
                     f"it, for the comparison at the same rate), got {c.optimizer.learning_rate}.")
  return c


def balanced_split(args) -> str:
  """``train[:n]`` with ``n`` = ``--balanced_examples`` (-1: the size of ``train_lt100``; 0: all)."""
  n = args.balanced_examples
  if n == 0:
    return "train"
  if n < 0:
    from labelwise.data import make_dataset
    n = make_dataset(make_config("ce", "lt100", 2.0, args)).split("train_lt100").num_examples
  return f"train[:{int(n)}]"


def split_counts(config) -> list:
  """Images per class of ``config``'s training split."""
  from labelwise.data import make_dataset
  split = make_dataset(config).split(config.data.train_split)
  labels = split.get(np.arange(split.num_examples))["label"]
  return np.bincount(np.asarray(labels), minlength=len(CLASSES)).tolist()


def parse(argv):
  def own(ap):
    ap.add_argument("--train_ks", type=float, nargs="+", default=[2.0],
                    help="training K of two-head and EPR (each is evaluated at 1.5, 2 and 3)")
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    ap.add_argument("--balanced_examples", type=int, default=-1,
                    help="-1: as many as train_lt100; 0: all of train")
  args = fmr.parse_part(
      argv, __doc__, out=HERE, workdir="runs/average_k_fm", seeds=3, add=own,
      smoke="2 seeds, one point per arm (two for two-head), 4 steps at batch 32")
  for k in args.train_ks:
    if k not in EVAL_KS:
      raise ValueError(f"--train_ks: each K must be one of the evaluated {EVAL_KS}, got {k}.")
  if args.smoke:
    args.seeds, args.steps, args.batch_size, args.balanced_examples = 2, 4, 32, 0
  if not 1 <= args.tune_seeds <= args.seeds:
    raise ValueError(f"--tune_seeds must be in [1, --seeds={args.seeds}], got {args.tune_seeds}.")
  return args


def main(argv=None):
  args = parse(argv)
  os.makedirs(args.out, exist_ok=True)
  if args.report_only:
    return fmr.render_saved(args.out, NAME, write_report)
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  t0 = time.time()
  tuning.use_compilation_cache(args.workdir)
  grids = SMOKE_GRIDS if args.smoke else {v: g for v, (g, _) in ARMS.items()}
  train_splits = {s: (balanced_split(args) if s == "balanced" else "") for s in args.splits}
  seeds = list(range(args.seeds))
  tune = list(range(args.tune_seeds))
  first = {v: make_config(v, args.splits[0], args.train_ks[0], args,
                          train_split=train_splits[args.splits[0]]) for v in ARMS}
  record = provenance.collect(
      configs={"args": vars(args), "tune_seeds": tune, "train_splits": train_splits,
               "select": {v: f"val/avgk/{h}/K<training K>/accuracy:max"
                          for v, (_, h) in ARMS.items()},
               **{v: {"config": c.to_dict(), "grid": fmr.grid_points(grids[v]),
                      "validation": c.data.validation_split} for v, c in first.items()}},
      seeds=seeds)
  res = {"_meta": {"smoke": bool(args.smoke), "seeds": args.seeds, "tune_seeds": tune,
                   "steps": args.steps, "batch_size": args.batch_size,
                   "train_ks": list(args.train_ks), "eval_ks": list(EVAL_KS),
                   "train_splits": {}, "load_start": os.getloadavg()[0],
                   "grids": {v: fmr.grid_points(g) for v, g in grids.items()}},
         "cells": {}}
  res["_meta"]["class_counts"] = {
      s: split_counts(make_config("ce", s, 2.0, args, train_split=train_splits[s]))
      for s in args.splits}
  for split in args.splits:
    res["cells"][split] = {}
    for k in args.train_ks:
      cell = res["cells"][split][_tag(k)] = {}
      for v in ARMS:
        c = make_config(v, split, k, args, train_split=train_splits[split])
        res["_meta"]["train_splits"][split] = c.data.train_split
        wd = os.path.join(args.workdir, split, v if v in K_INDEPENDENT else f"{v}_{_tag(k)}")
        print(f"  {split} K={k:g} {v}", flush=True)
        cell[v] = fmr.run_arm(c, grids[v], wd, seeds=seeds, select_by=select_key(v, k),
                              tune_seeds=tune)
        cell[v]["replicas"] = [_compact(q) for q in cell[v]["replicas"]]
  return fmr.save_and_render(res, args, NAME, record, t0, write_report)


def _compact(q):
  """A replica with the metrics this part reports (both splits' average-K, top-1, counts)."""
  keep = {"overrides", "seconds", "eval/accuracy", "val/accuracy", "eval/num_examples",
          "val/num_examples"}
  return {key: v for key, v in q.items()
          if key in keep or key.startswith(("eval/avgk/", "val/avgk/"))}


# ------------------------------------------------------------------------------------ report


def _key(head, k, metric, prefix="eval/"):
  return f"{prefix}avgk/{head}/{_tag(k)}/{metric}"


def _fmt_delta(s, scale=100.0):
  if s["std"] is None:
    return f"{scale * s['mean']:+.1f}"
  lo, hi = (scale * v for v in s["ci95"])
  return f"{scale * s['mean']:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _outside(s):
  return s["ci95"] is not None and (s["ci95"][0] > 0 or s["ci95"][1] < 0)


def _word(s):
  return ("better" if s["mean"] > 0 else "worse") if _outside(s) else "within noise"


def table(res, split, k_train, k_eval):
  cell = res["cells"][split][_tag(k_train)]
  ce = tuning.selected(cell["ce"])
  n = len(ce)
  lines = [f"#### `{split}`, trained at K = {k_train:g}, evaluated at K = {k_eval:g}", "",
           "| arm | chosen on validation | val avg-K acc (K train) | avg-K acc | macro acc | "
           "tail acc (7-9) | set size | Δ acc vs CE | Δ macro vs CE | Δ tail vs CE |",
           "|---" * 10 + "|"]
  for v, head, label in ROWS:
    if v not in cell:
      continue
    sel = tuning.selected(cell[v])
    val = np.mean(tuning.values(sel, _key(head, k_train, "accuracy", "val/")))
    cells = [tuning.fmt(tuning.values(sel, _key(head, k_eval, m)),
                        scale=1.0 if m == "set_size" else 100.0,
                        digits=2 if m == "set_size" else 1) for m in METRICS]
    deltas = (["—"] * 3 if v == "ce" else
              [_fmt_delta(_paired_heads(sel, head, ce, k_eval, m))
               for m in ("accuracy", "macro_accuracy", "tail_accuracy")])
    lines.append(f"| {label} | {tuning.point_label(cell[v]['selected']['point'])} | "
                 f"{100 * val:.1f} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")
  lines += ["", f"Cells: mean ± std over {n} seeds [95% t-interval of the mean], accuracies in %; "
            "Δ: paired by seed, arm minus CE's softmax thresholding, [95% interval].", ""]
  return "\n".join(lines)


def _paired_heads(a_reps, a_head, ce_reps, k, metric):
  a = {q["overrides"]["seed"]: q[_key(a_head, k, metric)] for q in a_reps}
  b = {q["overrides"]["seed"]: q[_key("softmax", k, metric)] for q in ce_reps}
  return stats([a[s] - b[s] for s in sorted(a) if s in b])


def grid_lines(res):
  lines = ["### Every grid point on the tuning seeds (val avg-K acc at the training K / test)", ""]
  tune = res["_meta"]["tune_seeds"]
  for split, by_k in res["cells"].items():
    for tag, cell in by_k.items():
      k = float(tag[1:])
      parts = []
      for v, arm in cell.items():
        head = ARMS[v][1]
        pts = []
        for p in tuning.points(arm):
          reps = [q for q in tuning.at_point(arm, p) if q["overrides"]["seed"] in tune]
          mark = " (chosen)" if p == arm["selected"]["point"] else ""
          pts.append(f"{tuning.point_label(p)}: "
                     f"{100 * np.mean(tuning.values(reps, _key(head, k, 'accuracy', 'val/'))):.1f}/"
                     f"{100 * np.mean(tuning.values(reps, _key(head, k, 'accuracy'))):.1f}{mark}")
        at_edge = any(tuning.at_edge(arm).values())
        parts.append(f"{v} " + ", ".join(pts) + (" — chosen at a grid end" if at_edge else ""))
      lines.append(f"- `{split}` K={k:g}: " + "; ".join(parts) + ".")
  lines.append("")
  return "\n".join(lines)


def claims(res) -> dict:
  """Per (split, training K): the paired two-head (multi-label head) minus CE differences at the
  training K on micro, macro and tail accuracy, and tail minus micro (the tail's extra gain)."""
  out = {}
  for split, by_k in res["cells"].items():
    for tag, cell in by_k.items():
      k = float(tag[1:])
      if "two_head" not in cell or "ce" not in cell:
        continue
      th, ce = tuning.selected(cell["two_head"]), tuning.selected(cell["ce"])
      d = {m: _paired_heads(th, "multilabel", ce, k, m)
           for m in ("accuracy", "macro_accuracy", "tail_accuracy")}
      a = {q["overrides"]["seed"]: q for q in th}
      b = {q["overrides"]["seed"]: q for q in ce}
      d["tail_minus_micro"] = stats([
          (a[s][_key("multilabel", k, "tail_accuracy")] - b[s][_key("softmax", k, "tail_accuracy")])
          - (a[s][_key("multilabel", k, "accuracy")] - b[s][_key("softmax", k, "accuracy")])
          for s in sorted(a) if s in b])
      out[(split, tag)] = d
  return out


def verdicts(res):
  lines = ["### Paper claim vs. this part", "",
           "Paper (Garcin et al. 2023, WACV 2025; its tables could not be read here): the two-head "
           "loss beats softmax thresholding and weakly supervised multi-label losses in average-K "
           "accuracy, more so when ambiguity is high and for classes with few samples "
           "(Pl@ntNet-300K, CIFAR-10H).", ""]
  found = claims(res)
  for (split, tag), d in found.items():
    lines.append(
        f"- `{split}`, K = {tag[1:]}: two-head vs CE avg-K accuracy {_fmt_delta(d['accuracy'])} "
        f"({_word(d['accuracy'])}), macro {_fmt_delta(d['macro_accuracy'])} "
        f"({_word(d['macro_accuracy'])}), tail classes 7-9 {_fmt_delta(d['tail_accuracy'])} "
        f"({_word(d['tail_accuracy'])}); tail gain minus overall gain "
        f"{_fmt_delta(d['tail_minus_micro'])} ({_word(d['tail_minus_micro'])}).")
  for tag in sorted({t for _, t in found}):
    lt, bal = found.get(("lt100", tag)), found.get(("balanced", tag))
    if lt is None:
      continue
    gain = lt["accuracy"]
    if _outside(gain) and gain["mean"] > 0:
      txt = "the two-head loss beats softmax thresholding on the long-tailed split"
    elif _outside(gain):
      txt = "the two-head loss is WORSE than softmax thresholding on the long-tailed split"
    else:
      txt = ("no difference between the two-head loss and softmax thresholding outside the seed "
             "noise on the long-tailed split (a null result)")
    tail = lt["tail_minus_micro"]
    if _outside(tail) and tail["mean"] > 0:
      ttxt = ("its gain is larger on the tail classes than overall, as the paper says for classes "
              "with few samples")
    else:
      ttxt = ("its gain is NOT larger on the tail classes than overall (tail minus overall "
              f"{_fmt_delta(tail)}): the few-samples claim does not reproduce here")
    ce_same = _ce_at_lr(res, "lt100", tag)
    if ce_same is not None:
      ttxt += (f". On the tuning seed{'s' if len(res['_meta']['tune_seeds']) > 1 else ''}, CE at "
               f"the two-head arm's learning rate {SAME_LR:g} has test avg-K accuracy "
               f"{100 * ce_same[0]:.1f} against two-head's {100 * ce_same[1]:.1f} (its best "
               "alpha): the gap is not CE's tuned learning rate")
    lines.append(f"- Verdict at K = {tag[1:]}: {txt}; {ttxt}."
                 + ("" if bal is None else
                    f" On the balanced split: {_fmt_delta(bal['accuracy'])} "
                    f"({_word(bal['accuracy'])})."))
  lines.append("")
  return "\n".join(lines)


def _ce_at_lr(res, split, tag):
  """(CE at the two-head arm's learning rate, two-head at its chosen point): mean test avg-K
  accuracy at the training K over the tuning seeds; None when CE's grid lacks that rate."""
  cell = res["cells"][split][tag]
  k, tune = float(tag[1:]), res["_meta"]["tune_seeds"]
  ce = [q for q in tuning.at_point(cell["ce"], {LR: SAME_LR}) if q["overrides"]["seed"] in tune]
  th = [q for q in tuning.selected(cell["two_head"]) if q["overrides"]["seed"] in tune]
  if not ce or not th:
    return None
  return (np.mean(tuning.values(ce, _key("softmax", k, "accuracy"))),
          np.mean(tuning.values(th, _key("multilabel", k, "accuracy"))))


def plot(res, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cells = [(split, tag) for split, by_k in res["cells"].items() for tag in by_k]
  fig, axes = plt.subplots(len(cells), 3, figsize=(13, 3.3 * len(cells)), squeeze=False)
  for row, (split, tag) in zip(axes, cells):
    cell = res["cells"][split][tag]
    for ax, metric in zip(row, ("accuracy", "macro_accuracy", "tail_accuracy")):
      for i, (v, head, label) in enumerate(ROWS):
        if v not in cell:
          continue
        sel = tuning.selected(cell[v])
        m = [100 * np.mean(tuning.values(sel, _key(head, k, metric))) for k in EVAL_KS]
        s = [100 * np.std(tuning.values(sel, _key(head, k, metric)), ddof=1) if len(sel) > 1
             else 0.0 for k in EVAL_KS]
        ax.errorbar(np.arange(len(EVAL_KS)) + 0.06 * (i - 2), m, yerr=s, marker="o",
                    capsize=3, label=label)
      ax.set_xticks(range(len(EVAL_KS)), [f"{k:g}" for k in EVAL_KS])
      ax.set_xlabel("evaluated K")
      ax.set_title(f"{split}, trained at {tag}: {metric.replace('_', ' ')} (%)", fontsize=9)
      ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _command(record, meta) -> str:
  """The command line that produced the results (the provenance's), else the part's default."""
  argv = (record or {}).get("command")
  if argv:
    return "python " + " ".join(str(a) for a in argv)
  return "python experiments/average_k/run.py --part fashion_mnist" + (
      " --smoke" if meta["smoke"] else "")


def section(res, record, md_path) -> str:
  meta = res["_meta"]
  ce_acc = ", ".join(
      f"{np.mean(tuning.values(tuning.selected(next(iter(by_k.values()))['ce']), 'eval/accuracy')):.4f}"
      f" (`{split}`)" for split, by_k in res["cells"].items())
  n_seeds, tune = meta["seeds"], meta["tune_seeds"]
  md = [
      "## Fashion-MNIST part: balanced vs long-tailed (rho 100) training, 2-conv CNN", "",
      f"Generated by `{_command(record, meta)}`: {meta['seconds'] / 60:.0f} min on the shared "
      f"2-core CPU at a lowered priority (load average {meta['load_start']:.1f} at the start, "
      f"{meta.get('load_end', float('nan')):.1f} at the end)"
      + (f", plus {meta['seconds_earlier'] / 60:.0f} min in an earlier invocation whose runs this "
         "one read back (" + meta.get("seconds_earlier_note", "") + ")"
         if meta.get("seconds_earlier") else "") + ". Every run is the trainer on "
      "`configs/fashion_mnist_avgk.py`, **shortened**: "
      f"{meta['steps']} steps at batch {meta['batch_size']} (about "
      f"{meta['steps'] * meta['batch_size'] / 1000:.1f}k images seen, against the baseline's "
      "4,300 steps on all 55,000) on " + ", ".join(
          f"`{s}` = `{t}`" for s, t in meta["train_splits"].items()) + ". "
      f"Trained at K = {', '.join(f'{k:g}' for k in meta['train_ks'])}"
      + (" only (the budget: the full K x split x arm grid does not fit 30 min here); every "
         "arm is evaluated at K = 1.5, 2 and 3 from its point chosen at the training K"
         if meta["train_ks"] == [2.0] else "") + ". "
      f"Tuning budget, the same for every arm: {len(meta['grids']['ce'])} grid points on seed"
      f"{'s' if len(tune) > 1 else ''} {', '.join(map(str, tune))}, the point with the best "
      "validation average-K accuracy of the arm's own head at the training K "
      "(`val/avgk/<head>/K<k>/accuracy`) then on every seed "
      f"({n_seeds} seeds{'' if n_seeds >= 5 else ', fewer than 5 for the budget'}); the "
      "threshold is calibrated on the balanced `validation` split (5,000 images) for both "
      f"training splits and `test` (10,000) is only reported. Tuned CE's top-1 test accuracy is "
      f"{ce_acc} against {CE_FULL} (balanced, all of train) at the full budget "
      "(configs/fashion_mnist_ce.py): a **budgeted comparison**, not converged models. "
      "Tail accuracy: classes 7-9 (Sneaker, Bag, Ankle boot), the evaluator's tail (the least "
      "frequent third of the balanced calibration labels, ties to the highest indices), which "
      "are the three smallest classes of `train_lt100`; on `balanced` the same classes, not a "
      "tail. Training images per class (0-9): " + "; ".join(
          f"`{s}` {', '.join(map(str, c))}" for s, c in meta.get("class_counts", {}).items())
      + ". `test` is balanced (1,000 per class), so macro and micro average-K accuracy agree up "
      "to rounding; the tail columns carry the class-imbalance question.", "",
      "### Results (test split)", ""]
  for split, by_k in res["cells"].items():
    for tag in by_k:
      for k_eval in meta["eval_ks"]:
        md.append(table(res, split, float(tag[1:]), k_eval))
  md += [verdicts(res), grid_lines(res), "![average-K accuracy vs K](fashion_mnist_avgk.png)", "",
         "Not run: two-head rule A and the oracle-pseudo-label control (no posterior on "
         "Fashion-MNIST), ROLE, CIFAR-10H and Pl@ntNet-300K (need network / not in TFDS).", ""]
  return "\n".join(md) + provenance.footer(record, md_path)


def write_report(res, out, record):
  plot(res, os.path.join(out, "fashion_mnist_avgk.png"))
  md_path = os.path.join(out, NAME + ".md")
  text = section(res, record, md_path)
  with open(md_path, "w") as f:
    f.write("# Average-K study: Fashion-MNIST part\n\n" + text)
  fmr.attach_section(os.path.join(out, "results.md"), MARKER, text)
