"""Every study script records its provenance next to the table it writes (issue 9, item 6).

Each study runs here in a tiny version (a few steps, one seed); the test reads back the
``results.provenance.json`` it wrote beside ``results.md`` and the footer under the table, and checks
that re-rendering the table from saved numbers keeps the record of the run that produced them. The
SimLoss study's smoke test (tests/test_simloss_study.py) does the same for that study.
"""

import json
import subprocess

import pytest

from labelwise.experiments import provenance


def _git_head():
  res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                       cwd=provenance._REPO)
  return res.stdout.strip() if res.returncode == 0 else None


def _check(out, *, seeds, args_key, args_value):
  md = (out / "results.md").read_text()
  prov = json.loads((out / "results.provenance.json").read_text())
  assert prov["seeds"] == seeds
  assert prov["configs"]["args"][args_key] == args_value
  assert prov["packages"]["jax"] and prov["packages"]["flax"]
  assert prov["extra"]["seconds"] > 0 and prov["finished_utc"] >= prov["created_utc"]
  head = _git_head()
  if head:  # a git checkout: the record names the commit, and the footer its first 12 digits
    assert prov["git"]["commit"] == head and head[:12] in md
  assert md.rstrip().splitlines()[-1].startswith("_Provenance: commit")
  assert "`results.provenance.json`" in md
  return md, prov


def _run_script(name, args):
  # Each study is a script (experiments/ is not a package of modules with a stable API); import its
  # main the way the tests of the SimLoss study do.
  import importlib
  return importlib.import_module(f"labelwise.experiments.{name}.run").main(args)


def test_fierce_study_records_provenance(tmp_path):
  out = tmp_path / "out"
  args = ["--smoke", "--bottleneck", "0", "--out", str(out), "--workdir", str(tmp_path / "runs")]
  _run_script("fierce", args)
  md, prov = _check(out, seeds=[0], args_key="steps", args_value=5)
  # The smoke run trains the first grid point of every arm, through the trainer configs.
  fierce = prov["configs"]["arms"]["halves"]["FIERCE"]
  assert fierce["grid"] == {"fierce.lambda": [0.5], "fierce.logit_scale": [1.0],
                            "fierce.temperature": [1.0]}
  assert fierce["config"]["method"] == "fierce" and fierce["config"]["total_steps"] == 5
  assert prov["configs"]["coarse_maps"] == {"halves": [0] * 5 + [1] * 5}
  assert "| FIERCE | lambda=0.5, logit_scale=1, temperature=1 |" in md
  _run_script("fierce", ["--render", "--out", str(out)])
  assert (out / "results.md").read_text() == md
  # A second run reads the finished trainer runs back instead of retraining them.
  done = sorted((tmp_path / "runs").rglob("study.json"))
  assert len(done) == 4    # the upper bound and three arms, one point and one seed each
  stamps = [p.stat().st_mtime_ns for p in done]
  again = _run_script("fierce", args)
  assert [p.stat().st_mtime_ns for p in done] == stamps
  assert again["main"] == json.loads((out / "results.json").read_text())["main"]


def test_average_k_study_records_provenance(tmp_path):
  args = ["--quick", "--variants", "ce", "epr", "--out", str(tmp_path / "out"),
          "--workdir", str(tmp_path / "runs")]
  _run_script("average_k", args)
  md, prov = _check(tmp_path / "out", seeds=[0, 1], args_key="quick", args_value=True)
  # The trainer configs (arms) of the variants that ran, each with its grid and validation split.
  assert set(prov["configs"]) == {"args", "grid", "select", "validation", "ce", "epr"}
  epr = prov["configs"]["epr"]
  assert epr["config"]["method"] == "epr" and epr["config"]["total_steps"] == 10
  # (--quick: n_train 1000, the first two values of that size's grid, lambda {30, 100, 300, 1000})
  assert epr["grid"] == {"epr.weight": [30.0, 100.0]} and epr["validation"] == "validation[:1000]"
  raw = json.loads((tmp_path / "out" / "results.json").read_text())
  assert {r["overrides"]["epr.weight"] for r in raw["arms"]["epr|n1000|K2"]["replicas"]} == {
      30.0, 100.0}
  _run_script("average_k", ["--report_only", "--out", str(tmp_path / "out")])
  assert (tmp_path / "out" / "results.md").read_text() == md


def test_attribution_study_records_provenance_and_reused_runs(tmp_path):
  args = ["--smoke", "--only", "ce", "--workdir", str(tmp_path / "runs"),
          "--out", str(tmp_path / "out")]
  _run_script("attribution", args)
  _, prov = _check(tmp_path / "out", seeds=[0, 1], args_key="steps", args_value=4)
  assert prov["configs"]["arms"]["ce"]["config"]["method"] == "ce"
  assert prov["configs"]["arms"]["ce"]["validation"] == "valid_id"
  assert prov["extra"]["reused_arms"] == []
  # A second call finds the finished sweep in the workdir; the record says it was not retrained.
  _run_script("attribution", args)
  md, prov = _check(tmp_path / "out", seeds=[0, 1], args_key="steps", args_value=4)
  assert prov["extra"]["reused_arms"] == ["ce"] and "not retrained" in prov["extra"]["note"]


