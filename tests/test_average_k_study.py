"""The average-K study's smoke mode (experiments/average_k/run.py --quick) trains through the trainer,
one sweep per arm, and writes tables and raw numbers whose choices are the validation argmax."""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  from labelwise.experiments.average_k import run
  tmp = tmp_path_factory.mktemp("avgk")
  out, runs = tmp / "out", tmp / "runs"
  res = run.main(["--quick", "--out", str(out), "--workdir", str(runs)])
  return run, res, out, runs


def test_quick_runs_each_arm_as_one_trainer_sweep(quick):
  run, res, out, runs = quick
  raw = json.loads((out / "results.json").read_text())
  assert raw["_meta"]["quick"] is True and raw["_meta"]["seeds"] == [0, 1]
  assert sorted(raw["arms"]) == ["ce|n1000", "two_head|n1000|K2"]
  for name, arm in raw["arms"].items():
    grid = run.grid_for(arm["variant"], 1000)
    (key, values), = grid.items()
    # 2 grid points x 2 seeds, every combination once, as ONE config.sweep.
    assert arm["sweeps"] == [f"{key}={values[0]!r},{values[1]!r};seed=0,1"]
    assert [tuple(r["overrides"].values()) for r in arm["replicas"]] == [
        (values[0], 0), (values[0], 1), (values[1], 0), (values[1], 1)]
    for r in arm["replicas"]:
      vals = [v for k, v in r.items() if k.startswith(("val/", "eval/"))]
      assert vals and all(np.isfinite(vals))
  # Each arm is one trainer run (one workdir, the trainer's own files), read back on a rerun.
  for sub in ("n1000/ce", "n1000/two_head_K2"):
    assert (runs / sub / "study.json").exists() and (runs / sub / "metrics.jsonl").exists()
    lines = [json.loads(x) for x in (runs / sub / "metrics.jsonl").read_text().splitlines()]
    assert {x.get("replica") for x in lines if "replica" in x} == {0, 1, 2, 3}


def test_chosen_point_is_the_validation_argmax(quick):
  """An independent recomputation: mean over seeds of each point's val metric, then argmax."""
  run, res, out, _ = quick
  raw = json.loads((out / "results.json").read_text())
  for name, arm in raw["arms"].items():
    head = {"ce": "softmax", "two_head": "multilabel"}[arm["variant"]]
    key = f"val/avgk/{head}/K2/accuracy"
    by_point = {}
    for r in arm["replicas"]:
      point = tuple((k, v) for k, v in r["overrides"].items() if k != "seed")
      by_point.setdefault(point, []).append(r[key])
    means = {p: float(np.mean(v)) for p, v in by_point.items()}
    best = max(means, key=lambda p: (means[p], -list(means).index(p)))
    sel = arm["selected"]["K2"]
    assert sel["by"] == key + ":max"
    assert sel["point"] == dict(best), (name, means)
    assert sel["val_mean"] == pytest.approx(means[best])
    assert [q["mean"] for q in sel["val_means"]] == pytest.approx(list(means.values()))
  md = (out / "results.md").read_text()
  ce = raw["arms"]["ce|n1000"]["selected"]["K2"]["point"]
  assert f"| 1000 | softmax thresholding (CE) | learning_rate={ce['optimizer.learning_rate']:g}" in md


def test_tables_parse_and_report_the_chosen_replicas(quick):
  run, res, out, _ = quick
  raw = json.loads((out / "results.json").read_text())
  md = (out / "results.md").read_text()
  assert "## K = 2" in md and "## Paper claim vs this study" in md and "## Every grid point" in md
  assert "Old (own loop)" not in md    # a 10-step run is not compared with the 1500-step one
  rows = [line for line in md.splitlines() if line.startswith("| 1000 |")]
  assert len(rows) == 4    # oracle, CE, two-head (multi-label head), its softmax head
  for line in rows:
    assert len(line.strip("|").split("|")) == 10
  # The CE row's regret is the mean over the chosen point's seeds, recomputed here.
  arm = raw["arms"]["ce|n1000"]
  point = arm["selected"]["K2"]["point"]
  reg = [r["eval/avgk/softmax/K2/regret"] for r in arm["replicas"]
         if all(r["overrides"][k] == v for k, v in point.items())]
  assert len(reg) == 2
  ce_row = next(line for line in rows if "softmax thresholding (CE)" in line)
  assert f"{100 * np.mean(reg):.2f} ± {100 * np.std(reg, ddof=1):.2f}" in ce_row
  # The paired two-head - CE difference is the mean of per-seed differences.
  th = raw["arms"]["two_head|n1000|K2"]
  tp = th["selected"]["K2"]["point"]
  a = {r["overrides"]["seed"]: r["eval/avgk/multilabel/K2/accuracy"] for r in th["replicas"]
       if all(r["overrides"][k] == v for k, v in tp.items())}
  b = {r["overrides"]["seed"]: r["eval/avgk/softmax/K2/accuracy"] for r in arm["replicas"]
       if all(r["overrides"][k] == v for k, v in point.items())}
  d = np.mean([a[s] - b[s] for s in (0, 1)])
  assert f"| 2 | 1000 | {100 * d:+.2f} [" in md
  assert (out / "regret.png").stat().st_size > 10_000
  # Re-rendering from results.json gives the same table.
  run.main(["--report_only", "--out", str(out)])
  assert (out / "results.md").read_text() == md


