r"""Offline study: does controlling feature attribution with masks fix a spurious shortcut?

Viviano et al. 2019 ("Underwhelming Generalization Improvements From Controlling Feature
Attribution" / "Saliency is a Possible Red Herring...") on the procedural ``crosses`` dataset: a
left/right distractor block perfectly correlated with the label in training and anti-correlated in
``test_shift``.

    python experiments/attribution/run.py                  # the committed study (5 seeds)
    python experiments/attribution/run.py --smoke --out runs/attr_smoke --workdir runs/attr_smoke
                                                           # CE and ActDiff, 2 points, 2 seeds
    python experiments/attribution/run.py --render         # re-render results.md from results.json
    python experiments/attribution/run.py --edge_check     # train one step beyond the grid ends
                                  # that were chosen (outside the budget; results.json edge_check)
    python experiments/attribution/run.py --edge_check --edge_steps 5 --only rrr
                                  # walk on: up to 5 steps, until the choice is inside
    python experiments/attribution/run.py --part fashion_mnist   # the Fashion-MNIST part (its own
                                  # options: experiments/attribution/fashion_mnist.py, --help)

Every model is trained by the trainer (``labelwise.train.trainer.train_and_evaluate``) from
``configs/crosses_attribution.py``; this script only declares the arms, their grids and seeds,
reads the results and writes results.md, results.json, runs.json, scatter.png and
saliency_grid.png. Every arm is ONE trainer sweep (``experiments/tuning.py``: its grid points x
seeds as replicas of one compiled program) with the SAME budget of 6 grid points:

* CE and classify-masked: learning rate {3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3};
* ActDiff, GradMask, RRR: lambda (3 values, below) x learning rate {1e-3, 3e-3}.

Lambda grids, in labelwise's units (every penalty is a mean per masked example: per-example sums
over pixels for GradMask/RRR, the per-example L2 distance for ActDiff). The authors' code sums
GradMask and RRR over the batch (so their lambda times the batch size is ours) and averages ActDiff
over the batch but never multiplies it by lambda (method sheet; ``docs/attribution.md``):

* ActDiff {0.1, 0.3, 1}: the authors' effective lambda is 1 (their configs set 0.115, which the
  code does not apply); both readings are grid points.
* GradMask {0.1, 1, 10}: the authors' 0.203 summed over a batch of 16 is 3.2 here (their
  ``synth-seeds`` config: 0.17 over a batch of 32, 5.4 here); both lie inside the grid's span.
* RRR {10, 100, 1000}: the authors' ``synth-seeds`` config has 10 summed over a batch of 32, 320
  here, inside the span.

Each grid also keeps the two lambdas of the previous study at its learning rate 1e-3, so the old
numbers can be compared cell by cell (``runs_before_issue14.json``).

Choice: every arm's point is the one with the lowest mean validation cross-entropy
(``val/loss:min``) over seeds on ``valid_id``, the dataset's in-distribution validation split (128
images, distractor correlated with the label as in training). Accuracy there saturates at 1.0 for
every model that learned either the crosses or the shortcut, so ties would be broken by grid order;
the loss is continuous. The authors chose on a SHIFTED validation set, which tells the selection
where the shortcut breaks and so leaks the test shift; results.md also shows what that choice
(``valid_shift`` AUC, a split disjoint from ``test_shift``) would have picked, clearly labelled.
The test splits never take part in the main choice. The masked-fraction arms (ActDiff at masked
fraction 0.5, 0.25, 0) train at the chosen ActDiff point (its lambda and learning rate).

Beyond the grid ends (``--edge_check``, OUTSIDE the budget): for every arm whose chosen point lies
at an end of its grid in some key, the point one step beyond that end (:func:`beyond`: the end
times the grid's own spacing ratio, on the 1-2-3-5 ladder), each such key moved alone and then all
of them together (:func:`edge_points`), is trained with the same seeds and steps, one sweep of the
seeds per point (``conv_impl`` from :data:`EDGE_CONV_IMPL`: "patches" for GradMask and RRR).
Validation only says whether it would have been chosen; results.md reports its test numbers next
to the chosen point's; the main table and findings keep the equal-budget choice. ``--edge_steps N``
walks on: step s starts from the validation choice over the grid and the beyond points of steps
before s (:func:`extended_result`) and trains the points beyond its ends by the same rule; an arm
stops as soon as that choice is inside the extended grid in every key, or when its beyond points
were all trained and do not move it (a beyond point that hits the trainer's non-finite guard is
stored as diverged and does not extend the grid). The walk is recorded in ``edge_check[arm]["walk"]``;
every beyond point keeps its ``step`` and the choice it started ``from``.

Saliency (|dz_y/dx| and integrated gradients, top-k with k = mask area) is computed once per model
by the trainer's ``attribution`` evaluator (jitted once for all replicas); the saliency grid reads
the maps the evaluator saved for the chosen point's first seed.
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
LR = "optimizer.learning_rate"
LR_ONLY = (3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3)
LR_PENALTY = (1e-3, 3e-3)
# arm -> (config argument, grid); every grid has 6 points.
ARMS = {
    "ce": ("method=ce", {LR: LR_ONLY}),
    "classify_masked": ("method=classify_masked", {LR: LR_ONLY}),
    "actdiff": ("method=actdiff", {"actdiff.lam": (0.1, 0.3, 1.0), LR: LR_PENALTY}),
    "gradmask": ("method=gradmask", {"gradmask.lam": (0.1, 1.0, 10.0), LR: LR_PENALTY}),
    "rrr": ("method=rrr", {"rrr.lam": (10.0, 100.0, 1000.0), LR: LR_PENALTY}),
}
# Convolution implementation per arm (``config.conv_impl``; default "auto"). RRR's sweep runs with
# "patches" (the convolution as one matrix product; models/conv.py): under the sweep's vmap over 30
# replicas XLA:CPU's grouped convolutions made one double-backprop step ~15x slower per replica
# than a single run; "patches" is ~5x faster there and equal up to float32 summation order
# (bench.md, "Why vmapped double-backprop sweeps are slow"). The arms trained before this finding
# (GradMask included) ran with "auto"; their configs stay as they ran.
CONV_IMPL = {"rrr": "patches"}
SMOKE_ARMS = {
    "ce": ("method=ce", {LR: (1e-3, 3e-3)}),
    "actdiff": ("method=actdiff", {"actdiff.lam": (0.1, 1.0)}),
}
FRACTIONS = (0.5, 0.25, 0.0)
SELECT = "val/loss:min"
VALIDATION = "valid_id"
AUTHORS_SELECT = "eval/valid_shift/auc:max"   # the authors' protocol: a shifted validation split
# The authors' lambdas converted to labelwise's units (see the module docstring).
AUTHORS_LAMBDA = {"actdiff": "1 (effective; config 0.115 not applied)",
                  "gradmask": "3.2 (0.203 x batch 16); 5.4 (0.17 x batch 32)",
                  "rrr": "320 (10 x batch 32)"}

# Viviano et al. 2019, synthetic dataset, 10 seeds, shifted-test AUC and input-gradient IoU
# (models selected on a shifted validation set).
PAPER_AUC = {"ce": 0.00, "classify_masked": 0.99, "actdiff": 1.00, "gradmask": 0.76, "rrr": 0.49,
             "adversarial": 0.92}
PAPER_IOU = {"ce": 0.07, "actdiff": 0.40, "gradmask": 0.46, "rrr": 0.08}

KEYS = ["valid_id/auc", "valid_shift/auc", "test_id/accuracy", "test_id/auc",
        "test_shift/accuracy", "test_shift/auc", "test_nodistractor/accuracy",
        "test_nodistractor/auc", "saliency/grad_iou", "saliency/grad_iop", "saliency/grad_mass",
        "saliency/ig_iou", "saliency/ig_mass"]
SALIENCY_NPZ = "saliency_test_shift.npz"


def make_config(arg: str, *, steps: int, smoke: bool = False, conv_impl: str = "auto"):
  from labelwise.configs import crosses_attribution
  c = crosses_attribution.get_config(arg)
  c.total_steps = steps
  c.conv_impl = conv_impl
  c.parallel = "jit"
  c.num_devices = 1
  c.progress_bar = False
  c.tensorboard = False
  c.checkpoint_every = -1
  c.log_every = max(1, steps // 4)
  c.attribution_eval.ig_steps = 2 if smoke else 8
  c.attribution_eval.picture_examples = 6
  c.attribution_eval.save_png = False   # the maps go to an npz; the study draws one grid
  if smoke:
    c.attribution_eval.max_examples = 16
  return c


def _study_file(workdir):
  path = os.path.join(workdir, tuning.STUDY_FILE)
  return os.path.getmtime(path) if os.path.exists(path) else None


def finished(arm, workdir, seeds) -> bool:
  """Whether ``workdir`` holds the finished sweep of exactly this arm (``tuning.run_arm`` would
  read it back instead of training)."""
  path = os.path.join(workdir, tuning.STUDY_FILE)
  if not os.path.exists(path):
    return False
  sweepable, structural = tuning.split_grid(arm.config, arm.grid)
  if structural:
    return False
  config = tuning._sweep_config(arm, {}, sweepable, seeds, SELECT)
  with open(path) as f:
    return json.load(f).get("config") == config.to_json_best_effort(sort_keys=True)


def fraction_arm(actdiff, result, *, smoke=False):
  """The masked-fraction arm: ``actdiff``'s config at its chosen point (``result``, None: not
  trained yet, then None), the grid the masked fractions."""
  if result is None:
    return None
  config = actdiff.config.copy_and_resolve_references()
  for k, v in result["selected"]["point"].items():
    tuning.set_dotted(config, k, v)
  fracs = FRACTIONS[:1] if smoke else FRACTIONS
  return tuning.Arm("actdiff fractions", config, {"actdiff.mask_fraction": fracs}, VALIDATION)


def run_one_arm(arm, workdir, seeds):
  """``tuning.run_arm`` plus the arm's wall time, median train examples/s (per replica) and
  whether its finished sweep was read back instead of trained."""
  before = _study_file(workdir)
  t0 = time.time()
  res = tuning.run_arm(arm, workdir, seeds=seeds, select=SELECT)
  res["wall_s"] = time.time() - t0
  res["reused"] = before is not None and before == _study_file(workdir)
  eps = []
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        m = json.loads(line)
        if "train/examples_per_sec" in m and m.get("step", 0) > arm.config.log_every:
          eps.append(m["train/examples_per_sec"])
  res["examples_per_sec"] = float(np.median(eps)) if eps else float("nan")
  res["workdir"] = workdir
  # the arm's own training + evaluation time, also for an arm read back: from the trainer's
  # config.json (written at the start) to the finished sweep's study.json
  start, end = (os.path.join(workdir, f) for f in ("config.json", tuning.STUDY_FILE))
  res["train_wall_s"] = (os.path.getmtime(end) - os.path.getmtime(start)
                         if os.path.exists(start) and os.path.exists(end) else res["wall_s"])
  res["grid"] = {k: list(v) for k, v in arm.grid.items()}
  return res


def main(argv=None):
  part = argparse.ArgumentParser(add_help=False)
  part.add_argument("--part", choices=("offline", "fashion_mnist"), default="offline")
  known, argv = part.parse_known_args(sys.argv[1:] if argv is None else argv)
  if known.part == "fashion_mnist":
    from labelwise.experiments.attribution import fashion_mnist
    return fashion_mnist.main(argv)
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--seeds", type=int, default=5)
  ap.add_argument("--steps", type=int, default=200)
  ap.add_argument("--smoke", action="store_true",
                  help="CE and ActDiff, 2 grid points, 2 seeds, 4 steps (seconds; used by a test)")
  ap.add_argument("--only", nargs="*", default=None,
                  help="arm names to run (of ce, classify_masked, actdiff, gradmask, rrr); the "
                       "masked-fraction arms run with actdiff. With an existing "
                       "--out/results.json, that file is updated in place: only these arms are "
                       "trained (or read back from --workdir), every other arm keeps its stored "
                       "results (marked as kept, with the provenance of the run they came from)")
  ap.add_argument("--workdir", default="runs/attribution_study", help="trainer runs (reused)")
  ap.add_argument("--out", default=HERE)
  ap.add_argument("--finished_only", action="store_true",
                  help="train nothing: report the arms whose sweep already finished in --workdir "
                       "and list the others as not run (a partial report while runs go on)")
  ap.add_argument("--edge_check", action="store_true",
                  help="train nothing of the main study: for every arm in --out/results.json whose "
                       "chosen point lies at a grid end, train the points one step beyond that "
                       "end (EDGE_MOVES, the same seeds and steps, outside the budget) and add "
                       "them to results.json under `edge_check`; with --only, those arms in that "
                       "order. Arms already checked are kept; results.json and results.md are "
                       "rewritten after every beyond point")
  ap.add_argument("--edge_steps", type=int, default=1,
                  help="with --edge_check: walk up to this many steps; step s starts from the "
                       "validation choice over the grid and the beyond points of steps < s and "
                       "trains the points beyond its ends; an arm stops as soon as that choice "
                       "is inside the extended grid in every key (outside the budget)")
  ap.add_argument("--render", action="store_true",
                  help="only re-render results.md and the plots from --out/results.json")
  args = ap.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  if args.render:
    with open(os.path.join(args.out, "results.json")) as f:
      res = json.load(f)
    record = provenance.load(os.path.join(args.out, "results.md"))
    write_report(res, args.out, record)
    return res
  if args.edge_steps < 1:
    raise ValueError(f"--edge_steps must be >= 1, got {args.edge_steps}.")
  if args.edge_check:
    return edge_check(args)
  if args.smoke:
    args.seeds, args.steps = 2, 4
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  t0 = time.time()
  tuning.use_compilation_cache(args.workdir)
  spec = SMOKE_ARMS if args.smoke else ARMS
  full_spec = spec
  previous = None
  if args.only is not None:
    unknown = sorted(set(args.only) - set(spec))
    if unknown:
      raise ValueError(f"--only: unknown arms {unknown}; arms: {sorted(spec)}.")
    spec = {a: v for a, v in spec.items() if a in args.only}
    previous = load_previous(args.out, args)
  arms = {name: tuning.Arm(name, make_config(arg, steps=args.steps, smoke=args.smoke,
                                             conv_impl=CONV_IMPL.get(name, "auto")), grid,
                           VALIDATION)
          for name, (arg, grid) in spec.items()}
  seeds = list(range(args.seeds))
  record = provenance.collect(
      configs={"args": vars(args), "select": SELECT, "validation": VALIDATION,
               "fractions": FRACTIONS, "arms": {a: arm.record() for a, arm in arms.items()}},
      seeds=seeds)
  res = {"config": {k: v for k, v in vars(args).items() if k not in ("out", "workdir", "render")},
         "select": SELECT, "validation": VALIDATION, "arms": {}, "fractions": {}}
  res["not_run"] = []
  for name, arm in arms.items():
    if args.finished_only and not finished(arm, os.path.join(args.workdir, name), seeds):
      res["not_run"].append(name)
      continue
    r = run_one_arm(arm, os.path.join(args.workdir, name), seeds)
    res["arms"][name] = r
    _print(name, r, t0)
  if "actdiff" in arms:
    # The masked-fraction arms: ActDiff at its chosen point, a share of the images with a mask.
    fr = fraction_arm(arms["actdiff"], res["arms"].get("actdiff"), smoke=args.smoke)
    fr_dir = os.path.join(args.workdir, "actdiff_fractions")
    if fr is None or (args.finished_only and not finished(fr, fr_dir, seeds)):
      res["not_run"].append("actdiff fractions")
    else:
      record["configs"]["arms"]["actdiff fractions"] = fr.record()
      r = run_one_arm(fr, fr_dir, seeds)
      r["base_point"] = res["arms"]["actdiff"]["selected"]["point"]
      res["fractions"] = r
      print(f"actdiff fractions {fr.grid['actdiff.mask_fraction']} at "
            f"{tuning.point_label(r['base_point'])} ({time.time() - t0:.0f}s)", flush=True)
  res["seconds"] = time.time() - t0
  if previous is not None:
    res = merge_previous(res, previous, order=list(full_spec))
    for a in res["kept"]:
      if a in previous["record"].get("configs", {}).get("arms", {}):
        record["configs"]["arms"][a] = previous["record"]["configs"]["arms"][a]
  res["reused"] = [a for a, r in all_arms(res)   # read back in this run (kept arms: see "kept")
                   if r.get("reused") and a not in (res.get("kept") or {})]
  res["grid_maps"] = {**(res.get("grid_maps") or {}), **grid_maps(res, skip=res.get("kept"))}
  with open(os.path.join(args.out, "results.json"), "w") as f:
    # machine paths (the workdir, the saliency maps) recorded portably (<repo>, <tmp>, ~)
    f.write(provenance.portable(json.dumps(res, indent=1)))
  with open(os.path.join(args.out, "runs.json"), "w") as f:
    json.dump(flat_runs(res), f, indent=1)
  reused = res["reused"]
  record = provenance.write(os.path.join(args.out, "results.md"), record=record, extra={
      "seconds": res["seconds"], "smoke": bool(args.smoke),
      "reused_arms": reused, **({"note": f"arms {reused} were read from an earlier study.json in "
                                         "the workdir, not retrained"} if reused else {}),
      **({"kept_arms": res["kept"]} if res.get("kept") else {})})
  write_report(res, args.out, record)
  print(f"wrote {os.path.join(args.out, 'results.md')} ({res['seconds']:.0f} s)")
  return res


# The result fields of a run that depend on its configuration (the kept arms must match them).
BUDGET = ("seeds", "steps", "smoke")


def load_previous(out, args):
  """``--only`` with an existing ``out/results.json``: that file and its provenance record, after
  checking that it was written with the same budget (``--seeds``, ``--steps``, ``--smoke``); None
  when there is no such file (then only the named arms are reported, as before)."""
  path = os.path.join(out, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    res = json.load(f)
  differ = {k: (res.get("config", {}).get(k), getattr(args, k)) for k in BUDGET
            if res.get("config", {}).get(k) != getattr(args, k)}
  if differ:
    raise ValueError(
        f"--only: {path} was written with a different budget "
        + ", ".join(f"--{k} {old!r} (this run: {new!r})" for k, (old, new) in differ.items())
        + "; its other arms cannot be kept next to this run's. Use the same options, or another "
          "--out.")
  record = provenance.load(os.path.join(out, "results.md")) or {}
  return {"res": res, "record": record}


def _kept_from(record, res_prev, arm):
  """Where a kept arm's stored results came from: the earlier run's provenance (or, for an arm that
  run had itself kept, the run before it)."""
  if arm in (res_prev.get("kept") or {}):
    return res_prev["kept"][arm]
  git = record.get("git", {})
  return {"commit": git.get("commit"), "dirty": git.get("dirty"),
          "modified": git.get("modified", []), "created_utc": record.get("created_utc"),
          "finished_utc": record.get("finished_utc"), "command": record.get("command"),
          "note": record.get("extra", {}).get("note")}


def merge_previous(res, previous, *, order):
  """This run's results (the ``--only`` arms) merged into the earlier ``results.json``: the named
  arms replaced, every other stored arm (and the masked-fraction arm, unless ActDiff ran) copied
  as stored, listed in ``kept`` with its provenance; arms in the order of ``order``."""
  prev, record = previous["res"], previous["record"]
  ran = set(res["arms"]) | set(res["not_run"])
  out = {k: v for k, v in res.items() if k not in ("arms", "fractions", "not_run")}
  kept = {}
  arms = {}
  for a in order + [a for a in prev.get("arms", {}) if a not in order]:
    if a in res["arms"]:
      arms[a] = res["arms"][a]
    elif a not in ran and a in prev.get("arms", {}):
      arms[a] = prev["arms"][a]
      kept[a] = _kept_from(record, prev, a)
  out["arms"] = arms
  if "actdiff" in ran:
    out["fractions"] = res["fractions"]
  else:
    out["fractions"] = prev.get("fractions") or {}
    if out["fractions"]:
      kept["actdiff fractions"] = _kept_from(record, prev, "actdiff fractions")
  out["not_run"] = ([a for a in prev.get("not_run", [])
                     if a not in ran and not (a == "actdiff fractions" and "actdiff" in ran)]
                    + res["not_run"])
  out["kept"] = kept
  # an edge check belongs to the arm's stored choice: kept with a kept arm, dropped with a rerun one
  edge = {a: c for a, c in (prev.get("edge_check") or {}).items() if a in kept}
  if edge:
    out["edge_check"] = edge
  out["grid_maps"] = {a: p for a, p in (prev.get("grid_maps") or {}).items() if a in kept}
  return out


def _print(name, r, t0):
  sel = tuning.selected(r)
  print(f"{name:16s} {tuning.point_label(r['selected']['point']):36s} "
        f"shift AUC {tuning.fmt(col(sel, 'test_shift/auc'), scale=1, digits=2)} "
        f"IoU {tuning.fmt(col(sel, 'saliency/grad_iou'), scale=1, digits=2)} "
        f"({r['wall_s']:.0f}s{', reused' if r['reused'] else ''}; {time.time() - t0:.0f}s)",
        flush=True)


# --------------------------------------------------------------------------------- edge check

# ``--edge_check``: conv_impl of the beyond sweeps. The double-backprop arms (GradMask, RRR) run
# with "patches" (bench.md: ~4-5x faster for vmapped replicas on this CPU, equal to "auto" up to
# float32 summation order); GradMask's own grid ran with "auto", so its beyond points differ from
# it also in that (float order only). The others as their arms ran ("auto").
EDGE_CONV_IMPL = {"gradmask": "patches", "rrr": "patches"}
#: The beyond points of a choice at the end of several keys: each such key moved alone (the others
#: at the chosen point), then all of them moved together.
EDGE_MOVES = "each key alone, then all edge keys together"
#: Values a beyond point is rounded to (log scale): the 1-2-3-5 ladder the grids use.
LADDER = (1.0, 2.0, 3.0, 5.0)


def beyond(grid, value):
  """The value one step past the end of ``grid`` at which ``value`` lies: the end times the
  grid's own spacing ratio there (end / its neighbour), rounded in log scale to the nearest
  1-2-3-5 value (lam 0.1 in {0.1, 0.3, 1} -> 0.03; 0.1 in {0.1, 1, 10} -> 0.01; lr 3e-3 in
  {1e-3, 3e-3} -> 1e-2; lr 5e-3 in {3e-4, ..., 3e-3, 5e-3} -> 1e-2)."""
  grid = sorted({float(v) for v in grid})
  if len(grid) < 2:
    raise ValueError(f"`grid` {grid} has fewer than two distinct values: it has no end to step past.")
  if value not in (grid[0], grid[-1]):
    raise ValueError(f"`value` {value!r} is not an end of the grid {grid}.")
  if grid[0] <= 0:
    raise ValueError(f"`grid` {grid} has a value <= 0: the spacing ratio is undefined.")
  raw = value * (value / (grid[1] if value == grid[0] else grid[-2]))
  e = math.floor(math.log10(raw))
  cands = [m * 10.0 ** k for k in (e - 1, e, e + 1) for m in LADDER]
  out = min(cands, key=lambda c: abs(math.log(c) - math.log(raw)))
  return float(f"{out:.3g}")


def edge_points(result):
  """``[(moved keys, point)]``: the points one step beyond each grid end at which ``result``'s
  chosen point lies (:data:`EDGE_MOVES`); ``[]`` when the choice is inside the grid in every key."""
  chosen = dict(result["selected"]["point"])
  ends = [k for k, e in tuning.at_edge(result).items() if e]
  step = {k: beyond([p[k] for p in tuning.points(result)], chosen[k]) for k in ends}
  out = [((k,), {**chosen, k: step[k]}) for k in ends]
  if len(ends) > 1:
    out.append((tuple(ends), {**chosen, **step}))
  return out


def _edge_dir(workdir, arm, point):
  return os.path.join(workdir, "edge", arm,
                      "_".join(f"{k.split('.')[-1]}{v:g}" for k, v in point.items()))


def edge_check(args):
  """Trains the points beyond the grid ends of the chosen points (``--edge_check``)."""
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  path = os.path.join(args.out, "results.json")
  md_path = os.path.join(args.out, "results.md")
  with open(path) as f:
    res = json.load(f)
  cfg = res["config"]
  spec = SMOKE_ARMS if cfg["smoke"] else ARMS
  names = list(res["arms"]) if args.only is None else list(args.only)
  unknown = [a for a in names if a not in res["arms"]]
  if unknown:
    raise ValueError(f"--only: arms {unknown} are not in {path}; its arms: {sorted(res['arms'])}.")
  seeds = list(range(cfg["seeds"]))
  tuning.use_compilation_cache(args.workdir)
  t0 = time.time()
  checks = res.setdefault("edge_check", {})
  for name in names:
    r = res["arms"][name]
    if not edge_points(r):
      continue
    impl = EDGE_CONV_IMPL.get(name, "auto")
    chk = checks.get(name)
    if chk is None or chk.get("chosen") != r["selected"]["point"]:
      chk = checks[name] = {"chosen": r["selected"]["point"], "at_edge": tuning.at_edge(r),
                            "chosen_val": tuning.val_mean(r), "moves": EDGE_MOVES,
                            "conv_impl": impl, "seeds": seeds, "steps": cfg["steps"],
                            "beyond": []}
    walk, stuck = [], False
    for step in range(1, args.edge_steps + 1):
      cur = extended_result(r, chk, before_step=step)
      todo = edge_points(cur)
      if not todo:
        break
      walk.append({"step": step, "from": cur["selected"]["point"], "from_val": tuning.val_mean(cur),
                   "at_edge": tuning.at_edge(cur)})
      new = [(m, p) for m, p in todo if not any(b["point"] == p for b in chk["beyond"])]
      if not new:   # every beyond point of this step was trained already (diverged ones included)
        if (extended_result(r, chk, before_step=step + 1)["selected"]["point"]
            == cur["selected"]["point"]):   # and they do not move the choice: the walk is stuck
          walk.pop()
          stuck = True
          break
        continue
      for moved, point in new:
        config = make_config(spec[name][0], steps=cfg["steps"], smoke=cfg["smoke"],
                             conv_impl=impl)
        arm = tuning.Arm(f"{name}|beyond", config, {k: (v,) for k, v in point.items()},
                         VALIDATION)
        entry = {"step": step, "from": cur["selected"]["point"], "moved": list(moved),
                 "point": point}
        t1 = time.time()
        try:
          out = run_one_arm(arm, _edge_dir(args.workdir, name, point), seeds)
        except FloatingPointError as e:   # the trainer's non-finite guard (NonFiniteLossError)
          entry.update({"val": float("inf"), "better_on_val": False, "diverged": str(e),
                        "replicas": [], "wall_s": time.time() - t1})
          chk["beyond"].append(entry)
          print(f"{name:16s} step {step} beyond {tuning.point_label(point):36s} DIVERGED: {e}",
                flush=True)
          _save_edge(res, path, md_path, time.time() - t0)
          continue
        val = tuning.val_mean(out)
        entry.update({"val": val, "better_on_val": bool(val < chk["chosen_val"]),
                      **{k: out[k] for k in ("replicas", "summary", "sweeps", "wall_s",
                                             "train_wall_s", "examples_per_sec", "workdir",
                                             "reused")}})
        chk["beyond"].append(entry)
        print(f"{name:16s} step {step} beyond {tuning.point_label(point):36s} val loss {val:.3g} "
              f"(chosen {chk['chosen_val']:.3g}) shift AUC "
              f"{tuning.fmt(col(out['replicas'], 'test_shift/auc'), scale=1, digits=2)} "
              f"({out['wall_s']:.0f}s; {time.time() - t0:.0f}s)", flush=True)
        _save_edge(res, path, md_path, time.time() - t0)
    end = extended_result(r, chk, before_step=len(walk) + 1)   # the points of this walk's steps
    chk["walk"] = {"edge_steps": args.edge_steps, "steps": walk,
                   "final": end["selected"]["point"], "final_at_edge": tuning.at_edge(end),
                   "stopped": ("interior" if not edge_points(end) else
                               "nothing new" if stuck else
                               "edge_steps reached")}
  _save_edge(res, path, md_path, time.time() - t0)
  return res


def _save_edge(res, path, md_path, seconds):
  """results.json rewritten (the arms untouched, ``edge_check`` added), the provenance record
  extended with the edge check's time and commit, results.md re-rendered."""
  with open(path, "w") as f:
    f.write(provenance.portable(json.dumps(res, indent=1)))
  prev = provenance.load(md_path) or {}
  record = provenance.write(md_path, record=prev, extra={
      "edge_check_seconds": seconds, "edge_check_commit": provenance.git_info().get("commit"),
      "edge_check_dirty": provenance.git_info().get("dirty")})
  write_report(res, os.path.dirname(path), record)


