r"""SimLoss study, Fashion-MNIST part: the H-CNN superclass similarity (``hcnn6``) against CE.

    python experiments/simloss/run.py --part fashion_mnist          # the part (5 seeds, ~40 runs)
    python experiments/simloss/run.py --part fashion_mnist --smoke --data_dir D --out O  # a test's

Every model is trained by the trainer from ``configs/fashion_mnist_simloss.py`` (the 2-conv CNN of
the CE baseline, Adam with a cosine decay, batch 128, no augmentation), shortened to fit a 2-core
CPU: ``--steps`` (100) steps on the first ``--train_examples`` (20,000) images of ``train`` (12,800
images seen, two thirds of an epoch of them), against the baseline's 4,300 steps (10 epochs of 55,000). Each (grid point,
seed) is one run (``experiments/fashion_mnist_runs.py`` says why not a sweep); every arm gets the
same budget of 4 grid points x 5 seeds, the point chosen by its mean accuracy on the dataset's
``validation`` split (5,000 images, stratified); ``test`` (10,000) is only reported:

* CE: learning rate {5e-4, 1e-3, 2e-3, 4e-3};
* SimLoss: reduction factor r {0.02, 0.1, 0.3, 0.7} (S = 1 on the diagonal, r inside an ``hcnn6``
  group: tops {T-shirt, Pullover, Shirt}, shoes {Sandal, Sneaker, Ankle boot}; 0 otherwise) at the
  config's learning rate 1e-3, so CE at 1e-3 (the same seeds) is r = 0 of the r curve.

Metrics on test: accuracy, superclass accuracy (prediction in the label's ``hcnn6`` group), failed
superclass accuracy (the same over the mistakes), mistake severity (mean height of the lowest common
ancestor of prediction and label in H-CNN's tree classes - hcnn6 - clothes/goods - root, over the
mistakes: 1 = same group, 2 = same clothes/goods side, 3 = across), and the confusion matrix
(summed over seeds) of tuned CE and SimLoss at its chosen and its largest r.

Semantic similarity from class-name embeddings (the paper's CIFAR-100 route) is not run: no small
offline source of word vectors was found (see docs/simloss.md).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from labelwise.experiments import fashion_mnist_runs as fmr
from labelwise.experiments import provenance
from labelwise.experiments import tuning
from labelwise.train.sweep import stats

HERE = os.path.dirname(os.path.abspath(__file__))
LR = "optimizer.learning_rate"
R = "simloss.reduction_factor"
SELECT = "val/accuracy:max"
SIM_LR = 1e-3                 # the SimLoss arm's learning rate (the config's); CE's grid holds it
ARMS = {
    "CE": ("method=ce", {LR: (5e-4, 1e-3, 2e-3, 4e-3)}),
    "SimLoss": ("method=simloss", {R: (0.02, 0.1, 0.3, 0.7)}),
}
SMOKE_ARMS = {"CE": ("method=ce", {LR: (1e-3,)}), "SimLoss": ("method=simloss", {R: (0.1, 0.7)})}
COLUMNS = ("accuracy", "superclass_accuracy", "failed_superclass_accuracy", "mistake_severity")
MARKER = "<!-- fashion_mnist part: written by experiments/simloss/run.py --part fashion_mnist -->"
NAME = "results_fashion_mnist"
CE_ANCHOR = "0.916-0.934"     # 2-conv CNN without augmentation, the dataset's benchmark table
CE_FULL = 0.9245              # configs/fashion_mnist_ce.py, 4,300 steps on all of train, seed 0
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")


def make_config(arg: str, args):
  from labelwise.configs import fashion_mnist_simloss
  c = fashion_mnist_simloss.get_config(arg + (",runlocal" if args.smoke else ""))
  c = fmr.study_config(c, steps=args.steps, batch_size=args.batch_size,
                       data_dir=args.data_dir, manual_dir=args.manual_dir)
  if args.train_examples:
    c.data.train_split = f"train[:{args.train_examples}]"
  if c.method == "simloss" and c.optimizer.learning_rate != SIM_LR:
    raise ValueError(f"the SimLoss arm must train at learning rate {SIM_LR} (r = 0 of its curve "
                     f"is CE's run at it), got {c.optimizer.learning_rate}.")
  return c


def parse(argv):
  def own(ap):
    ap.add_argument("--train_examples", type=int, default=20_000, help="0: all of train")
  args = fmr.parse_part(
      argv, __doc__, out=HERE, workdir="runs/simloss_fm", seeds=5, add=own, tune_seeds=False,
      report="the section and plots",
      smoke="2 seeds, CE lr 1e-3 and SimLoss r 0.1/0.7, 4 steps at batch 32")
  if args.smoke:
    args.seeds, args.steps, args.batch_size = 2, 4, 32
    args.train_examples = 0
  return args


def main(argv=None):
  args = parse(argv)
  os.makedirs(args.out, exist_ok=True)
  if args.report_only:
    return fmr.render_saved(args.out, NAME, write_report)
  t0 = time.time()
  tuning.use_compilation_cache(args.workdir)
  arms = {name: (make_config(arg, args), grid)
          for name, (arg, grid) in (SMOKE_ARMS if args.smoke else ARMS).items()}
  seeds = list(range(args.seeds))
  record = provenance.collect(
      configs={"args": vars(args), "select": SELECT,
               **{a: {"config": c.to_dict(), "grid": {k: list(v) for k, v in g.items()},
                      "validation": c.data.validation_split} for a, (c, g) in arms.items()}},
      seeds=seeds)
  load = os.getloadavg()
  res = {"_meta": {"smoke": bool(args.smoke), "seeds": args.seeds, "steps": args.steps,
                   "batch_size": args.batch_size, "train_split": next(iter(arms.values()))[0]
                   .data.train_split, "load_start": load[0]}, "select": SELECT}
  for name, (c, grid) in arms.items():
    print(f"  {name}", flush=True)
    res[name] = fmr.run_arm(c, grid, os.path.join(args.workdir, name), seeds=seeds,
                            select_by=SELECT)
    for rep in res[name]["replicas"]:
      rep["confusion"] = _read_confusion(args.workdir, name, rep)
  return fmr.save_and_render(res, args, NAME, record, t0, write_report)


def _read_confusion(workdir, arm, rep):
  point = {k: v for k, v in rep["overrides"].items() if k != "seed"}
  path = os.path.join(workdir, arm, tuning._key_name(point), f"seed{rep['overrides']['seed']}")
  names = [n for n in os.listdir(path) if n.startswith("confusion_test")]
  with open(os.path.join(path, names[0])) as f:
    return json.load(f)["matrix"]


# ------------------------------------------------------------------------------------ report


def _by_seed(reps, metric):
  return {q["overrides"]["seed"]: q[f"eval/{metric}"] for q in reps}


def _paired(a_reps, b_reps, metric):
  """Stats of (a - b) on ``metric`` over the seeds both have."""
  a, b = _by_seed(a_reps, metric), _by_seed(b_reps, metric)
  return stats([a[s] - b[s] for s in sorted(a) if s in b])


def _fmt_stats(s, digits=3, sign=False):
  f = f"{{:{'+' if sign else ''}.{digits}f}}"
  if s["std"] is None:
    return f.format(s["mean"])
  return (f"{f.format(s['mean'])} ± {s['std']:.{digits}f} "
          f"[{f.format(s['ci95'][0])}, {f.format(s['ci95'][1])}]")


def _ce_at_lr(res, lr=1e-3):
  return tuning.at_point(res["CE"], {LR: lr})


def curve(res):
  """[(r, replicas)] with r = 0 the CE runs at the SimLoss arm's learning rate (same seeds)."""
  out = [(0.0, _ce_at_lr(res, SIM_LR))] if _ce_at_lr(res, SIM_LR) else []
  for p in tuning.points(res["SimLoss"]):
    out.append((p[R], tuning.at_point(res["SimLoss"], p)))
  return sorted(out, key=lambda t: t[0])


