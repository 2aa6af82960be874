"""The SimLoss study's tiny smoke version (experiments/simloss/run.py --smoke) trains through the
trainer and writes its table, plot and raw numbers; its numbers show the effect the study is about."""

import json

import numpy as np


def test_study_smoke(tmp_path):
  from labelwise.experiments.simloss import run
  out = tmp_path / "out"
  res = run.main(["--smoke", "--out", str(out), "--workdir", str(tmp_path / "runs")])
  md = (out / "results.md").read_text()
  assert "E1: diabetes_ordinal" in md and "E2: hierarchy_gaussians" in md
  assert "| SimLoss | reduction_factor=0.9 |" in md and "| CE | learning_rate=0.001 |" in md
  assert "Δ accuracy" in md
  assert (out / "simloss.png").stat().st_size > 10_000
  raw = json.loads((out / "results.json").read_text())
  assert raw["_meta"]["smoke"] is True
  assert raw["E2"]["SimLoss"]["selected"] == json.loads(json.dumps(res["E2"]["SimLoss"]["selected"]))
  # 2 seeds per arm, each a trainer run with test (eval/) and validation (val/) metrics in range.
  for e in ("E1", "E2"):
    for arm in ("CE", "SimLoss"):
      reps = raw[e][arm]["replicas"]
      assert [r["overrides"]["seed"] for r in reps] == [0, 1], (e, arm)
      for r in reps:
        assert 0.0 <= r["eval/accuracy"] <= 1.0 and 0.0 <= r["val/accuracy"] <= 1.0
        assert all(np.isfinite(v) for k, v in r.items() if k.startswith(("eval/", "val/")))
  # The paired difference in the table is the mean of per-seed differences.
  acc = lambda e, a: [r["eval/accuracy"] for r in raw[e][a]["replicas"]]  # noqa: E731
  assert f"{np.mean(np.subtract(acc('E1', 'SimLoss'), acc('E1', 'CE'))):+.3f}" in md
  # The effect itself (large margin even after 30 steps): a superclass similarity keeps mistakes
  # inside the superclass far more often than cross-entropy.
  fsa = lambda a: np.mean([r["eval/failed_superclass_accuracy"]  # noqa: E731
                           for r in raw["E2"][a]["replicas"]])
  assert fsa("SimLoss") > fsa("CE") + 0.05
  # Provenance: the record beside the table holds the study settings, seeds and the git commit,
  # and the table's footer names it; re-rendering from results.json keeps the table.
  prov = json.loads((out / "results.provenance.json").read_text())
  assert prov["seeds"] == [0, 1] and prov["configs"]["args"]["smoke"] is True
  assert prov["configs"]["E1"]["SimLoss"]["config"]["total_steps"] == 30
  assert prov["configs"]["E2"]["SimLoss"]["validation"] == "validation"
  assert prov["extra"]["smoke"] is True and prov["packages"]["jax"] and "commit" in prov["git"]
  run.main(["--report_only", "--out", str(out)])
  assert (out / "results.md").read_text() == md