def edge_extended(r, chk):
  """The point the validation choice picks when the beyond points join ``r``'s grid (the lowest
  mean val/loss; ties: the earlier point, grid first; diverged points never) and its replicas."""
  best, reps, v = r["selected"]["point"], tuning.selected(r), tuning.val_mean(r)
  for b in chk["beyond"]:
    if b["val"] < v:
      best, reps, v = b["point"], b["replicas"], b["val"]
  return best, reps


def extended_result(r, chk, before_step=None):
  """``r`` with the trained beyond points of ``chk`` (those of steps before ``before_step``; None:
  all) in its grid (their replicas appended; a diverged point has none, so it does not extend the
  grid) and the extended choice selected: what step ``before_step`` of the walk
  (``--edge_steps``) starts from."""
  pool = [b for b in chk["beyond"] if before_step is None or b.get("step", 1) < before_step]
  best, _ = edge_extended(r, {"beyond": pool})
  metric = r["selected"]["by"].rpartition(":")[0]
  v = min([tuning.val_mean(r)] + [b["val"] for b in pool])
  return {"replicas": r["replicas"] + [q for b in pool for q in b["replicas"]],
          "selected": {"point": best, "by": r["selected"]["by"], "val": {metric: {"mean": v}}}}


def _ends(r):
  return ", ".join(f"{k.split('.')[-1]} {e}" for k, e in tuning.at_edge(r).items() if e)