def table(res):
  meta = res["_meta"]
  n = len(tuning.selected(res["CE"]))
  lines = [
      "### Tuned arms (test split)", "",
      f"Chosen on `validation` by `{res['select']}` (mean over {n} seeds). Cells: mean ± std over "
      f"{n} seeds [95% t-interval of the mean]; Δ: paired by seed, SimLoss minus tuned CE.", "",
      "| arm | chosen | val accuracy | " + " | ".join(COLUMNS) + " |",
      "|---" * (3 + len(COLUMNS)) + "|"]
  for name in ("CE", "SimLoss"):
    r = res[name]
    sel = tuning.selected(r)
    lines.append(f"| {name} | {tuning.point_label(r['selected']['point'])} | "
                 f"{tuning.val_mean(r):.4f} | "
                 + " | ".join(_fmt_stats(stats(tuning.values(sel, f'eval/{c}'))) for c in COLUMNS)
                 + " |")
  ce, sim = tuning.selected(res["CE"]), tuning.selected(res["SimLoss"])
  lines.append("| Δ SimLoss − CE | | | " + " | ".join(
      _fmt_stats(_paired(sim, ce, c), sign=True) for c in COLUMNS) + " |")
  lines += ["", "### Every r (test split; r = 0 is CE at the same learning rate 1e-3 and seeds)",
            "", "| r | " + " | ".join(COLUMNS) + " | Δ accuracy vs r = 0 | Δ failed superclass "
            "acc. vs r = 0 |", "|---" * (3 + len(COLUMNS)) + "|"]
  pts = curve(res)
  base = pts[0][1] if pts and pts[0][0] == 0.0 else None
  chosen = res["SimLoss"]["selected"]["point"][R]
  for r_val, reps in pts:
    label = f"**{r_val:g}** (chosen)" if r_val == chosen else f"{r_val:g}"
    cells = [_fmt_stats(stats(tuning.values(reps, f"eval/{c}"))) for c in COLUMNS]
    deltas = (["—", "—"] if base is None or r_val == 0.0 else
              [_fmt_stats(_paired(reps, base, c), sign=True)
               for c in ("accuracy", "failed_superclass_accuracy")])
    lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")
  lines += ["", "CE's learning-rate grid (test accuracy / val accuracy, mean over seeds): " + "; ".join(
      f"{tuning.point_label(p)}: {np.mean(tuning.values(tuning.at_point(res['CE'], p), 'eval/accuracy')):.4f}"
      f" / {np.mean(tuning.values(tuning.at_point(res['CE'], p), 'val/accuracy')):.4f}"
      + (" (chosen)" if p == res["CE"]["selected"]["point"] else "")
      for p in tuning.points(res["CE"])), ""]
  return "\n".join(lines)


