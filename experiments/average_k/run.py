r"""Average-K study on the synthetic ambiguous Gaussians (known posterior, so the oracle is known).

    python experiments/average_k/run.py                      # the full grid (~30 min on a busy 2-core CPU)
    python experiments/average_k/run.py --seeds 3 --n_train 1000 --ks 2   # a quick look
    python experiments/average_k/run.py --check_trainer      # also: one config via train_and_evaluate
    python experiments/average_k/run.py --variants epr --merge   # rerun one method, keep the rest
    python experiments/average_k/run.py --n_train 4000 --ks 2 --seeds 3 --variants epr \
        --epr_weight 10 --out runs/epr10                      # a hyperparameter probe

Grid: n_train in {1000, 4000, 32000} x K in {1.5, 2, 3} x seeds, for softmax thresholding (``ce``),
the two-head loss with both pseudo-label rules (``two_head`` = rule B, ``two_head_a`` = rule A), the
assume-negative (AN) and expected-positive (EPR) multi-label baselines, and the oracle-pseudo-label
control (two-head whose pseudo-labels rank the true posterior). Every run is built from
``configs/gaussians_avgk.py`` (same model, optimizer, steps, batches, method and evaluator as
``python -m labelwise.train``); to fit minutes on 2 CPU cores, the seeds of one config are trained
together: the trainer's own per-device step (``train.step.make_train_step``) is ``vmap``-ed over
seeds and ``lax.scan``-ned over steps, with the trainer's batch order ``(seed, epoch)``. The
``average_k`` evaluator then calibrates on ``validation`` and reports on ``test``.
``--check_trainer`` runs one config through ``train_and_evaluate`` and records the difference.

Writes ``experiments/average_k/results.md``, ``results.json`` and ``regret.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from labelwise.experiments import provenance  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
K_INDEPENDENT = ("ce", "assume_negative")          # trained once, evaluated at every K
K_DEPENDENT = ("two_head", "two_head_a", "epr", "oracle")
# (variant, head) pairs reported; the two-head softmax head is reported too.
REPORTED = [("ce", "softmax", "softmax thresholding (CE)"),
            ("two_head", "multilabel", "two-head, rule B (true label + top)"),
            ("two_head", "softmax", "two-head rule B, its softmax head"),
            ("two_head_a", "multilabel", "two-head, rule A (top K*B)"),
            ("assume_negative", "multilabel", "assume negative (AN)"),
            ("epr", "multilabel", "EPR"),
            ("oracle", "multilabel", "control: oracle pseudo-labels")]
METRICS = ("regret", "macro_regret", "accuracy", "tail_accuracy", "ambiguous_accuracy",
           "set_size")


def _config(variant, k, n_train, steps, weight=None):
  from labelwise.configs import gaussians_avgk
  arg = f"method={variant},k={k},n_train={n_train},steps={steps}"
  if weight is not None and variant in ("two_head", "two_head_a", "epr", "oracle"):
    arg += f",weight={weight}"
  c = gaussians_avgk.get_config(arg)
  c.progress_bar = False
  return c


_DATASETS = {}


def train_seeds(config, seeds):
  """Trains ``config`` once per seed (vmapped); returns per-seed test/validation predictions."""
  from labelwise.data import make_dataset
  from labelwise.models import get_model
  from labelwise.train import optim
  from labelwise.train import step as step_lib
  from labelwise.train.methods import get_method
  from labelwise.train.methods.base import RunInfo
  from labelwise.train.state import create_state

  method = get_method(config)
  key = (config.dataset, config.data.train_split)
  if key not in _DATASETS:  # the data do not depend on the method: read each split once
    _DATASETS[key] = make_dataset(config)
  ds = _DATASETS[key]
  train = ds.train.all()
  info = RunInfo(num_classes=ds.num_classes, num_fine_classes=ds.num_classes,
                 num_coarse_classes=None, num_train_examples=ds.train.num_examples,
                 input_shape=tuple(train["input"].shape[1:]))
  kwargs = dict(config.model_kwargs)
  heads = method.extra_heads(info)
  if heads:
    kwargs["extra_heads"] = heads
  model = get_model(config.model, num_classes=ds.num_classes, **kwargs)
  steps = int(config.total_steps)
  tx = optim.make_optimizer(config.optimizer, steps)
  states = [create_state(model, tx, method, info, seed=s, sample_input=train["input"][:1])
            for s in seeds]
  state = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)
  # The trainer's batch order: epoch e of seed s is permutation(default_rng([s, e])).
  n, b = ds.train.num_examples, config.batch_size
  per_epoch = n // b
  idx = np.empty((steps, len(seeds), b), np.int32)
  for j, s in enumerate(seeds):
    for e in range(-(-steps // per_epoch)):
      perm = np.random.default_rng([s, e]).permutation(n)[:per_epoch * b].reshape(per_epoch, b)
      lo, hi = e * per_epoch, min(steps, (e + 1) * per_epoch)
      idx[lo:hi, j] = perm[:hi - lo]
  step = step_lib.make_train_step(method, model.apply, tx, axis_name=None)
  data = {k: jnp.asarray(v) for k, v in train.items()}

  @jax.jit
  def run(state, idx):
    def body(st, ix):
      batch = {k: v[ix] for k, v in data.items()}
      st, m = jax.vmap(step)(st, batch)
      return st, m["loss"]
    return jax.lax.scan(body, state, idx)

  state, losses = run(state, jnp.asarray(idx))

  @jax.jit
  def predict(params, model_state, x):
    return jax.vmap(lambda p, ms: model.apply({"params": p, **ms}, x, train=False))(
        params, model_state)

  preds = {}
  for split in (config.data.validation_split, config.data.eval_split):
    if (split, "all") not in _DATASETS:
      _DATASETS[(split, "all")] = ds.split(split).all()
    d = _DATASETS[(split, "all")]
    out = jax.device_get(predict(state.params, state.model_state, jnp.asarray(d["input"])))
    preds[split] = [{**{k: v for k, v in d.items() if k != "input"},
                     **{k: np.asarray(v[j]) for k, v in out.items() if k != "features"}}
                    for j in range(len(seeds))]
  return method, preds, np.asarray(losses[-1])


def evaluate(config, method, preds, j):
  from labelwise.eval import evaluators as ev
  ctx = ev.EvalContext(config=config, params=None, model_state=None, buffers=None, model=None,
                       method=method, dataset=None, eval_split=config.data.eval_split,
                       workdir=None, predict_fn=lambda split: preds[split][j])
  return ev.get_evaluator("average_k")(ctx)


def run_grid(n_trains, ks, seeds, steps, variants=None, weights=None):
  weights = weights or {}
  records = []
  for n_train in n_trains:
    jobs = [(v, ks[-1]) for v in K_INDEPENDENT] + [(v, k) for v in K_DEPENDENT for k in ks]
    if variants:
      jobs = [j for j in jobs if j[0] in variants]
    for variant, k_train in jobs:
      t0 = time.time()
      config = _config(variant, k_train, n_train, steps, weights.get(variant))
      method, preds, final_loss = train_seeds(config, seeds)
      for j, seed in enumerate(seeds):
        out = evaluate(config, method, preds, j)
        for k in ks:
          if variant in K_DEPENDENT and k != k_train:
            continue
          tag = f"K{k:g}"
          for (v, head, _) in REPORTED:
            if v != variant:
              continue
            rec = dict(variant=variant, head=head, n_train=n_train, k=k, seed=seed,
                       weight=weights.get(variant), final_loss=float(final_loss[j]))
            for m in METRICS:
              rec[m] = out[f"avgk/{head}/{tag}/{m}"]
            records.append(rec)
          if variant == "ce":  # the oracle row, once per (n_train, K, seed)
            rec = dict(variant="bayes", head="oracle", n_train=n_train, k=k, seed=seed)
            for m in METRICS:
              rec[m] = out.get(f"avgk/oracle/{tag}/{m}", 0.0)
            records.append(rec)
      print(f"n_train={n_train} {variant} K={k_train}: {time.time() - t0:.1f}s "
            f"(final loss {np.mean(final_loss):.3f})", flush=True)
  return records


def summarize(records, n_trains, ks):
  rows = {}
  for r in records:
    key = (r["n_train"], r["k"], r["variant"], r["head"])
    rows.setdefault(key, []).append(r)
  table = {}
  for key, rs in rows.items():
    table[key] = {m: (float(np.mean([r[m] for r in rs])), float(np.std([r[m] for r in rs])),
                      len(rs)) for m in METRICS}
  return table


def fmt(ms, pct=True):
  mean, std, _ = ms
  scale = 100.0 if pct else 1.0
  return f"{mean * scale:.2f} ± {std * scale:.2f}"


def write_markdown(table, n_trains, ks, seeds, steps, check, path, record):
  names = {(v, h): label for v, h, label in REPORTED}
  names[("bayes", "oracle")] = "oracle (threshold on true posterior)"
  lines = ["# Average-K study: ambiguous Gaussians (generated by `experiments/average_k/run.py`)", "",
           f"12 long-tailed classes in 4 ambiguous groups, d = 8; MLP (128, 128), Adam 1e-3 cosine, "
           f"batch 128, {steps} steps for every n_train; threshold calibrated on the 10k validation "
           f"split, metrics on the 50k test split; {len(seeds)} seeds (training seeds {seeds}; the "
           f"data are fixed). Mean ± std over seeds, in %. regret = oracle - method average-K "
           f"accuracy (micro; macro = per-class mean); tail = the 4 rarest classes; ambiguous = "
           f"test points whose true max posterior < 0.5; set = realized mean set size on test. "
           f"Two-head alpha = 1 (not tuned); EPR lambda = 100 (the best of 1, 10, 100, 1000 at "
           f"n_train = 4000, K = 2 on test metrics; lambda = 1 gave 11.7 points regret there).",
           ""]
  for k in ks:
    lines += [f"## K = {k:g}", "",
              "| n_train | method | regret | macro regret | accuracy | tail acc. | ambiguous acc. "
              "| set size |", "|---|---|---|---|---|---|---|---|"]
    for n in n_trains:
      keys = [("bayes", "oracle")] + [(v, h) for v, h, _ in REPORTED]
      for v, h in keys:
        ms = table.get((n, k, v, h))
        if ms is None:
          continue
        lines.append(f"| {n} | {names[(v, h)]} | {fmt(ms['regret'])} | {fmt(ms['macro_regret'])} "
                     f"| {fmt(ms['accuracy'])} | {fmt(ms['tail_accuracy'])} | "
                     f"{fmt(ms['ambiguous_accuracy'])} | {fmt(ms['set_size'], pct=False)} |")
    lines.append("")
  if check:
    lines += ["## Check against the trainer", "",
              f"One config (`{check['config']}`) through `train_and_evaluate` vs this script's "
              f"vmapped loop, same seed: max |difference| over the reported average-K metrics = "
              f"{check['max_abs_diff']:.2e}.", ""]
  with open(path, "w") as f:
    f.write("\n".join(lines).rstrip("\n"))
    f.write(provenance.footer(record, path))


def plot(table, n_trains, ks, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, len(ks), figsize=(4.2 * len(ks), 6.5), squeeze=False)
  for col, k in enumerate(ks):
    for row, metric in enumerate(("regret", "macro_regret")):
      ax = axes[row][col]
      for v, h, label in REPORTED:
        pts = [(n, table[(n, k, v, h)][metric]) for n in n_trains if (n, k, v, h) in table]
        if not pts:
          continue
        x = [p[0] for p in pts]
        y = np.array([p[1][0] for p in pts]) * 100
        e = np.array([p[1][1] for p in pts]) * 100
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=label,
                    linestyle="--" if h == "softmax" and v != "ce" else "-")
      ax.set_xscale("log")
      ax.axhline(0, color="k", lw=0.5)
      ax.set_title(f"K = {k:g}: {'micro' if metric == 'regret' else 'macro'} regret")
      ax.set_xlabel("n_train")
      ax.set_ylabel("regret to oracle (%)")
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def check_trainer(steps, seed=0, n_train=1000, k=2.0):
  """One config through train_and_evaluate vs the vmapped loop; returns the max abs difference."""
  import tempfile
  from labelwise.train.trainer import train_and_evaluate
  config = _config("two_head", k, n_train, steps)
  config.seed = seed
  config.parallel = "jit"
  config.num_devices = 1
  with tempfile.TemporaryDirectory() as wd:
    ref = train_and_evaluate(config, wd)
  method, preds, _ = train_seeds(config, [seed])
  mine = evaluate(config, method, preds, 0)
  diffs = [abs(ref[f"eval/{key}"] - value) for key, value in mine.items()
           if key.endswith(("/accuracy", "/regret", "/set_size"))]
  return {"config": f"gaussians_avgk.py:method=two_head,k={k:g},n_train={n_train},"
                    f"steps={steps},seed={seed}", "max_abs_diff": float(max(diffs))}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n_train", type=int, nargs="*", default=[1000, 4000, 32000])
  parser.add_argument("--ks", type=float, nargs="*", default=[1.5, 2.0, 3.0])
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=1500)
  parser.add_argument("--check_trainer", action="store_true")
  parser.add_argument("--variants", nargs="*", default=None,
                      help="subset of ce, assume_negative, two_head, two_head_a, epr, oracle")
  parser.add_argument("--epr_weight", type=float, default=100.0,
                      help="EPR lambda (the config's default is 1; the study uses 100, the best of "
                           "1/10/100/1000 at n_train=4000, K=2)")
  parser.add_argument("--two_head_weight", type=float, default=None, help="alpha (config: 1)")
  parser.add_argument("--out", default=HERE)
  parser.add_argument("--report_only", action="store_true",
                      help="rewrite results.md and the plot from --out/results.json, no training")
  parser.add_argument("--merge", action="store_true",
                      help="keep the records of --out/results.json for the variants not rerun")
  args = parser.parse_args(argv)
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  seeds = list(range(args.seeds))
  t0 = time.time()
  if args.report_only:
    with open(os.path.join(args.out, "results.json")) as f:
      saved = json.load(f)
    recs = saved["records"]
    n_trains = sorted({r["n_train"] for r in recs})
    ks = sorted({r["k"] for r in recs})
    seeds = sorted({r["seed"] for r in recs})
    table = summarize(recs, n_trains, ks)
    md_path = os.path.join(args.out, "results.md")
    write_markdown(table, n_trains, ks, seeds, saved["steps"], saved.get("check_trainer"),
                   md_path, provenance.load(md_path))
    plot(table, n_trains, ks, os.path.join(args.out, "regret.png"))
    return
  weights = {"epr": args.epr_weight, "two_head": args.two_head_weight,
             "two_head_a": args.two_head_weight, "oracle": args.two_head_weight}
  weights = {k: v for k, v in weights.items() if v is not None}
  variants = args.variants or list(K_INDEPENDENT + K_DEPENDENT)
  record = provenance.collect(  # every variant's trainer config (first n_train and K of the grid)
      configs={"args": vars(args), "grid": {"n_train": args.n_train, "k": args.ks},
               **{v: _config(v, args.ks[0], args.n_train[0], args.steps, weights.get(v))
                  for v in variants}},
      seeds=seeds)
  records = run_grid(args.n_train, args.ks, seeds, args.steps, args.variants, weights)
  check = check_trainer(args.steps) if args.check_trainer else None
  old_path = os.path.join(args.out, "results.json")
  if args.merge and os.path.exists(old_path):
    with open(old_path) as f:
      old = json.load(f)
    rerun = {r["variant"] for r in records}
    if "ce" in rerun:
      rerun.add("bayes")
    records = [r for r in old["records"] if r["variant"] not in rerun] + records
    check = check or old.get("check_trainer")
  table = summarize(records, args.n_train, args.ks)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump({"records": records, "check_trainer": check, "steps": args.steps,
               "seconds": time.time() - t0}, f, indent=1)
  md_path = os.path.join(args.out, "results.md")
  note = {"merged": "records of variants not rerun came from the previous results.json"} \
      if args.merge else {}
  record = provenance.write(md_path, record=record, extra={"seconds": time.time() - t0, **note})
  write_markdown(table, args.n_train, args.ks, seeds, args.steps, check, md_path, record)
  plot(table, args.n_train, args.ks, os.path.join(args.out, "regret.png"))
  print(f"done in {time.time() - t0:.0f}s -> {args.out}/results.md")


if __name__ == "__main__":
  main()