def test_collision_report_keeps_the_hand_written_reading(tmp_path):
  from labelwise.experiments.collision import run
  import argparse
  args = argparse.Namespace(quick=True, soft_seeds=2, cluster_seeds=2, soft_steps=1,
                            cluster_steps=1)
  soft = [dict(noise=n, level=lv, model=m, loss=loss, acc=[0.5, 0.6])
          for n, lv in (("mix", 0.0), ("flat", 0.3)) for m in ("linear", "mlp")
          for loss in ("shannon", "collision")]
  cluster = [dict(dataset="digits", method="kmeans", acc=[0.7, 0.8], nmi=[0.6, 0.7],
                  ari=[0.5, 0.6], em_iterations=[])]
  record = provenance.write(str(tmp_path / "results.md"), configs={"args": vars(args)},
                            seeds=[0, 1], extra={"seconds": 1.0})
  run.write_markdown(soft, cluster, args, 1.0, str(tmp_path), record)
  first = (tmp_path / "results.md").read_text()
  assert run.HAND_WRITTEN not in first and first.rstrip().endswith("`results.provenance.json`._")
  # A reading written by hand under the tables survives regeneration, once, above the footer.
  (tmp_path / "results.md").write_text(
      first.split("\n\n_Provenance")[0] + "\n\n" + run.HAND_WRITTEN + " after the run)\n\n- x.\n"
      + provenance.footer(record))
  for _ in range(2):
    run.write_markdown(soft, cluster, args, 1.0, str(tmp_path), record)
    md = (tmp_path / "results.md").read_text()
    assert md.count(run.HAND_WRITTEN) == 1 and md.count("_Provenance") == 1
    assert md.count("check it against the numbers") == 1
    assert md.index("- x.") < md.index("_Provenance")


@pytest.mark.slow
def test_collision_quick_study_records_provenance(tmp_path):
  from labelwise.experiments.collision import run
  run.main(["--quick", "--outdir", str(tmp_path), "--workdir", str(tmp_path / "runs")])
  md, _ = _check(tmp_path, seeds=[0, 1], args_key="quick", args_value=True)
  assert "| mix | 0.9 | mlp |" in md and "| mnist1d | mi |" in md


def test_collision_arms_are_one_sweep_and_the_rate_is_chosen_per_level_on_validation():
  from labelwise.experiments.collision import run
  from labelwise.train import sweep as sweep_lib
  config = run.soft_config("flat", "mlp", "collision", seeds=[0, 1], steps=3)
  sweep = sweep_lib.parse(config)
  assert sweep.num_replicas == 2 * len(run.SOFT_LEVELS["flat"]) * len(run.LR_GRID)
  assert config.sweep_select == "val/accuracy:max" and config.data.validation_fraction > 0
  # A hand-made sweep result: at level 0.3 the larger rate wins on validation, at 0.8 the smaller,
  # although its test accuracy is worse (the test split never takes part in the choice).
  val = {(0.3, 1e-3): 0.5, (0.3, 3e-3): 0.7, (0.5, 1e-3): 0.6, (0.5, 3e-3): 0.6,
         (0.8, 1e-3): 0.4, (0.8, 3e-3): 0.2}
  replicas = [{"overrides": dict(p), "val/accuracy": val[p["collision_soft.noise_level"],
                                                         p["optimizer.learning_rate"]] + p["seed"],
               "eval/accuracy": 0.1 * p["seed"] + p["optimizer.learning_rate"]}
              for p in sweep.points]
  results = {"replicas": replicas, "summary": sweep_lib.summarize(sweep, replicas)}
  rows = run.soft_rows_of(results, noise="flat", model="mlp", loss="collision")
  assert [(r["level"], r["lr"]) for r in rows] == [(0.3, 3e-3), (0.5, 1e-3), (0.8, 1e-3)]
  assert rows[2]["acc"] == pytest.approx([1e-3, 0.1 + 1e-3]) and rows[2]["seeds"] == [0, 1]


def test_machine_paths_are_made_portable(tmp_path):
  """The checkout (its real path and the path it was imported through), home and the temporary
  directory do not reach a committed record."""
  import os
  import tempfile
  text = " ".join([os.path.join(provenance._REPO, "experiments", "fierce"),
                   os.path.join(provenance._REPO_AS_IMPORTED, "experiments"),
                   os.path.join(tempfile.gettempdir(), "study_runs", "fierce")])
  out = provenance.portable(text)
  assert out == "<repo>/experiments/fierce <repo>/experiments <tmp>/study_runs/fierce"
  assert provenance._REPO == os.path.realpath(provenance._REPO)
