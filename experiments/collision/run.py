r"""Study of collision cross-entropy (Zhang & Boykov, arXiv 2303.07321), through the trainer.

    python experiments/collision/run.py               # full study (~10 minutes on 2 shared CPU cores)
    python experiments/collision/run.py --quick       # 2 seeds, a few steps (smoke test)
    python experiments/collision/run.py --part fashion_mnist   # the Fashion-MNIST part (its own
                                  # options: experiments/collision/fashion_mnist.py, --help)

Every run is ``labelwise.train.trainer.train_and_evaluate`` (in-process) on the project's configs;
each arm is ONE ``config.sweep`` (its seeds x its levels or hyperparameters as replicas of one
compiled program). Nothing here trains by itself.

E1  soft targets on digits (``configs/digits_collision_soft.py``, ``model=linear`` | ``mlp``):
    collision CE (``collision_soft``) vs Shannon soft CE (``shannon_soft``) under two noise models
    made from the clean labels: "mix" t = (1 - eta) onehot + eta Dirichlet(1), eta in
    {0, .5, .8, .9}, and "flat", a fraction rho in {.3, .5, .8} of the targets replaced by a
    Dirichlet(1) draw. One sweep per (noise model, model, loss): seeds x levels x learning rates.
    Every arm gets the same tuning budget, the learning rate grid ``LR_GRID``: at each level the
    rate with the best mean validation accuracy (``val/accuracy:max`` on a stratified 20% of the
    training split, ``data.validation_fraction``) is chosen by ``train.sweep.select`` and its test
    accuracy (clean labels) reported over the seeds.
E2  self-labeled clustering, K = 10, on all 1797 digits (``configs/digits_cluster.py``) and all 5000
    MNIST-1D signals (``configs/mnist1d_cluster.py:model=mlp``): ``collision_cluster`` (fairness
    weight lambda = 1 and 3, one sweep), ``shannon_cluster`` (lambda = 3), ``mi_cluster``, and
    k-means on the same inputs; ACC (Hungarian) / NMI / ARI with 95% t-intervals over the seeds.

Writes ``results.md``, ``results.json`` (``results_soft.json`` / ``results_cluster.json``) and
``results_soft.png`` / ``results_cluster.png``; the "Reading" section of the committed results.md
was written by hand and is kept when the tables are regenerated. The numbers of the earlier version
of this study (its own vmapped training loop) are kept in ``results*_own_loop.json`` and shown next
to the new ones. ``--only soft`` / ``--only cluster`` run one part and assemble the report with the
other part's saved JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import numpy as np  # noqa: E402

from labelwise.eval import metrics  # noqa: E402
from labelwise.experiments import provenance  # noqa: E402
from labelwise.train import sweep as sweep_lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOFT_LEVELS = {"mix": (0.0, 0.5, 0.8, 0.9), "flat": (0.3, 0.5, 0.8)}
SOFT_LOSSES = {"shannon": "shannon_soft", "collision": "collision_soft"}
LR_GRID = (1e-3, 3e-3)
SELECT = "val/accuracy:max"
VALIDATION_FRACTION = 0.2
NOISE_SEED = 1000  # one noise draw per level, shared by the seeds (a sweep cannot tie it to `seed`)
# (label, method, its sweep of fairness weights or None): the E2 arms.
CLUSTER_ARMS = (("collision", "collision_cluster", (1.0, 3.0)),
                ("shannon", "shannon_cluster", (3.0,)),
                ("mi", "mi_cluster", None))
CLUSTER_CONFIGS = {"digits": ("digits_cluster", ""), "mnist1d": ("mnist1d_cluster", "model=mlp")}


def seed_group(seeds) -> str:
  return "seed=" + ",".join(str(int(s)) for s in seeds)


def load_split(name: str, split: str):
  """All of one split as flat float32 inputs and int labels (for the k-means baseline)."""
  from labelwise.data import registry
  import labelwise.data  # noqa: F401  (registers the datasets)
  from labelwise.data.pipeline import SplitData, default_data_dir
  d = SplitData(registry.get_dataset_spec(name), split, default_data_dir()).all()
  x = d["input"].reshape(len(d["input"]), -1).astype(np.float32)
  return x, d["label"].astype(np.int32)


def t_interval(values):
  s = sweep_lib.stats(values)
  if s["std"] is None:
    return s["mean"], 0.0, 0.0
  return s["mean"], s["std"], s["ci95"][1] - s["mean"]


def _train(config, workdir):
  from labelwise.train import trainer
  t0 = time.time()
  results = trainer.train_and_evaluate(config, workdir)
  return results, time.time() - t0


# ----------------------------------------------------------------------------------------------------
# E1: soft targets
# ----------------------------------------------------------------------------------------------------


def soft_config(noise: str, model: str, loss: str, *, seeds, steps: int):
  """One E1 arm: seeds x noise levels x learning rates as one sweep."""
  from labelwise.configs import digits_collision_soft
  method = SOFT_LOSSES[loss]
  c = digits_collision_soft.get_config(f"method={method},targets={noise},model={model},"
                                       f"noise_seed={NOISE_SEED}")
  c.total_steps = steps
  c.log_every = max(1, min(100, steps))
  c.data.validation_fraction = VALIDATION_FRACTION
  c.sweep = (f"{seed_group(seeds)};{method}.noise_level="
             + ",".join(f"{v:g}" for v in SOFT_LEVELS[noise])
             + ";optimizer.learning_rate=" + ",".join(f"{v:g}" for v in LR_GRID))
  c.sweep_select = SELECT
  return c


def soft_rows_of(results, *, noise, model, loss):
  """Per noise level: the validation-chosen learning rate and its test accuracies over the seeds."""
  key = f"{SOFT_LOSSES[loss]}.noise_level"
  rows = []
  for level in SOFT_LEVELS[noise]:
    at_level = [s for s in results["summary"] if s["point"][key] == level]
    chosen = sweep_lib.select(at_level, SELECT)
    reps = [results["replicas"][i] for i in chosen["replicas"]]
    rows.append(dict(noise=noise, level=level, model=model, loss=loss,
                     lr=chosen["point"]["optimizer.learning_rate"],
                     val=chosen["val"]["val/accuracy"]["mean"],
                     seeds=[r["overrides"]["seed"] for r in reps],
                     acc=[r["eval/accuracy"] for r in reps]))
  return rows


def run_soft(seeds, steps, workdir):
  rows = []
  for noise in SOFT_LEVELS:
    for model in ("linear", "mlp"):
      for loss in SOFT_LOSSES:
        config = soft_config(noise, model, loss, seeds=seeds, steps=steps)
        results, secs = _train(config, os.path.join(workdir, f"soft_{noise}_{model}_{loss}"))
        rows += soft_rows_of(results, noise=noise, model=model, loss=loss)
        print(f"E1 {noise} {model} {loss}: " + ", ".join(
            f"{r['level']:g}: {np.mean(r['acc']):.3f} (lr {r['lr']:g})" for r in rows[-len(
                SOFT_LEVELS[noise]):]) + f" ({secs:.0f}s)", flush=True)
  return rows


# ----------------------------------------------------------------------------------------------------
# E2: clustering
# ----------------------------------------------------------------------------------------------------


def cluster_config(dataset: str, method: str, lams, *, seeds, steps: int):
  """One E2 arm: seeds (x fairness weights) as one sweep."""
  import importlib
  name, arg = CLUSTER_CONFIGS[dataset]
  module = importlib.import_module(f"labelwise.configs.{name}")
  c = module.get_config(",".join(a for a in (arg, f"method={method}") if a))
  c.total_steps = steps
  c.log_every = max(1, min(50, steps))
  c.sweep = seed_group(seeds)
  if lams is not None:
    c[method].fairness_weight = float(lams[0])
    if len(lams) > 1:
      c.sweep += f";{method}.fairness_weight=" + ",".join(f"{v:g}" for v in lams)
  return c


def cluster_rows_of(results, *, dataset, label, method, lams):
  key = f"{method}.fairness_weight"
  rows = []
  for lam in (lams or (None,)):
    reps = [r for r in results["replicas"] if lam is None or len(lams) == 1
            or r["overrides"][key] == lam]
    name = label if lam is None else f"{label} (lambda={lam:g})"
    rows.append(dict(dataset=dataset, method=name, seeds=[r["overrides"]["seed"] for r in reps],
                     acc=[r["eval/cluster_accuracy"] for r in reps],
                     nmi=[r["eval/nmi"] for r in reps], ari=[r["eval/ari"] for r in reps]))
  return rows


def run_cluster(seeds, steps, workdir):
  rows = []
  for dataset in CLUSTER_CONFIGS:
    for label, method, lams in CLUSTER_ARMS:
      config = cluster_config(dataset, method, lams, seeds=seeds, steps=steps)
      results, secs = _train(config, os.path.join(workdir, f"cluster_{dataset}_{method}"))
      new = cluster_rows_of(results, dataset=dataset, label=label, method=method, lams=lams)
      rows += new
      for r in new:
        print(f"E2 {dataset} {r['method']}: acc {np.mean(r['acc']):.3f} nmi {np.mean(r['nmi']):.3f}"
              f" ari {np.mean(r['ari']):.3f} ({secs:.0f}s for the sweep)", flush=True)
    t0 = time.time()
    xa, ya = load_split(dataset, "train+test")
    x = (xa - xa.mean(0)) / (xa.std(0) + 1e-6) if dataset == "mnist1d" else xa
    res = [metrics.clustering_metrics(ya, metrics.kmeans_clusters(x, 10, seed=s, n_init=3))
           for s in seeds]
    rows.append(dict(dataset=dataset, method="kmeans", seeds=list(seeds),
                     acc=[r["cluster_accuracy"] for r in res], nmi=[r["nmi"] for r in res],
                     ari=[r["ari"] for r in res]))
    print(f"E2 {dataset} kmeans: acc {np.mean(rows[-1]['acc']):.3f} ({time.time() - t0:.1f}s)",
          flush=True)
  return rows


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


def fmt(values):
  m, s, h = t_interval(values)
  return f"{m:.3f} ± {s:.3f}"


def fmt_ci(values):
  m, _, h = t_interval(values)
  return f"{m:.3f} [{m - h:.3f}, {m + h:.3f}]"


def plot(soft_rows, cluster_rows, outdir):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
  for ax, noise in zip(axes, ("mix", "flat")):
    for model, ls in (("linear", "--"), ("mlp", "-")):
      for loss_name, color in (("shannon", "tab:blue"), ("collision", "tab:red")):
        rs = [r for r in soft_rows if r["noise"] == noise and r["model"] == model
              and r["loss"] == loss_name]
        lv = [r["level"] for r in rs]
        m = [np.mean(r["acc"]) for r in rs]
        s = [np.std(r["acc"]) for r in rs]
        ax.errorbar(lv, m, yerr=s, ls=ls, color=color, marker="o", capsize=3,
                    label=f"{loss_name} / {model}")
    ax.set_xlabel("eta (mix)" if noise == "mix" else "rho (flat)")
    ax.set_title(f'digits, noise model "{noise}"')
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("clean test accuracy")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "results_soft.png"), dpi=120)
  plt.close(fig)

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
  for ax, dataset in zip(axes, ("digits", "mnist1d")):
    rs = [r for r in cluster_rows if r["dataset"] == dataset]
    for i, r in enumerate(rs):
      m, _, h = t_interval(r["acc"])
      color = {"c": "tab:red", "s": "tab:blue", "m": "tab:green", "k": "tab:gray"}[r["method"][0]]
      ax.bar(i, m, yerr=h, capsize=4, color=color)
      ax.scatter(np.full(len(r["acc"]), i) + np.linspace(-0.2, 0.2, len(r["acc"])), r["acc"],
                 color="k", s=6, zorder=3)
    ax.set_xticks(range(len(rs)), [r["method"].replace(" (lambda=", "\nλ=").rstrip(")")
                                   for r in rs], fontsize=8)
    ax.set_title(f"{dataset}: clustering accuracy (95% CI)")
    ax.grid(alpha=0.3, axis="y")
  axes[0].set_ylabel("ACC (Hungarian)")
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "results_cluster.png"), dpi=120)
  plt.close(fig)


HAND_WRITTEN = "## Reading (written by hand"


def hand_written_section(path):
  """The hand-written reading of an earlier results.md (kept when the table is regenerated)."""
  if not os.path.exists(path):
    return None
  text = open(path).read()
  start = text.find(HAND_WRITTEN)
  if start < 0:
    return None
  end = text.find("\n_Provenance:", start)
  return text[start:end if end >= 0 else None].rstrip()


def own_loop_rows(part: str):
  """The rows of the earlier version of this study (its own training loop), [] when missing."""
  path = os.path.join(HERE, f"results_{part}_own_loop.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def _mean_of(rows, **match):
  for r in rows:
    if all(r.get(k) == v for k, v in match.items()):
      return f"{np.mean(r['acc']):.3f}"
  return "-"


def write_markdown(soft_rows, cluster_rows, args, seconds, outdir, record):
  old_soft, old_cluster = own_loop_rows("soft"), own_loop_rows("cluster")
  lines = ["# Collision cross-entropy: study through the trainer", "",
           f"Generated by `python experiments/collision/run.py{' --quick' if args.quick else ''}` "
           f"on CPU in {seconds / 60:.1f} minutes. Every run is `train_and_evaluate` on the "
           "project's configs, one `config.sweep` (one compiled program) per arm. "
           f"Seeds: E1 {args.soft_seeds}, E2 {args.cluster_seeds}; steps: E1 {args.soft_steps} "
           "(`configs/digits_collision_soft.py`: batch 64, Adam; learning rate chosen per arm and "
           f"level from {list(LR_GRID)} by mean validation accuracy on a stratified "
           f"{VALIDATION_FRACTION:.0%} of the training split, which the models then do not train "
           f"on; noise seed {NOISE_SEED} for every seed), E2 {args.cluster_steps} "
           "(`configs/digits_cluster.py`, `configs/mnist1d_cluster.py:model=mlp`: batch 256, Adam "
           "1e-3, wd 1e-4, MLP 256, strong fairness with weight lambda, per-batch EM, tol 1e-5, at "
           "most 200 iterations; k-means: scikit-learn, n_init=3, on the same inputs, MNIST-1D "
           "standardized). Sizes are those of the earlier own-loop study (E1 1500 steps, E2 10 "
           "seeds) where the budget allows: the whole rerun is meant to fit about 15 minutes on "
           "the shared 2-core CPU.", "",
           "## E1: soft targets on digits (clean test accuracy, mean ± std over seeds)", "",
           "| noise | level | model | Shannon soft CE | collision CE | difference (coll. - Shannon) "
           "| chosen lr (Sh. / coll.) | own loop: Shannon / collision |",
           "|---|---|---|---|---|---|---|---|"]
  for noise in ("mix", "flat"):
    for level in sorted({r["level"] for r in soft_rows if r["noise"] == noise}):
      for model in ("linear", "mlp"):
        get = lambda loss: [r for r in soft_rows if r["noise"] == noise and r["level"] == level
                            and r["model"] == model and r["loss"] == loss][0]
        sh, co = get("shannon"), get("collision")
        lr = lambda r: f"{r['lr']:g}" if "lr" in r else "-"
        old = " / ".join(_mean_of(old_soft, noise=noise, level=level, model=model, loss=loss)
                         for loss in ("shannon", "collision"))
        lines.append(f"| {noise} | {level} | {model} | {fmt(sh['acc'])} | {fmt(co['acc'])} | "
                     f"{fmt_ci(np.asarray(co['acc']) - np.asarray(sh['acc']))} | "
                     f"{lr(sh)} / {lr(co)} | {old} |")
  lines += ["", "The difference column is the paired (same seed, same noise draw) difference with a "
            "95% t-interval. The last column: the earlier study's means (own training loop, Adam "
            "1e-3 without tuning, 1500 steps on all of the training split, noise seed 1000 + seed, "
            "`results_soft_own_loop.json`).", "",
            "![E1](results_soft.png)", "",
            "## E2: self-labeled clustering, K = 10 (mean [95% t-interval] over seeds)", "",
            "| dataset | method | ACC | NMI | ARI | own loop: ACC |",
            "|---|---|---|---|---|---|"]
  for r in cluster_rows:
    old = _mean_of(old_cluster, dataset=r["dataset"], method=r["method"])
    lines.append(f"| {r['dataset']} | {r['method']} | {fmt_ci(r['acc'])} | {fmt_ci(r['nmi'])} | "
                 f"{fmt_ci(r['ari'])} | {old} |")
  lines += ["", "Own loop: the earlier study's mean ACC over 10 seeds (AdamW, 400 steps, EM at most "
            "100 iterations; `results_cluster_own_loop.json`).", "",
            "![E2](results_cluster.png)", ""]
  md_path = os.path.join(outdir, "results.md")
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.collision import fashion_mnist
  kept = fashion_mnist_runs.kept_section(md_path, fashion_mnist.MARKER)  # the other part's
  reading = hand_written_section(md_path)
  if reading:
    lines += [reading, "",
              "_(The reading above was written for an earlier run of this study; it is kept when the "
              "tables are regenerated: check it against the numbers.)_"
              if "_(The reading above" not in reading else ""]
  with open(md_path, "w") as f:
    f.write("\n".join(lines).rstrip("\n"))
    f.write(provenance.footer(record, md_path))
    if kept:
      f.write("\n" + kept)
  with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump({"soft": soft_rows, "cluster": cluster_rows}, f)


def main(argv=None):
  part = argparse.ArgumentParser(add_help=False)
  part.add_argument("--part", choices=("offline", "fashion_mnist"), default="offline")
  known, argv = part.parse_known_args(sys.argv[1:] if argv is None else argv)
  if known.part == "fashion_mnist":
    from labelwise.experiments.collision import fashion_mnist
    return fashion_mnist.main(argv)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--outdir", default=HERE)
  parser.add_argument("--workdir", default=None,
                      help="where the trainer runs go (default: a folder in the temp directory)")
  parser.add_argument("--only", choices=("soft", "cluster"), default=None)
  args = parser.parse_args(argv)
  args.soft_seeds = 2 if args.quick else 5
  args.cluster_seeds = 2 if args.quick else 10
  args.soft_steps = 5 if args.quick else 1500
  args.cluster_steps = 5 if args.quick else 400
  workdir = args.workdir or os.path.join(
      tempfile.gettempdir(), "labelwise_collision_" + ("quick" if args.quick else "full"))
  t0 = time.time()
  os.makedirs(args.outdir, exist_ok=True)
  soft_seeds, cluster_seeds = list(range(args.soft_seeds)), list(range(args.cluster_seeds))
  record = provenance.collect(
      configs={"args": {k: v for k, v in vars(args).items() if k not in ("workdir", "outdir")},
               "select": SELECT, "lr_grid": list(LR_GRID),
               "E1": {noise: {f"{model}/{loss}": soft_config(
                   noise, model, loss, seeds=soft_seeds, steps=args.soft_steps).to_dict()
                   for model in ("linear", "mlp") for loss in SOFT_LOSSES}
                   for noise in SOFT_LEVELS},
               "E2": {dataset: {label: cluster_config(dataset, method, lams, seeds=cluster_seeds,
                                                      steps=args.cluster_steps).to_dict()
                                for label, method, lams in CLUSTER_ARMS}
                      for dataset in CLUSTER_CONFIGS},
               "kmeans": "scikit-learn, n_init=3, seeds as E2"},
      seeds=range(max(args.soft_seeds, args.cluster_seeds)),
      extra={"soft_seeds": soft_seeds, "cluster_seeds": cluster_seeds})
  parts = {}
  for part, fn, seeds, steps in (("soft", run_soft, soft_seeds, args.soft_steps),
                                 ("cluster", run_cluster, cluster_seeds, args.cluster_steps)):
    path = os.path.join(args.outdir, f"results_{part}.json")
    if args.only not in (None, part):
      if os.path.exists(path):  # assemble the report from an earlier run of that part
        with open(path) as f:
          parts[part] = json.load(f)
      continue
    parts[part] = fn(seeds, steps, workdir)
    with open(path, "w") as f:
      json.dump(parts[part], f)
  if "soft" in parts and "cluster" in parts:
    md_path = os.path.join(args.outdir, "results.md")
    note = {} if args.only is None else {
        "assembled": f"only the {args.only} part was run now; the other part came from its JSON"}
    record = provenance.write(md_path, record=record, extra={"seconds": time.time() - t0, **note})
    write_markdown(parts["soft"], parts["cluster"], args, time.time() - t0, args.outdir, record)
    plot(parts["soft"], parts["cluster"], args.outdir)
  print(f"done in {time.time() - t0:.0f}s -> {args.outdir}")


if __name__ == "__main__":
  main()
