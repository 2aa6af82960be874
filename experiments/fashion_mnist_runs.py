"""The Fashion-MNIST parts of the studies: arms as grids x seeds of trainer runs, chosen on the
dataset's own ``validation`` split, sized for a 2-core CPU.

A study part declares its arms (a trainer config from ``configs/fashion_mnist_*.py`` and a grid of
dotted config keys, the same number of points for every arm) and calls :func:`run_arm`::

    from labelwise.experiments import fashion_mnist_runs as fmr
    c = fmr.study_config(fashion_mnist_simloss.get_config("method=ce"), steps=150)
    res = fmr.run_arm(c, {"optimizer.learning_rate": (1e-3, 2e-3)}, "runs/fm/ce",
                      seeds=range(5), select="val/accuracy:max")
    res["selected"]["point"], tuning.selected(res)      # the chosen point, its seeds' replicas

Every (point, seed) is one ``labelwise.train.trainer`` run (nothing here trains) that reports the
test split (``eval/...``) and, evaluated afterwards from the same final state, the validation split
(``val/...``); the choice reads only ``val/...`` (``train.sweep.select``, the code a sweep's
``sweep_select`` uses), so the test split never takes part in it. A run whose folder holds its
``study.json`` is read back, not retrained (a killed study reruns only what is unfinished).

Why one run per replica and not one ``config.sweep`` per arm (the offline parts' path): on this
2-core CPU the sweep's vmap over replicas makes the 2-conv CNN 3.3x slower per example (measured,
60 steps at batch 128 under load average ~5: one run 704 training examples/s, a 4-replica sweep 53
per replica, 212 in all; with ``conv_impl=xla`` 226 and 99), so separate runs of one compiled
program (the XLA compilation cache under the study's workdir) are the cheaper path here.

``tune_seeds``: the grid is run on those seeds only and the chosen point then on every seed (a
smaller tuning budget, the same for every arm), for parts with many arms.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence

from labelwise.experiments import tuning
from labelwise.train import sweep as sweep_lib

VALIDATION = "validation"


def study_config(c, *, steps: int, batch_size: int = 128, validation: str = VALIDATION,
                 eval_split: str = "test", data_dir: str = "", manual_dir: str = ""):
  """``c`` (a Fashion-MNIST config) as a study run: ``steps`` steps, one device, no progress bar,
  TensorBoard or intermediate checkpoints, its validation and test splits."""
  c = copy.deepcopy(c)
  c.total_steps = int(steps)
  c.batch_size = int(batch_size)
  c.parallel = "jit"
  c.num_devices = 1
  c.progress_bar = False
  c.tensorboard = False
  c.checkpoint_every = 0            # only at the end
  c.log_every = max(1, int(steps) // 3)
  c.data.validation_split = validation
  c.data.eval_split = eval_split
  if data_dir:
    c.data.data_dir = data_dir
  if manual_dir:
    c.data.manual_dir = manual_dir
  return c


def parse_part(argv, doc: str, *, out: str, workdir: str, seeds: int, smoke: str,
               report: str = "the section", tune_seeds: bool = True, tune_default: int = 1,
               helps: Optional[Mapping[str, str]] = None,
               add: Optional[Callable[[argparse.ArgumentParser], None]] = None):
  """The command line every Fashion-MNIST part shares, parsed from ``argv``.

  ``--out`` (default ``out``), ``--seeds`` (default ``seeds``), ``--tune_seeds`` (default
  ``tune_default``; without it where ``tune_seeds`` is False), ``--steps`` (100), ``--batch_size`` (128), then the
  part's own options (``add(parser)``), then ``--data_dir``, ``--manual_dir``, ``--workdir``
  (default ``workdir``), ``--smoke`` (help ``smoke``) and ``--report_only`` (re-renders
  ``report`` from --out/results_fashion_mnist.json). ``helps``: help text per option name
  (``"seeds"``) where a part says more. The part applies its ``--smoke`` sizes and checks.
  """
  helps = dict(helps or {})
  ap = argparse.ArgumentParser(description=doc.splitlines()[0])
  ap.add_argument("--out", default=out)
  ap.add_argument("--seeds", type=int, default=seeds, help=helps.pop("seeds", None))
  if tune_seeds:
    ap.add_argument("--tune_seeds", type=int, default=tune_default,
                    help=helps.pop("tune_seeds", "the grid is tried on this many seeds"))
  ap.add_argument("--steps", type=int, default=100, help=helps.pop("steps", None))
  ap.add_argument("--batch_size", type=int, default=128)
  if add is not None:
    add(ap)
  ap.add_argument("--data_dir", default="", help="TFDS data dir ('' = the default)")
  ap.add_argument("--manual_dir", default="", help="folder of the four IDX files")
  ap.add_argument("--workdir", default=workdir, help="trainer runs (reused)")
  ap.add_argument("--smoke", action="store_true", help=smoke)
  ap.add_argument("--report_only", action="store_true",
                  help=f"re-render {report} from --out/results_fashion_mnist.json")
  if helps:
    raise ValueError(f"`helps`: no shared option {sorted(helps)}.")
  return ap.parse_args(argv)


def run_one(config, workdir: str) -> Dict[str, float]:
  """Trains ``config`` in ``workdir`` (or reads its ``study.json`` back): the test metrics
  (``eval/...``), the validation metrics (``val/...``) and the run's wall seconds."""
  from labelwise.train import trainer
  done = os.path.join(workdir, "study.json")
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  t0 = time.time()
  t = trainer.Trainer(config, workdir)
  results = dict(t.run())
  if results.get("preempted"):  # stopped by a signal: no study.json, the next start resumes it
    raise SystemExit(f"stopped: {workdir} was preempted at step {results['step']}; rerun to resume.")
  t.eval_split = config.data.validation_split
  results.update({"val/" + k[len("eval/"):]: v for k, v in t.evaluate(t.host_state).items()})
  results["seconds"] = time.time() - t0
  with open(done, "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  return results


def grid_points(grid) -> list:
  """A grid's points: the product of a ``{key: values}`` mapping, or a list of ``{key: value}``
  points as given (e.g. a fraction of a product), all with the same keys."""
  if isinstance(grid, Mapping):
    return tuning.Arm("", None, grid).points()
  points = [dict(p) for p in grid]
  if not points or any(set(p) != set(points[0]) for p in points):
    raise ValueError(f"`grid` must be a mapping of keys to values or a non-empty list of points "
                     f"with the same keys, got {grid!r}.")
  return points


def select(replicas: Sequence[Mapping[str, Any]], keys: Sequence[str], how: str) -> Dict[str, Any]:
  """``train.sweep.select`` over ``replicas`` (dicts with ``"overrides"``): the chosen point and
  its validation statistics over the replicas given."""
  sweep = sweep_lib.Sweep(spec="", keys=("seed", *keys),
                          points=tuple(r["overrides"] for r in replicas))
  chosen = sweep_lib.select(sweep_lib.summarize(sweep, [dict(r) for r in replicas]), how)
  return {"by": how, "point": chosen["point"], "val": chosen["val"]}


def run_arm(config, grid, workdir: str, *, seeds: Iterable[int],
            select_by: str, tune_seeds: Optional[Iterable[int]] = None,
            log=print) -> Dict[str, Any]:
  """Every grid point (:func:`grid_points`) x seed of one arm (``tune_seeds``: the grid on those,
  the chosen point on every seed); ``{"replicas": [...], "selected": {"by", "point", "val", "tuned_on"}}`` in the
  format of ``experiments.tuning.run_arm`` (its ``selected``/``at_point``/``values`` read it)."""
  seeds = [int(s) for s in seeds]
  tune = seeds if tune_seeds is None else [int(s) for s in tune_seeds]
  points = grid_points(grid)
  keys = list(points[0])

  def one(point, seed):
    c = copy.deepcopy(config)
    c.seed = seed
    for k, v in point.items():
      tuning.set_dotted(c, k, v)
    name = os.path.join(workdir, tuning._key_name(point), f"seed{seed}")
    r = run_one(c, name)
    log(f"    {tuning.point_label(point):40s} seed {seed}: val acc "
        f"{r.get('val/accuracy', float('nan')):.4f}  test acc {r.get('eval/accuracy', float('nan')):.4f}"
        f"  ({r.get('seconds', 0):.0f} s)")
    return {"overrides": {**point, "seed": seed}, **r}

  replicas = [one(p, s) for p in points for s in tune]
  chosen = select(replicas, keys, select_by)
  replicas += [one(chosen["point"], s) for s in seeds if s not in tune]
  if tune_seeds is not None:  # the chosen point's validation statistics over every seed
    chosen["val"] = select(tuning.at_point({"replicas": replicas}, chosen["point"]), keys,
                           select_by)["val"]
  chosen["tuned_on"] = tune
  return {"replicas": replicas, "selected": chosen}


def attach_section(md_path: str, marker: str, section: str) -> None:
  """Puts ``section`` into ``md_path`` after ``marker`` (replacing what followed a previous one;
  appended with the marker when the file has none; the file is created when missing)."""
  text = open(md_path).read() if os.path.exists(md_path) else ""
  head = text.split(marker, 1)[0].rstrip("\n") if marker in text else text.rstrip("\n")
  with open(md_path, "w") as f:
    f.write((head + "\n\n" if head else "") + marker + "\n\n" + section.rstrip("\n") + "\n")


def kept_section(md_path: str, marker: str) -> str:
  """What follows ``marker`` in ``md_path`` (with the marker), or ``""``: a part that re-renders
  its own sections of the file keeps the others'."""
  if not os.path.exists(md_path):
    return ""
  text = open(md_path).read()
  return "" if marker not in text else marker + text.split(marker, 1)[1]


# ------------------------------------------------------------------------------------------------
# the two ends of every part's main(): re-render from the raw JSON, or save and render a new run
# ------------------------------------------------------------------------------------------------

def render_saved(out: str, name: str, write_report):
  """``--report_only``: reads ``<out>/<name>.json`` and re-renders the part's report with the
  provenance recorded next to it; returns the results."""
  from labelwise.experiments import provenance
  with open(os.path.join(out, name + ".json")) as f:
    res = json.load(f)
  write_report(res, out, provenance.load(os.path.join(out, name + ".md")))
  return res


def save_and_render(res: Dict[str, Any], args, name: str, record, t0: float, write_report):
  """Stamps ``res["_meta"]`` with the wall time and the closing load average, writes
  ``<out>/<name>.json``, the provenance of ``<out>/<name>.md`` and the report; returns ``res``."""
  from labelwise.experiments import provenance
  res["_meta"]["seconds"] = time.time() - t0
  res["_meta"]["load_end"] = os.getloadavg()[0]
  with open(os.path.join(args.out, name + ".json"), "w") as f:
    json.dump(res, f, indent=1)
  md = os.path.join(args.out, name + ".md")
  record = provenance.write(md, record=record,
                            extra={"seconds": res["_meta"]["seconds"], "smoke": bool(args.smoke),
                                   "load_average": [res["_meta"]["load_start"],
                                                    res["_meta"]["load_end"]]})
  write_report(res, args.out, record)
  print(f"wrote {md} ({res['_meta']['seconds']:.0f} s)")
  return res