def edge_lines(res):
  """The results.md section on the points beyond the grid ends."""
  arms = res["arms"]
  at_end = [a for a, r in arms.items() if edge_points(r)]
  if not at_end:
    return []
  lines = ["## Beyond the grid ends (outside the budget)", ""]
  checks = res.get("edge_check") or {}
  head = (f"{len(at_end)} of {len(arms)} arms chose a point at an end of their grid: "
          + "; ".join(f"{a} ({_ends(arms[a])})" for a in at_end) + ".")
  if not checks:
    return lines + [head + " The points beyond those ends were not trained (`--edge_check` not "
                    "run).", ""]
  lines += [head + " `python experiments/attribution/run.py --edge_check` trained the points one "
            "step beyond each such end, through the trainer with the same seeds and steps (one "
            "sweep of the seeds per beyond point), OUTSIDE the 6-point budget: the main table "
            "keeps the equal-budget choice. Beyond value = the end times the grid's own spacing "
            "ratio there, rounded to the 1-2-3-5 ladder (lambda at its low end / 3 or / 10, the "
            f"learning rate at its high end to 1e-2). Moves: {EDGE_MOVES}. Validation only "
            "decides whether a beyond point would have been chosen (lower mean val/loss on "
            "valid_id than the chosen point); its test numbers are a reading. conv_impl: "
            + ", ".join(f"{a} `{c['conv_impl']}`" for a, c in checks.items())
            + (" (GradMask's own grid ran with `auto`: same model, float32 summation order "
               "differs)" if checks.get("gradmask", {}).get("conv_impl") == "patches" else "")
            + ".", "",
            "| arm | point | val loss (valid_id) | would be chosen | test_id acc | test_shift acc "
            "| test_shift AUC | no-distractor acc | grad IoU |", "|---|---|---|---|---|---|---|---|---|"]
  keys = ("test_id/accuracy", "test_shift/accuracy", "test_shift/auc",
          "test_nodistractor/accuracy", "saliency/grad_iou")
  moved, walks = [], []
  for a in at_end:
    r, chk = arms[a], checks.get(a)
    lines.append(f"| {a} | chosen: {tuning.point_label(r['selected']['point'])} | "
                 f"{tuning.val_mean(r):.3g} | (grid's choice) | "
                 + " | ".join(f2(col(tuning.selected(r), k)) for k in keys) + " |")
    if chk is None or chk.get("chosen") != r["selected"]["point"]:
      lines.append(f"| {a} | beyond | not run | | | | | | |")
      continue
    best, reps = edge_extended(r, chk)
    for b in sorted(chk["beyond"], key=lambda b: b.get("step", 1)):
      step = b.get("step", 1)
      label = (f"{'' if step == 1 else f'step {step} '}beyond "
               f"({', '.join(k.split('.')[-1] for k in b['moved'])}): "
               f"{tuning.point_label(b['point'])}")
      label = f"**{label}**" if b["point"] == best else label
      if b.get("diverged"):
        lines.append(f"| {a} | {label} | diverged | no | " + " | ".join(
            ["diverged (the trainer's non-finite guard)"] + [""] * (len(keys) - 1)) + " |")
        continue
      start = extended_result(r, chk, before_step=step)
      lines.append(f"| {a} | {label} | {b['val']:.3g} | "
                   f"{'yes' if b['val'] < tuning.val_mean(start) else 'no'} | "
                   + " | ".join(f2(col(b["replicas"], k)) for k in keys) + " |")
    left = [p for m, p in edge_points(r) if not any(b["point"] == p for b in chk["beyond"])]
    for p in left:
      lines.append(f"| {a} | beyond: {tuning.point_label(p)} | not run | | | | | | |")
    walk = chk.get("walk")
    if walk and walk["steps"]:
      walks.append(f"{a}: {len(walk['steps'])} step{'s' if len(walk['steps']) > 1 else ''} "
                   f"(from " + " -> ".join(tuning.point_label(w["from"]) for w in walk["steps"])
                   + f"), ended at {tuning.point_label(walk['final'])}, " + {
                       "interior": "inside the extended grid in every key (the walk stopped)",
                       "nothing new": "again at an end, with no untrained beyond point",
                       "edge_steps reached": "again at an end ("
                       + ", ".join(f"{k.split('.')[-1]} {e}"
                                   for k, e in walk["final_at_edge"].items() if e)
                       + f"; --edge_steps {walk['edge_steps']} reached)"}[walk["stopped"]])
    if best != r["selected"]["point"]:
      auc = lambda q: float(np.mean(col(q, "test_shift/auc")))  # noqa: E731
      text = (f"{a} to {tuning.point_label(best)} (test_shift AUC {auc(reps):.2f} vs "
              f"{auc(tuning.selected(r)):.2f}")
      if "ce" in arms and a != "ce":
        ce = {q["overrides"]["seed"]: q["eval/test_shift/auc"] for q in tuning.selected(arms["ce"])}
        st = tuning.stats([q["eval/test_shift/auc"] - ce[q["overrides"]["seed"]] for q in reps
                           if q["overrides"]["seed"] in ce])
        text += (f"; minus tuned CE, paired by seed, {st['mean']:+.2f}"
                 + (f" [{st['ci95'][0]:+.2f}, {st['ci95'][1]:+.2f}]" if st["ci95"] else ""))
      at = [k.split(".")[-1] for k, e in tuning.at_edge(
          {"replicas": r["replicas"] + [q for b in chk["beyond"] for q in b["replicas"]],
           "selected": {"point": best}}).items() if e]
      moved.append(text + ")" + (f", again at an end of the extended grid ({', '.join(at)})"
                                 if at else ""))
  checked = [a for a in at_end if a in checks]
  lines += ["", f"Checked: {', '.join(checked)}. With the beyond points in the grid, the "
            "validation choice would move for "
            + (f"{len(moved)} of {len(checked)} arms: " + "; ".join(moved) if moved
               else f"none of the {len(checked)} arms")
            + ". The row in bold is the extended choice (the lowest val loss over the grid and "
            "the beyond points). The equal-budget tables and findings above do not use these "
            "points.", ""]
  if any(b.get("step", 1) > 1 for c in checks.values() for b in c["beyond"]) or walks:
    lines[-1:] = ["", "Walk (`--edge_steps N`): step s starts from the validation choice over the "
                  "grid and the beyond points of steps before s and trains the points beyond its "
                  "ends (the same rule and moves); an arm stops as soon as that choice is inside "
                  "the extended grid in every key. 'would be chosen': lower val loss than the "
                  "step's starting choice. " + "; ".join(walks) + ".", ""]
  return lines