def verdicts(res) -> str:
  pts = curve(res)
  ce = tuning.selected(res["CE"])
  acc0 = np.mean(tuning.values(ce, "eval/accuracy"))
  lines = ["### Paper claim vs. this part", "",
           "Paper (Kobs et al. 2020, trend only; its tables could not be read here): a *small* "
           "similarity influence improves accuracy, a *large* one improves the superclass "
           "metrics (CIFAR-100 with word2vec similarity, LeNet).", ""]
  if not pts or pts[0][0] != 0.0:
    return "\n".join(lines)
  base = pts[0][1]
  small = [(r, reps) for r, reps in pts[1:] if r <= 0.1]
  gains = [(r, _paired(reps, base, "accuracy")) for r, reps in small]
  sig_up = [r for r, s in gains if s["ci95"] is not None and s["ci95"][0] > 0]
  sig_down = [r for r, s in gains if s["ci95"] is not None and s["ci95"][1] < 0]
  if sig_up:
    acc_txt = (f"small r ({', '.join(f'{r:g}' for r in sig_up)}) raises test accuracy over CE at "
               "the same learning rate with a 95% interval of the paired difference above 0: the "
               "'small influence improves accuracy' claim reproduces here")
  elif sig_down:
    acc_txt = (f"small r ({', '.join(f'{r:g}' for r in sig_down)}) LOWERS test accuracy (paired "
               "95% interval below 0): the 'small influence improves accuracy' claim does NOT "
               "reproduce")
  else:
    acc_txt = ("no small r (<= 0.1) changes test accuracy outside the noise (every paired 95% "
               "interval contains 0): the 'small influence improves accuracy' claim does NOT "
               "reproduce here (a null result)")
  tuned = _paired(tuning.selected(res["SimLoss"]), ce, "accuracy")
  lines.append(f"- Accuracy: {acc_txt}. Tuned SimLoss vs tuned CE: Δ accuracy "
               f"{_fmt_stats(tuned, sign=True)} (CE {acc0:.4f}).")
  fsa = [(r, np.mean(tuning.values(reps, "eval/failed_superclass_accuracy"))) for r, reps in pts]
  sev = [(r, np.mean(tuning.values(reps, "eval/mistake_severity"))) for r, reps in pts]
  big = pts[-1]
  d_fsa = _paired(big[1], base, "failed_superclass_accuracy")
  d_acc = _paired(big[1], base, "accuracy")
  d_sa = _paired(big[1], base, "superclass_accuracy")
  up = d_fsa["ci95"] is not None and d_fsa["ci95"][0] > 0
  sa_up = d_sa["ci95"] is not None and d_sa["ci95"][0] > 0
  sa_down = d_sa["ci95"] is not None and d_sa["ci95"][1] < 0
  sa_txt = (f"Superclass accuracy over all test images moves by {_fmt_stats(d_sa, sign=True)} "
            f"at r = {big[0]:g}: " + (
                "it rises too, so the gain is not only a shift of the remaining mistakes"
                if sa_up else
                "it FALLS, so the superclass gain among mistakes is outweighed by the extra "
                "mistakes" if sa_down else
                "within the noise, so the gain in failed superclass accuracy comes from more "
                "mistakes made inside the groups (the errors the fine accuracy loses), not from "
                "fewer predictions in the wrong superclass"))
  lines.append(
      "- Superclass metrics: failed superclass accuracy " + ", ".join(
          f"{m:.3f} (r={r:g})" for r, m in fsa) + "; mistake severity " + ", ".join(
          f"{m:.3f} (r={r:g})" for r, m in sev) + f". At the largest r = {big[0]:g} the paired "
      f"change in failed superclass accuracy is {_fmt_stats(d_fsa, sign=True)} and in accuracy "
      f"{_fmt_stats(d_acc, sign=True)}: "
      + ("a large influence moves mistakes into the right superclass, as claimed"
         if up else "the 'large influence improves superclass metrics' claim does NOT reproduce")
      + ". " + sa_txt + ".")
  lines.append("")
  return "\n".join(lines)