def test_report_keeps_the_fashion_mnist_section(quick):
  """Re-rendering the offline tables keeps the Fashion-MNIST part's section after its marker
  (without ``kept_section`` in ``write_report`` the section was dropped)."""
  from labelwise.experiments.average_k import fashion_mnist
  run, _, out, _ = quick
  md_path = out / "results.md"
  offline = md_path.read_text()
  section = fashion_mnist.MARKER + "\n## Fashion-MNIST part\n\nits tables\n"
  md_path.write_text(offline + "\n" + section)
  run.main(["--report_only", "--out", str(out)])
  text = md_path.read_text()
  assert text.startswith(offline) and text.endswith(section) and text.count(fashion_mnist.MARKER) == 1
  md_path.write_text(offline)


def test_bad_variant_is_refused(tmp_path):
  from labelwise.experiments.average_k import run
  with pytest.raises(ValueError, match="--variants"):
    run.main(["--quick", "--variants", "softmax", "--out", str(tmp_path)])


def test_edge_check_tries_the_value_beyond_the_chosen_end(quick, tmp_path):
  """With 2-point grids every choice lies at an end: --edge_check trains the value beyond it."""
  import shutil
  run, _, out, runs = quick
  mine = tmp_path / "out"
  shutil.copytree(out, mine)
  res = run.main(["--edge_check", "--out", str(mine), "--workdir", str(runs)])
  raw = json.loads((mine / "results.json").read_text())
  assert raw["edge_checks"] == json.loads(json.dumps(res["edge_checks"]))
  assert sorted(raw["edge_checks"]) == sorted(raw["arms"])
  md = (mine / "results.md").read_text()
  assert "## Choices at a grid end" in md
  moved = 0
  for name, arm in raw["arms"].items():
    (key, grid), = run.grid_for(arm["variant"], 1000).items()
    chosen = arm["selected"]["K2"]["point"][key]
    want = run.beyond(grid[:2], chosen)       # the quick grid: its first two values
    check = raw["edge_checks"][name]
    assert {r["overrides"][key] for r in check["replicas"]} == {want}
    assert [r["overrides"]["seed"] for r in check["replicas"]] == [0, 1]
    head = run.SELECT_HEAD[arm["variant"]]
    beyond = np.mean([r[f"val/avgk/{head}/K2/accuracy"] for r in check["replicas"]])
    moved += beyond > arm["selected"]["K2"]["val_mean"]
  assert f"would move beyond the grid in {moved} of 2 such cells" in md


def test_beyond_is_one_rung_past_the_end_on_the_1_3_10_ladder():
  from labelwise.experiments.average_k import run
  lr = (3e-4, 1e-3, 3e-3, 1e-2)
  assert run.beyond(lr, 3e-4) == 1e-4 and run.beyond(lr, 1e-2) == 3e-2
  assert run.beyond((1.0, 3.0, 10.0, 30.0), 1.0) == 0.3
  assert run.beyond((1.0, 3.0, 10.0, 30.0), 30.0) == 100.0
  assert run.beyond((30.0, 100.0, 300.0, 1000.0), 1000.0) == 3000.0
  assert run.beyond((3e-5, 1e-4, 3e-4, 1e-3), 3e-5) == 1e-5
  with pytest.raises(ValueError, match="not an end"):
    run.beyond(lr, 1e-3)
  with pytest.raises(ValueError, match="ladder"):
    run.beyond((5.0, 50.0), 5.0)


def test_every_arm_has_the_same_budget_at_every_size():
  from labelwise.experiments.average_k import run
  for n in (1000, 4000, 32000):
    sizes = {len(run.tuning.Arm("", None, run.grid_for(v, n)).points()) for v in run.VARIANTS}
    assert sizes == {4}, n
  assert run.grid_for("ce", 1000) != run.grid_for("ce", 4000) == run.GRIDS["ce"]


def _arm(variant, n, values, key="optimizer.learning_rate", k_train=None):
  """A hand-made compact arm: 2 seeds per value, chosen at the first value at K2."""
  reps = [{"overrides": {key: v, "seed": s}, "eval/avgk/softmax/K2/regret": 0.01 * s}
          for v in values for s in (0, 1)]
  return {"variant": variant, "n_train": n, "k_train": k_train, "sweeps": [], "replicas": reps,
          "selected": {"K2": {"point": {key: values[0]}, "val_mean": 0.5,
                              "at_edge": {key: True}, "val_means": []}}}