# ------------------------------------------------------------------------------------- results


def all_arms(res):
  out = list(res["arms"].items())
  if res.get("fractions"):
    out.append(("actdiff fractions", res["fractions"]))
  return out


def col(replicas, key):
  """``eval/<key>`` over replicas (the attribution evaluator's keys, e.g. ``test_shift/auc``)."""
  return tuning.values(replicas, key if key.startswith(("eval/", "val/")) else f"eval/{key}")


def choose(r, select):
  """The grid point with the best mean of ``select`` (``"<key>:max|min"``) over seeds (ties: the
  first in grid order). Used for the authors' protocol; the main choice is the sweep's."""
  metric, _, how = select.rpartition(":")
  sign = 1.0 if how == "max" else -1.0
  best, best_v = None, -math.inf
  for p in tuning.points(r):
    v = float(np.nanmean(tuning.values(tuning.at_point(r, p), metric)))
    if math.isfinite(v) and sign * v > best_v:
      best, best_v = p, sign * v
  return best if best is not None else tuning.points(r)[0]


def flat_runs(res):
  """One dict per trained model (arm, grid point, seed, the attribution metrics): runs.json."""
  out = []
  for arm, r in all_arms(res):
    method = "actdiff" if arm == "actdiff fractions" else arm
    for q in r["replicas"]:
      point = {k: v for k, v in q["overrides"].items() if k != "seed"}
      if arm == "actdiff fractions":
        point = {**r["base_point"], **point}
      out.append({"arm": arm, "method": method, "point": point, "seed": q["overrides"]["seed"],
                  "val/loss": q.get("val/loss"), "val/accuracy": q.get("val/accuracy"),
                  **{k: q.get(f"eval/{k}") for k in KEYS}})
  return out