def plot_curve(res, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  pts = curve(res)
  fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
  titles = {"accuracy": "accuracy", "superclass_accuracy": "superclass accuracy",
            "failed_superclass_accuracy": "failed superclass accuracy",
            "mistake_severity": "mistake severity (LCA height)"}
  xs = [r for r, _ in pts]
  for ax, metric in zip(axes, COLUMNS):
    m = [np.mean(tuning.values(reps, f"eval/{metric}")) for _, reps in pts]
    s = [np.std(tuning.values(reps, f"eval/{metric}"), ddof=1) if len(reps) > 1 else 0.0
         for _, reps in pts]
    ax.errorbar(range(len(xs)), m, yerr=s, marker="o", capsize=3,
                label="SimLoss (r = 0: CE, lr 1e-3)")
    ce = np.mean(tuning.values(tuning.selected(res["CE"]), f"eval/{metric}"))
    ax.axhline(ce, color="C1", linestyle="--", linewidth=1, label="CE (tuned lr)")
    ax.set_xticks(range(len(xs)), [f"{r:g}" for r in xs])
    ax.set_xlabel("reduction factor r")
    ax.set_title(f"Fashion-MNIST: {titles[metric]}", fontsize=9)
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def confusion_panels(res):
  """[(title, summed confusion [10, 10])]: tuned CE, SimLoss at its chosen r and its largest r."""
  def total(reps):
    return np.sum([np.asarray(q["confusion"]) for q in reps], axis=0)
  out = [(f"CE ({tuning.point_label(res['CE']['selected']['point'])})",
          total(tuning.selected(res["CE"])))]
  chosen = res["SimLoss"]["selected"]["point"]
  out.append((f"SimLoss r={chosen[R]:g} (chosen)", total(tuning.selected(res["SimLoss"]))))
  largest = max(tuning.points(res["SimLoss"]), key=lambda p: p[R])
  if largest != chosen:
    out.append((f"SimLoss r={largest[R]:g}", total(tuning.at_point(res["SimLoss"], largest))))
  return out


def plot_confusion(res, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = confusion_panels(res)
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5))
  for ax, (title, m) in zip(np.atleast_1d(axes), panels):
    rate = m / np.maximum(m.sum(1, keepdims=True), 1)
    ax.imshow(rate, cmap="Blues", vmin=0, vmax=0.3)
    for i in range(m.shape[0]):
      for j in range(m.shape[1]):
        ax.text(j, i, f"{100 * rate[i, j]:.0f}", ha="center", va="center", fontsize=6,
                color="white" if rate[i, j] > 0.2 else "black")
    ax.set_xticks(range(10), CLASSES, rotation=60, fontsize=7)
    ax.set_yticks(range(10), CLASSES, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    ax.set_title(f"{title}: % of each label's test images (summed over seeds; colour capped at 30%)",
                 fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def confusion_lines(res):
  """The off-diagonal share inside the tops and shoes groups, per panel."""
  tops, shoes = (0, 2, 6), (5, 7, 9)
  lines = []
  for title, m in confusion_panels(res):
    errors = m.sum() - np.trace(m)
    within = sum(m[i, j] for g in (tops, shoes) for i in g for j in g if i != j)
    shirt = m[6, 6] / m[6].sum()
    lines.append(f"- {title}: {int(errors)} test errors over the seeds, {100 * within / errors:.1f}% "
                 f"of them inside tops or shoes; Shirt recall {shirt:.3f}.")
  return lines


def section(res, record, md_path) -> str:
  meta = res["_meta"]
  ce_acc = np.mean(tuning.values(tuning.selected(res["CE"]), "eval/accuracy"))
  md = [
      "## Fashion-MNIST part: H-CNN superclass similarity (`hcnn6`), 2-conv CNN", "",
      f"Generated by `python experiments/simloss/run.py --part fashion_mnist"
      f"{' --smoke' if meta['smoke'] else ''}`: {meta['seconds'] / 60:.0f} min on the shared "
      f"2-core CPU at nice 10 (load average {meta['load_start']:.1f} at the start, "
      f"{meta.get('load_end', float('nan')):.1f} at the end). Every run is the trainer on "
      "`configs/fashion_mnist_simloss.py`, **shortened**: "
      f"{meta['steps']} steps at batch {meta['batch_size']} on `{meta['train_split']}` (about "
      f"{meta['steps'] * meta['batch_size'] / 1000:.0f}k images seen, against the baseline's "
      "4,300 steps on all 55,000); the full-data CE anchors are "
      f"{CE_ANCHOR} (2-conv CNN, the dataset's benchmark table) and our {CE_FULL} "
      f"(configs/fashion_mnist_ce.py), so the shortened CE's {ce_acc:.4f} is "
      f"{CE_FULL - ce_acc:.3f} below its full-budget value: this part is a **budgeted "
      "comparison** (every arm the same short budget), not the converged baseline. Each (point, "
      "seed) is its own run "
      "(see experiments/fashion_mnist_runs.py for why not a sweep); every arm has "
      f"{len(tuning.points(res['CE']))} grid points x {meta['seeds']} seeds; the choice is on `validation`, test is only reported.", "",
      table(res), verdicts(res),
      "### Confusion matrices", "",
      "![confusion matrices](fashion_mnist_confusion.png)", "",
      *confusion_lines(res), "",
      "![metrics vs r](fashion_mnist_r.png)", "",
      "Not run: semantic similarity from class-name embeddings (no small offline source of word "
      "vectors here; docs/simloss.md), label smoothing and hierarchical soft labels on "
      "Fashion-MNIST (the budget).", ""]
  return "\n".join(md) + provenance.footer(record, md_path)


def write_report(res, out, record):
  plot_curve(res, os.path.join(out, "fashion_mnist_r.png"))
  plot_confusion(res, os.path.join(out, "fashion_mnist_confusion.png"))
  md_path = os.path.join(out, NAME + ".md")
  text = section(res, record, md_path)
  with open(md_path, "w") as f:
    f.write("# SimLoss study: Fashion-MNIST part\n\n" + text)
  fmr.attach_section(os.path.join(out, "results.md"), MARKER, text)