def test_keep_sizes_keeps_the_other_sizes_and_the_previous_grid(tmp_path):
  from labelwise.experiments.average_k import run
  meta = {"quick": False, "seeds": [0, 1], "steps": 1500, "ks": [2.0], "variants": ["ce"],
          "validation": "validation"}
  old = {"_meta": {**meta, "n_train": [1000, 4000], "seconds": 90.0,
                   "grids": {"ce": {run.LR: [3e-4, 1e-3]}}},
         "arms": {"ce|n1000": _arm("ce", 1000, [3e-4, 1e-3]),
                  "ce|n4000": _arm("ce", 4000, [3e-4, 1e-3])},
         "edge_checks": {"ce|n1000": _arm("ce", 1000, [1e-4]),
                         "ce|n4000": _arm("ce", 4000, [1e-4])}}
  path = tmp_path / "results.json"
  path.write_text(json.dumps(old))
  new = {"_meta": {**meta, "n_train": [1000], "seconds": 10.0,
                   "grids_by_n": {"1000": {"ce": {run.LR: [1e-4, 3e-4]}}}},
         "arms": {"ce|n1000": _arm("ce", 1000, [1e-4, 3e-4])}}
  out = run.merge_kept(new, run.keep_sizes(new, str(path)))
  assert list(out["arms"]) == ["ce|n1000", "ce|n4000"]
  assert out["arms"]["ce|n1000"] == new["arms"]["ce|n1000"]          # the rerun size: new
  assert out["arms"]["ce|n4000"] == old["arms"]["ce|n4000"]          # kept as it was
  assert out["edge_checks"] == {"ce|n4000": old["edge_checks"]["ce|n4000"]}  # 1000's is stale
  assert out["_meta"]["n_train"] == [1000, 4000]
  assert out["_meta"]["grids_by_n"] == {"1000": {"ce": {run.LR: [1e-4, 3e-4]}},
                                        "4000": {"ce": {run.LR: [3e-4, 1e-3]}}}
  assert out["_meta"]["kept"]["n_train"] == [4000] and out["_meta"]["kept"]["seconds"] == 90.0
  prev = out["previous"]
  assert prev["n_train"] == [1000] and prev["arms"] == {"ce|n1000": old["arms"]["ce|n1000"]}
  assert prev["edge_checks"] == {"ce|n1000": old["edge_checks"]["ce|n1000"]}
  assert prev["grids_by_n"] == {"1000": {"ce": {run.LR: [3e-4, 1e-3]}}}
  # A second rerun of the same size keeps the first 'previous' (not the rerun's own arms).
  path.write_text(json.dumps(out))
  again = run.merge_kept(new, run.keep_sizes(new, str(path)))
  assert again["previous"] == prev and again["_meta"]["kept"] == out["_meta"]["kept"]
  # The same grids as before: nothing to compare, no 'previous'.
  path.write_text(json.dumps({k: v for k, v in out.items() if k != "previous"}))
  assert "previous" not in run.merge_kept(new, run.keep_sizes(new, str(path)))
  # A run of other seeds is not mixed in.
  path.write_text(json.dumps({**old, "_meta": {**old["_meta"], "seeds": [0, 1, 2]}}))
  with pytest.raises(ValueError, match="--keep_sizes.*seeds"):
    run.keep_sizes(new, str(path))
  with pytest.raises(ValueError, match="--keep_sizes: no"):
    run.keep_sizes(new, str(tmp_path / "none.json"))


def test_lr_probe_trains_the_two_head_on_lr_x_alpha(quick, tmp_path):
  """--lr_probe: one more sweep for the two-head (learning rate x alpha, the quick run's first two
  values of each), chosen on validation, reported next to CE with a paired difference."""
  import shutil
  run, _, out, runs = quick
  mine = tmp_path / "out"
  shutil.copytree(out, mine)
  run.main(["--lr_probe", "--out", str(mine), "--workdir", str(runs)])
  raw = json.loads((mine / "results.json").read_text())
  probe = raw["lr_probe"]["two_head|n1000|K2"]
  lrs, alphas = (v[:2] for v in run.LR_PROBE["grid"].values())
  assert [tuple(r["overrides"].values()) for r in probe["replicas"]] == [
      (a, b, s) for a in lrs for b in alphas for s in (0, 1)]
  # The choice is the validation argmax over the 4 points (recomputed here).
  means = {}
  for r in probe["replicas"]:
    p = (r["overrides"][run.LR], r["overrides"]["two_head.weight"])
    means.setdefault(p, []).append(r["val/avgk/multilabel/K2/accuracy"])
  best = max(means, key=lambda p: (np.mean(means[p]), -list(means).index(p)))
  assert probe["selected"]["K2"]["point"] == {run.LR: best[0], "two_head.weight": best[1]}
  md = (mine / "results.md").read_text()
  assert "## Probe: the two-head rules with the learning rate tuned too" in md
  ce = raw["arms"]["ce|n1000"]
  pick = lambda arm: {r["overrides"]["seed"]: r for r in run.chosen(arm, 2.0)}  # noqa: E731
  a, b = pick(probe), pick(ce)
  d = np.mean([a[s]["eval/avgk/multilabel/K2/accuracy"] - b[s]["eval/avgk/softmax/K2/accuracy"]
               for s in (0, 1)])
  assert f"Chosen point minus CE (learning_rate=" in md and f"{100 * d:+.2f} [" in md