def grid_maps(res, skip=None):
  """``{arm: path of the saliency npz of its chosen point's first seed}`` (written by the
  trainer's attribution evaluator in the sweep's ``replicas/<r>/``), arms in ``skip`` left out."""
  out = {}
  for arm, r in res["arms"].items():
    if skip and arm in skip:
      continue
    idx = r["selected"]["replicas"][0]
    path = os.path.join(r["workdir"], "replicas", str(idx), SALIENCY_NPZ)
    if os.path.exists(path):
      out[arm] = path
  return out


# -------------------------------------------------------------------------------------- report


def f2(values):
  return tuning.fmt(values, scale=1, digits=2)


def ms(values):
  v = np.asarray(values, np.float64)
  return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _old_runs():
  path = os.path.join(HERE, "runs_before_issue14.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _old_point(arm: str):
  """The grid point of an old arm name (``"actdiff lam=0.1 frac=0.5"``): method and overrides."""
  parts = arm.split()
  method, point = parts[0], {}
  for p in parts[1:]:
    k, v = p.split("=")
    point[{"lam": f"{method}.lam", "frac": f"{method}.mask_fraction"}[k]] = float(v)
  return method, point


def _new_at(res, method, point):
  """The new replicas at an old arm's point (learning rate 1e-3, the old study's), or None."""
  frac = point.get(f"{method}.mask_fraction", 1.0)
  want = {**{k: v for k, v in point.items() if not k.endswith("mask_fraction")}, LR: 1e-3}
  if frac == 1.0:
    r = res["arms"].get(method)
    return tuning.at_point(r, want) if r else None
  r = res.get("fractions")
  if not r or any(r["base_point"].get(k) != v for k, v in want.items()):
    return None
  return tuning.at_point(r, {f"{method}.mask_fraction": frac}) or None


def old_vs_new(res, old):
  lines = ["| old arm (lr 1e-3) | old test_shift acc | new, same point | old test_shift AUC | "
           "new, same point | old grad IoU | new, same point | new - old AUC (± se) |",
           "|---|---|---|---|---|---|---|---|"]
  diffs = []
  for arm in dict.fromkeys(r["arm"] for r in old):
    rows = [r for r in old if r["arm"] == arm]
    method, point = _old_point(arm)
    new = _new_at(res, method, point)
    cells = [arm]
    for key in ("test_shift/accuracy", "test_shift/auc", "saliency/grad_iou"):
      cells.append(ms([r[key] for r in rows]))
      cells.append(ms(col(new, key)) if new else "not in the new grid")
    if new:
      a, b = np.asarray(col(new, "test_shift/auc")), np.asarray([r["test_shift/auc"] for r in rows])
      se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(len(a), len(b)) > 1 \
          else float("nan")
      d = a.mean() - b.mean()
      diffs.append((arm, d, se))
      cells.append(f"{d:+.2f} ± {se:.2f}{' *' if abs(d) > 2 * se else ''}")
    else:
      cells.append("—")
    lines.append("| " + " | ".join(cells) + " |")
  return lines, diffs


def write_report(res, out, record):
  import matplotlib
  matplotlib.use("Agg")
  from scipy.stats import spearmanr

  cfg = res["config"]
  arms = res["arms"]
  n_seeds = cfg["seeds"]
  ce_speed = arms["ce"]["examples_per_sec"] if "ce" in arms else float("nan")
  lines = [
      "# Attribution control with masks on procedural crosses (offline study)", "",
      f"Generated by `python experiments/attribution/run.py{' --smoke' if cfg['smoke'] else ''}"
      f"{' --only ' + ' '.join(cfg['only']) if cfg.get('only') else ''}`: "
      f"every model trained by the trainer (`configs/crosses_attribution.py`, `attribution_cnn`, "
      f"no BatchNorm), {n_seeds} seeds, {cfg['steps']} Adam steps of batch 32 on the 500 training "
      f"images; training and evaluation took {_train_time(res):.0f} s in all (sum over arms, "
      "from each sweep's start of training to its finished results) on a shared 2-core CPU "
      "(load 5-12 from other jobs)"
      + (f"; the sweeps of {', '.join(res['reused'])} were read back from the workdir, where "
         "this script had trained them (same configs; see the provenance note)"
         if res.get("reused") else "") + ". Every arm is ONE trainer sweep "
      "(grid points x seeds as replicas of one compiled program, `experiments/tuning.py`) with "
      "the same budget of 6 grid points: CE and classify-masked tune the learning rate "
      "{3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3}; ActDiff, GradMask and RRR tune lambda (3 values) x "
      "learning rate {1e-3, 3e-3}." + _conv_note(res), ""] + _kept_note(res) + [
      f"**Choice**: the point with the lowest mean validation cross-entropy (`{res['select']}`) "
      f"on `{res['validation']}`, the in-distribution validation split (128 images, the "
      "distractor correlated with the label as in training). Accuracy there is 1.0 for every "
      "model that learned the crosses or the shortcut (ties), the loss is continuous. The paper "
      "chose on a SHIFTED validation set, which tells the choice where the shortcut breaks (it "
      "leaks the test shift); that choice is shown separately below, labelled. The test splits "
      "(128 images each) never take part in the main choice. Cells: mean ± std over seeds [95% "
      "t-interval of the mean]. Saliency = |dz_y/dx| on test_shift, top-k with k = mask area "
      "(so IoP = IoT); mass = share of |saliency| inside the mask; IG = integrated gradients "
      "(8 steps).", "",
      "**Lambda units**: every penalty is a mean per masked example here. The authors' code sums "
      "GradMask and RRR over the batch (their lambda x batch size = ours) and averages ActDiff "
      "over the batch without multiplying it by lambda. Authors' values in our units: "
      + "; ".join(f"{m} {v}" for m, v in AUTHORS_LAMBDA.items()) + ". Grids: "
      + "; ".join(f"{a} " + ", ".join(f"{k.split('.')[-1]} {{{', '.join(f'{x:g}' for x in v)}}}"
                                      for k, v in r["grid"].items())
                  for a, r in arms.items()) + ".", "",
      "| arm | chosen on valid_id | val loss | test_id acc | test_shift acc | test_shift AUC | "
      "no-distractor acc | grad IoU | grad IoP | grad mass | IG IoU | step time / CE | "
      "paper shift AUC | paper IoU |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for a, r in arms.items():
    sel = tuning.selected(r)
    speed = ce_speed / r["examples_per_sec"] if r["examples_per_sec"] > 0 else float("nan")
    lines.append(
        f"| {a} | {tuning.point_label(r['selected']['point'])} | {tuning.val_mean(r):.3g} | "
        + " | ".join(f2(col(sel, k)) for k in (
            "test_id/accuracy", "test_shift/accuracy", "test_shift/auc",
            "test_nodistractor/accuracy", "saliency/grad_iou", "saliency/grad_iop",
            "saliency/grad_mass", "saliency/ig_iou"))
        + f" | {speed:.2f}x | {_paper(PAPER_AUC, a)} | {_paper(PAPER_IOU, a)} |")
  n_rep = len(next(iter(arms.values()))["replicas"]) if arms else 0
  lines += ["", "Step time / CE: median training examples per second of one replica inside the "
            f"arm's sweep ({n_rep} replicas vmapped together), relative to CE's. On this shared "
            "CPU the ratios are confounded by the load of other jobs, which changed during the "
            "study (and some arms' sweeps ran while others trained in parallel); the "
            "accelerator benchmark at the end is the clean comparison. IG IoU barely moves between arms: integrated gradients from the zero baseline "
            "are exactly zero on the zero background, so the top-k pixels (k = mask area, larger "
            "than the drawn pixels) are mostly ties filled in pixel order.", ""]
  fr = res.get("fractions")
  if fr:
    base = fr["base_point"]
    lines += ["## ActDiff with a fraction of masked training images", "",
              f"At the chosen ActDiff point ({tuning.point_label(base)}); fraction 1 is the "
              "ActDiff arm itself. Images without a mask get no penalty.", "",
              "| masked fraction | test_id acc | test_shift acc | test_shift AUC | "
              "no-distractor acc | grad IoU | grad mass |", "|---|---|---|---|---|---|---|"]
    rows = [(1.0, tuning.selected(arms["actdiff"]))]
    rows += [(p["actdiff.mask_fraction"], tuning.at_point(fr, p)) for p in tuning.points(fr)]
    for frac, reps in rows:
      lines.append(f"| {frac:g} | " + " | ".join(f2(col(reps, k)) for k in (
          "test_id/accuracy", "test_shift/accuracy", "test_shift/auc",
          "test_nodistractor/accuracy", "saliency/grad_iou", "saliency/grad_mass")) + " |")
    lines.append("")
  # The authors' protocol: choose on a shifted validation split (leaks the shift).
  lines += ["## The authors' protocol: choosing on shifted validation (leaks the shift)", "",
            "Each arm's point chosen instead by the best mean AUC on `valid_shift` (a shifted "
            "split disjoint from test_shift, as the paper's shifted validation set). This uses "
            "knowledge of the shift that a practitioner without shifted data does not have; it "
            "is shown only to compare with the paper's numbers.", "",
            "| arm | chosen on valid_id (main) | test_shift AUC | chosen on valid_shift "
            "(authors) | valid_shift AUC | test_shift AUC | test_shift acc | grad IoU |",
            "|---|---|---|---|---|---|---|---|"]
  for a, r in arms.items():
    p = choose(r, AUTHORS_SELECT)
    reps = tuning.at_point(r, p)
    lines.append(f"| {a} | {tuning.point_label(r['selected']['point'])} | "
                 f"{f2(col(tuning.selected(r), 'test_shift/auc'))} | {tuning.point_label(p)} | "
                 f"{f2(col(reps, 'valid_shift/auc'))} | {f2(col(reps, 'test_shift/auc'))} | "
                 f"{f2(col(reps, 'test_shift/accuracy'))} | {f2(col(reps, 'saliency/grad_iou'))} |")
  lines += ["", "## Every grid point (mean over seeds; the point chosen on valid_id in bold)", "",
            "val loss (valid_id) / valid_shift AUC / test_shift AUC / grad IoU.", ""]
  for a, r in arms.items():
    cells = []
    for p in tuning.points(r):
      reps = tuning.at_point(r, p)
      m = lambda k: float(np.mean(col(reps, k)))  # noqa: E731
      label = (f"{tuning.point_label(p)}: {m('val/loss'):.3g} / {m('valid_shift/auc'):.2f} / "
               f"{m('test_shift/auc'):.2f} / {m('saliency/grad_iou'):.2f}")
      cells.append(f"**{label}**" if p == r["selected"]["point"] else label)
    lines.append(f"- {a}: " + "; ".join(cells))
  edge = edge_lines(res)
  if edge:
    lines += [""] + edge[:-1]
  # The central test.
  runs = flat_runs(res)
  pts = [r for r in runs if r["method"] != "classify_masked"]
  lines += ["", "## Does saliency in the mask track generalization?", ""]
  if len(pts) >= 3:
    for k in ("saliency/grad_mass", "saliency/grad_iou", "saliency/ig_mass"):
      rho, p = spearmanr([r[k] for r in pts], [r["test_shift/accuracy"] for r in pts])
      lines.append(f"- Spearman rho({k}, test_shift accuracy) = {rho:.2f} (p = {p:.2g}, "
                   f"n = {len(pts)} runs: every arm x grid point x seed, masked fractions "
                   "included, except classify-masked, whose input is masked only at training "
                   "time)")
  learned = [r for r in pts if r["test_id/accuracy"] >= 0.9]
  if len(learned) >= 3:
    for k in ("saliency/grad_mass", "saliency/grad_iou"):
      rho, p = spearmanr([r[k] for r in learned], [r["test_shift/accuracy"] for r in learned])
      lines.append(f"- the same restricted to the {len(learned)} runs that learned the task "
                   f"(test_id accuracy >= 0.9; collapsed constant predictors removed): "
                   f"rho({k}) = {rho:.2f} (p = {p:.2g})")
  lines += ["", "## Findings", ""] + findings(res)
  if res.get("not_run"):
    lines += ["", f"**Not run yet** (their sweeps had not finished when this report was written): "
              f"{', '.join(res['not_run'])}. Every other number above is final for its arm."]
  old = _old_runs()
  if old:
    table, diffs = old_vs_new(res, old)
    big = [f"{a} ({d:+.2f} ± {se:.2f})" for a, d, se in diffs if abs(d) > 2 * se]
    lines += ["", "## Old and new runs", "",
              "Previous study (`runs_before_issue14.json`, commit c9ecb12): one separate trainer "
              "run per (arm, seed), the same config (200 steps, batch 32, learning rate 1e-3, "
              "seeds 0-4, IG 8 steps), a hand-picked grid of 2 lambdas for the penalties and "
              "none for CE / classify-masked, no validation choice. A replica of a sweep is the "
              "same run as the single run with its overrides (tests/test_sweep_train.py, "
              "tests/test_tuning.py), so at the old arms' points the new cells should agree "
              "up to float reordering; differences are marked * where |new - old| > 2 se "
              "(unpaired): " + (", ".join(big) if big else "none") + ".", ""] + table
  bench = os.path.join(HERE, "bench.md")
  if os.path.exists(bench):
    lines += ["", "## Step time on an accelerator (`experiments/attribution/bench.py`)", ""]
    lines += open(bench).read().strip().splitlines()[2:]
  sweep_bench = os.path.join(HERE, "bench_sweep.md")
  if os.path.exists(sweep_bench):
    lines += ["", "## Why vmapped double-backprop sweeps are slow on the CPU "
              "(`experiments/attribution/bench_sweep.py`)", ""]
    lines += open(sweep_bench).read().strip().splitlines()[2:]
  md_path = os.path.join(out, "results.md")
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.attribution import fashion_mnist
  kept = fashion_mnist_runs.kept_section(md_path, fashion_mnist.MARKER)  # the other part's
  with open(md_path, "w") as f:
    f.write("\n".join(lines).rstrip("\n"))
    f.write(provenance.footer(record, md_path))
    if kept:
      f.write("\n\n" + kept)
  plot_scatter(runs, os.path.join(out, "scatter.png"))
  drawn = available_maps(res)
  if drawn:
    plot_grid(res, os.path.join(out, grid_file(res)))


def available_maps(res):
  """The arms whose saved saliency maps (``grid_maps``) exist on this machine."""
  return [a for a, p in (res.get("grid_maps") or {}).items()
          if a in res["arms"] and os.path.exists(p)]


def grid_file(res):
  """``saliency_grid.png`` when every arm's maps are available; otherwise (arms kept from an
  earlier run whose trainer workdirs are gone) ``saliency_grid_<arms>.png`` for those available,
  so that the earlier complete picture is not overwritten by a partial one."""
  drawn = available_maps(res)
  if set(drawn) == set(res["arms"]):
    return "saliency_grid.png"
  return "saliency_grid_" + "_".join(drawn) + ".png"


def _conv_note(res):
  arms = [a for a in res["arms"] if a not in (res.get("kept") or {})]
  impl = {a: CONV_IMPL[a] for a in arms if a in CONV_IMPL}
  if not impl:
    return ""
  return (" Convolutions: `conv_impl=auto` for every arm except "
          + ", ".join(f"{a} (`{v}`)" for a, v in impl.items())
          + ": the same convolution as one matrix product of input patches, equal up to float32 "
            "summation order and ~5x faster in a 30-replica double-backprop sweep on this CPU "
            "(`bench.md`, models/conv.py).")


def _kept_note(res):
  kept = res.get("kept") or {}
  if not kept:
    return []
  by_src = {}
  for a, k in kept.items():
    by_src.setdefault((k.get("commit") or "unknown")[:12], []).append((a, k))
  parts = []
  for commit, items in by_src.items():
    k = items[0][1]
    parts.append(f"{', '.join(a for a, _ in items)} from the run of commit {commit}"
                 f"{' (modified tree)' if k.get('dirty') and provenance.modified_code(k) else ''}"
                 f", {k.get('created_utc')}"
                 + (f" ({k['note']})" if k.get("note") else ""))
  trained = [a for a in res["arms"] if a not in kept]
  drawn = available_maps(res)
  lines = [f"**Kept from an earlier run** (`--only {' '.join(trained)}` updated results.json in "
           f"place; those arms' trainer workdirs are not on this machine): {'; '.join(parts)}. "
           f"Their numbers are copied unchanged from the stored results.json (`kept` there and in "
           f"the provenance JSON); only {', '.join(trained) or 'nothing'} "
           f"{'was' if len(trained) == 1 else 'were'} trained or read back in this run."]
  if drawn and set(drawn) != set(res["arms"]):
    lines[0] += (f" The saliency maps of the kept arms are gone with their workdirs: "
                 f"`{grid_file(res)}` shows {', '.join(drawn)}; `saliency_grid.png` is the "
                 "earlier run's picture.")
  return lines + [""]


def _train_time(res):
  return sum(r.get("train_wall_s", r.get("wall_s", 0.0)) for _, r in all_arms(res))


def _paper(table, arm):
  return f"{table[arm]:.2f}" if arm in table else ""


def findings(res):
  """Plain-language statements computed from the numbers."""
  arms = res["arms"]
  out = []
  if "ce" not in arms:
    return ["- (no CE arm in this run)"]
  ce = {q["overrides"]["seed"]: q["eval/test_shift/auc"] for q in tuning.selected(arms["ce"])}
  for a, r in arms.items():
    if a == "ce":
      continue
    d = [q["eval/test_shift/auc"] - ce[q["overrides"]["seed"]] for q in tuning.selected(r)
         if q["overrides"]["seed"] in ce]
    st = tuning.stats(d)
    ci = (f" [{st['ci95'][0]:+.2f}, {st['ci95'][1]:+.2f}]" if st["ci95"] else "")
    verdict = ("better than CE" if st["ci95"] and st["ci95"][0] > 0 else
               "worse than CE" if st["ci95"] and st["ci95"][1] < 0 else
               "not distinguishable from CE")
    out.append(f"- {a} (chosen on valid_id: {tuning.point_label(r['selected']['point'])}): "
               f"test_shift AUC minus tuned CE, paired by seed, {st['mean']:+.2f}{ci}: "
               f"{verdict}; paper {PAPER_AUC.get(a, float('nan')) - PAPER_AUC['ce']:+.2f}.")
  chosen = {a: tuning.selected(r) for a, r in arms.items() if a != "classify_masked"}
  if len(chosen) >= 2:
    iou = {a: float(np.mean(col(s, "saliency/grad_iou"))) for a, s in chosen.items()}
    auc = {a: float(np.mean(col(s, "test_shift/auc"))) for a, s in chosen.items()}
    by_iou, by_auc = sorted(iou, key=iou.get, reverse=True), sorted(auc, key=auc.get, reverse=True)
    out.append("- Saliency vs generalization at the chosen points (classify-masked left out): "
               "ranked by grad IoU " + " > ".join(f"{a} {iou[a]:.2f}" for a in by_iou)
               + "; ranked by test_shift AUC " + " > ".join(f"{a} {auc[a]:.2f}" for a in by_auc)
               + (" (the same order)." if by_iou == by_auc else " (the orders differ)."))
  for a, r in arms.items():
    p = choose(r, AUTHORS_SELECT)
    a_auc = np.mean(col(tuning.at_point(r, p), "test_shift/auc"))
    m_auc = np.mean(col(tuning.selected(r), "test_shift/auc"))
    if p != r["selected"]["point"] and f"{a_auc:.2f}" != f"{m_auc:.2f}":
      out.append(f"- {a}: the authors' shifted-validation choice ({tuning.point_label(p)}) "
                 f"differs from the in-distribution one; test_shift AUC "
                 f"{np.mean(col(tuning.at_point(r, p), 'test_shift/auc')):.2f} vs "
                 f"{np.mean(col(tuning.selected(r), 'test_shift/auc')):.2f}.")
  return out


def plot_scatter(runs, path):
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  methods = sorted({r["method"] for r in runs})
  colors = dict(zip(methods, plt.cm.tab10(np.arange(len(methods)))))
  for ax, k, title in ((axes[0], "saliency/grad_mass", "input-gradient mass in mask"),
                       (axes[1], "saliency/grad_iou", "input-gradient top-k IoU")):
    for m in methods:
      rs = [r for r in runs if r["method"] == m]
      ax.scatter([r[k] for r in rs], [r["test_shift/accuracy"] for r in rs], label=m,
                 color=colors[m], alpha=0.7, s=18)
    ax.set_xlabel(title + " (test_shift)")
    ax.set_ylabel("test_shift accuracy")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle("crosses: saliency in the mask vs accuracy under the distractor flip "
               "(each point a run: arm x grid point x seed)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_grid(res, path):
  """test_shift images, masks and |dz_y/dx| of each arm's chosen point (first seed), from the
  maps the trainer's evaluator saved (nothing is recomputed here)."""
  from labelwise.eval import saliency
  maps, base = {}, None
  for arm, p in (res.get("grid_maps") or {}).items():
    if not os.path.exists(p):
      continue
    with np.load(p) as z:
      maps[f"{arm}\n{tuning.point_label(res['arms'][arm]['selected']['point'])}"] = z["grad"]
      base = base or (z["input"], z["mask"], z["label"])
  if maps:
    x, m, y = base
    saliency.save_saliency_grid(path, x, m, maps, labels=y, max_examples=len(y))


if __name__ == "__main__":
  main()
