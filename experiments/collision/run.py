r"""Offline study of collision cross-entropy (Zhang & Boykov, arXiv 2303.07321).

    python experiments/collision/run.py               # full study (minutes on 2 CPU cores)
    python experiments/collision/run.py --quick       # 2 seeds, short runs (smoke test)

E1  soft targets on digits (1437 train / 359 test): linear and MLP(128), Shannon soft CE vs collision
    CE, two noise models made from the clean labels (``noisy_soft_targets``): "mix"
    t = (1 - eta) onehot + eta Dirichlet(1) with eta in {0, .5, .8, .9}, and "flat" a fraction rho in
    {.3, .5, .8} of the targets replaced by a Dirichlet(1) draw. 5 seeds (the noise draw changes with
    the seed). Test accuracy on the clean labels.
E2  self-labeled clustering, K = 10, on all 1797 digits and all 5000 MNIST-1D signals: collision CE
    with EM pseudo-labels (fairness weight lambda = 1 and 3), Shannon self-labeling (MM
    pseudo-labels, lambda = 3), the MI loss, and k-means on the same inputs; 10 seeds; ACC
    (Hungarian) / NMI / ARI with 95% t-intervals.

To keep the study within minutes on shared CPUs the seeds of one configuration are trained together
with ``jax.vmap`` in a compact loop that calls the library's pure pieces (the losses, the EM solvers,
the noise model, the clustering metrics) exactly as the registered methods do; the trainer-based
methods are covered by tests/test_collision_train.py and the configs. Writes
``experiments/collision/results.md`` and ``results_soft.png`` / ``results_cluster.png`` (the
"Reading" section of the committed results.md was written by hand after the run). ``--only soft`` /
``--only cluster`` run one part and assemble the report with the other part's saved JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from labelwise import losses  # noqa: E402
from labelwise.eval import metrics  # noqa: E402
from labelwise.experiments import provenance  # noqa: E402
from labelwise.train.methods.collision import noisy_soft_targets  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# Pseudo-label solver budget per training batch in E2 (kept small for 2 shared CPU cores; the seeds
# are vmapped, so every batch runs until the slowest seed stops).
EM_MAX_ITER = 100


# ----------------------------------------------------------------------------------------------------
# Data (through the project's TFDS builders)
# ----------------------------------------------------------------------------------------------------


def load_split(name: str, split: str):
  from labelwise.data import registry
  import labelwise.data  # noqa: F401  (registers the datasets)
  from labelwise.data.pipeline import SplitData, default_data_dir
  d = SplitData(registry.get_dataset_spec(name), split, default_data_dir()).all()
  x = d["input"].reshape(len(d["input"]), -1).astype(np.float32)
  return x, d["label"].astype(np.int32)


# ----------------------------------------------------------------------------------------------------
# A tiny MLP as a pure function (so that seeds can be vmapped)
# ----------------------------------------------------------------------------------------------------


def init_mlp(key, sizes):
  params = []
  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    key, k = jax.random.split(key)
    params.append({"w": jax.random.normal(k, (a, b)) * jnp.sqrt(1.0 / a), "b": jnp.zeros((b,))})
  return params


def apply_mlp(params, x):
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def t_interval(values):
  from scipy import stats
  v = np.asarray(values, np.float64)
  if len(v) < 2:
    return float(v.mean()), 0.0, 0.0
  half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
  return float(v.mean()), float(v.std(ddof=1)), float(half)


# ----------------------------------------------------------------------------------------------------
# E1: soft targets
# ----------------------------------------------------------------------------------------------------


def soft_loss(name):
  if name == "collision":
    return losses.collision_cross_entropy
  return losses.softmax_cross_entropy_with_targets


@functools.partial(jax.jit, static_argnames=("loss_name", "hidden", "steps", "batch"))
def train_soft(keys, targets, x, *, loss_name, hidden, steps, batch, lr=1e-3):
  """vmapped over seeds: keys [S], targets [S, N, K]; returns the trained params."""
  n, d = x.shape
  k = targets.shape[-1]
  sizes = (d,) + hidden + (k,)
  tx = optax.adam(lr)
  loss_fn = soft_loss(loss_name)

  def one(key, t):
    init_key, data_key = jax.random.split(key)
    params = init_mlp(init_key, sizes)
    opt = tx.init(params)

    def step(i, carry):
      params, opt = carry
      idx = jax.random.choice(jax.random.fold_in(data_key, i), n, (batch,), replace=False)
      g = jax.grad(lambda p: jnp.mean(loss_fn(apply_mlp(p, x[idx]), t[idx])))(params)
      updates, opt = tx.update(g, opt, params)
      return optax.apply_updates(params, updates), opt

    params, _ = jax.lax.fori_loop(0, steps, step, (params, opt))
    return params

  return jax.vmap(one)(keys, targets)


def run_soft(seeds, steps):
  x_tr, y_tr = load_split("digits", "train")
  x_te, y_te = load_split("digits", "test")
  idx = jnp.arange(len(y_tr))
  settings = [("mix", e) for e in (0.0, 0.5, 0.8, 0.9)] + [("flat", r) for r in (0.3, 0.5, 0.8)]
  rows = []
  for noise, level in settings:
    targets = jnp.stack([noisy_soft_targets(jnp.asarray(y_tr), idx, num_classes=10, noise=noise,
                                            level=level, seed=1000 + s) for s in seeds])
    for model, hidden in (("linear", ()), ("mlp", (128,))):
      for loss_name in ("shannon", "collision"):
        t0 = time.time()
        keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
        params = train_soft(keys, targets, jnp.asarray(x_tr), loss_name=loss_name, hidden=hidden,
                            steps=steps, batch=64)
        logits = jax.vmap(apply_mlp, in_axes=(0, None))(params, jnp.asarray(x_te))
        accs = np.asarray(jnp.mean(jnp.argmax(logits, -1) == y_te[None], axis=-1))
        rows.append(dict(noise=noise, level=level, model=model, loss=loss_name,
                         acc=accs.tolist()))
        print(f"E1 {noise} {level} {model} {loss_name}: {accs.mean():.3f} +- {accs.std():.3f} "
              f"({time.time() - t0:.1f}s)", flush=True)
  return rows


# ----------------------------------------------------------------------------------------------------
# E2: clustering
# ----------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("method", "hidden", "steps", "batch", "k"))
def train_cluster(keys, x, *, method, hidden, steps, batch, k, lam=1.0, lr=1e-3, wd=1e-4):
  """vmapped over seeds; returns params and the mean EM iteration count."""
  n, d = x.shape
  sizes = (d,) + hidden + (k,)
  tx = optax.adamw(lr, weight_decay=wd)

  def batch_loss(params, xb):
    logits = apply_mlp(params, xb)
    if method == "mi":
      return losses.mutual_information_loss(logits), jnp.zeros((), jnp.int32)
    probs = jax.lax.stop_gradient(jax.nn.softmax(logits, -1))
    if method == "collision":
      y, it = losses.collision_pseudo_labels(probs, fairness_weight=lam, tol=1e-5,
                                             max_iter=EM_MAX_ITER)
      return jnp.mean(losses.collision_cross_entropy(logits, jax.lax.stop_gradient(y))), it
    y, it = losses.shannon_pseudo_labels(probs, fairness_weight=lam, tol=1e-5,
                                         max_iter=EM_MAX_ITER, bisection_steps=24)
    return jnp.mean(losses.softmax_cross_entropy_with_targets(logits, jax.lax.stop_gradient(y))), it

  def one(key):
    init_key, data_key = jax.random.split(key)
    params = init_mlp(init_key, sizes)
    opt = tx.init(params)

    def step(i, carry):
      params, opt, iters = carry
      idx = jax.random.choice(jax.random.fold_in(data_key, i), n, (batch,), replace=False)
      (_, it), g = jax.value_and_grad(batch_loss, has_aux=True)(params, x[idx])
      updates, opt = tx.update(g, opt, params)
      return optax.apply_updates(params, updates), opt, iters + it

    params, _, iters = jax.lax.fori_loop(0, steps, step, (params, opt, jnp.zeros((), jnp.int32)))
    return params, iters / steps

  return jax.vmap(one)(keys)


def run_cluster(seeds, steps):
  rows = []
  for dataset in ("digits", "mnist1d"):
    xa, ya = load_split(dataset, "train+test")
    x = (xa - xa.mean(0)) / (xa.std(0) + 1e-6) if dataset == "mnist1d" else xa
    for method, lam in (("collision", 1.0), ("collision", 3.0), ("shannon", 3.0), ("mi", 1.0)):
      t0 = time.time()
      keys = jnp.stack([jax.random.PRNGKey(100 + s) for s in seeds])
      params, iters = train_cluster(keys, jnp.asarray(x), method=method, hidden=(256,),
                                    steps=steps, batch=256, k=10, lam=lam)
      logits = jax.vmap(apply_mlp, in_axes=(0, None))(params, jnp.asarray(x))
      clusters = np.asarray(jnp.argmax(logits, -1))
      res = [metrics.clustering_metrics(ya, c) for c in clusters]
      method = method if method == "mi" else f"{method} (lambda={lam:g})"
      rows.append(dict(dataset=dataset, method=method,
                       acc=[r["cluster_accuracy"] for r in res], nmi=[r["nmi"] for r in res],
                       ari=[r["ari"] for r in res], em_iterations=np.asarray(iters).tolist()))
      print(f"E2 {dataset} {method}: acc {np.mean(rows[-1]['acc']):.3f} nmi "
            f"{np.mean(rows[-1]['nmi']):.3f} ari {np.mean(rows[-1]['ari']):.3f} "
            f"em_iter {np.mean(iters):.1f} ({time.time() - t0:.1f}s)", flush=True)
    t0 = time.time()
    res = [metrics.clustering_metrics(ya, metrics.kmeans_clusters(x, 10, seed=s, n_init=3))
           for s in seeds]
    rows.append(dict(dataset=dataset, method="kmeans", acc=[r["cluster_accuracy"] for r in res],
                     nmi=[r["nmi"] for r in res], ari=[r["ari"] for r in res], em_iterations=[]))
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


def write_markdown(soft_rows, cluster_rows, args, seconds, outdir, record):
  lines = ["# Collision cross-entropy: offline study", "",
           f"Generated by `python experiments/collision/run.py{' --quick' if args.quick else ''}` "
           f"on CPU. Seeds: E1 {args.soft_seeds}, E2 {args.cluster_seeds}; "
           f"steps: E1 {args.soft_steps} (batch 64, Adam 1e-3), E2 {args.cluster_steps} "
           "(batch 256, AdamW 1e-3, wd 1e-4, MLP 256, strong fairness KL(u || ybar) with weight lambda; EM tol 1e-5, at most 100 iterations per batch (Shannon: 24 bisection steps); k-means: scikit-learn, n_init=3, on the same inputs).", "",
           "## E1: soft targets on digits (clean test accuracy, mean ± std over seeds)", "",
           "| noise | level | model | Shannon soft CE | collision CE | difference (coll. - Shannon) |",
           "|---|---|---|---|---|---|"]
  for noise in ("mix", "flat"):
    for level in sorted({r["level"] for r in soft_rows if r["noise"] == noise}):
      for model in ("linear", "mlp"):
        get = lambda loss: [r for r in soft_rows if r["noise"] == noise and r["level"] == level
                            and r["model"] == model and r["loss"] == loss][0]["acc"]
        sh, co = get("shannon"), get("collision")
        lines.append(f"| {noise} | {level} | {model} | {fmt(sh)} | {fmt(co)} | "
                     f"{fmt_ci(np.asarray(co) - np.asarray(sh))} |")
  lines += ["", "The difference column is the paired (same seed, same noise draw) difference with a "
            "95% t-interval.", "",
            "![E1](results_soft.png)", "",
            "## E2: self-labeled clustering, K = 10 (mean [95% t-interval] over seeds)", "",
            "| dataset | method | ACC | NMI | ARI | mean EM iterations / step |",
            "|---|---|---|---|---|---|"]
  for r in cluster_rows:
    it = f"{np.mean(r['em_iterations']):.1f}" if r["em_iterations"] and r["method"].startswith(
        ("collision", "shannon")) else "-"
    lines.append(f"| {r['dataset']} | {r['method']} | {fmt_ci(r['acc'])} | {fmt_ci(r['nmi'])} | "
                 f"{fmt_ci(r['ari'])} | {it} |")
  lines += ["", "![E2](results_cluster.png)", ""]
  md_path = os.path.join(outdir, "results.md")
  reading = hand_written_section(md_path)
  if reading:
    lines += [reading, "",
              "_(The reading above was written for an earlier run of this study; it is kept when the "
              "tables are regenerated: check it against the numbers.)_"
              if "_(The reading above" not in reading else ""]
  with open(md_path, "w") as f:
    f.write("\n".join(lines).rstrip("\n"))
    f.write(provenance.footer(record, md_path))
  with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump({"soft": soft_rows, "cluster": cluster_rows}, f)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--outdir", default=HERE)
  parser.add_argument("--only", choices=("soft", "cluster"), default=None)
  args = parser.parse_args(argv)
  args.soft_seeds = 2 if args.quick else 5
  args.cluster_seeds = 2 if args.quick else 10
  args.soft_steps = 200 if args.quick else 1500
  args.cluster_steps = 100 if args.quick else 400
  t0 = time.time()
  os.makedirs(args.outdir, exist_ok=True)
  record = provenance.collect(
      configs={"args": vars(args), "em": {"tol": 1e-5, "max_iter": EM_MAX_ITER},
               "E1": {"dataset": "digits", "batch": 64, "optimizer": "adam 1e-3",
                      "models": {"linear": [], "mlp": [128]}, "noise_seeds": "1000 + seed",
                      "settings": {"mix": [0.0, 0.5, 0.8, 0.9], "flat": [0.3, 0.5, 0.8]}},
               "E2": {"datasets": ["digits", "mnist1d"], "k": 10, "batch": 256, "hidden": 256,
                      "optimizer": "adamw 1e-3, weight decay 1e-4",
                      "arms": ["collision lambda=1", "collision lambda=3", "shannon lambda=3",
                               "mi", "kmeans (n_init=3)"]}},
      seeds=range(max(args.soft_seeds, args.cluster_seeds)),
      extra={"soft_seeds": list(range(args.soft_seeds)),
             "cluster_seeds": list(range(args.cluster_seeds))})
  parts = {}
  for part, fn, seeds, steps in (("soft", run_soft, args.soft_seeds, args.soft_steps),
                                 ("cluster", run_cluster, args.cluster_seeds, args.cluster_steps)):
    path = os.path.join(args.outdir, f"results_{part}.json")
    if args.only not in (None, part):
      if os.path.exists(path):  # assemble the report from an earlier run of that part
        with open(path) as f:
          parts[part] = json.load(f)
      continue
    parts[part] = fn(list(range(seeds)), steps)
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
