"""The SimLoss study's tiny smoke version (experiments/simloss/run.py --smoke) runs and writes its
table, plot and raw numbers; its numbers show the effect the study is about."""

import json

import numpy as np


def test_study_smoke(tmp_path):
  from labelwise.experiments.simloss import run
  e1, e2 = run.main(["--smoke", "--out", str(tmp_path)])
  md = (tmp_path / "results.md").read_text()
  assert "E1: diabetes_ordinal" in md and "E2: hierarchy_gaussians" in md
  assert "| simloss r=0.9 |" in md and "| CE |" in md and "Δ accuracy" in md
  assert (tmp_path / "simloss.png").stat().st_size > 10_000
  raw = json.loads((tmp_path / "results.json").read_text())
  assert raw.pop("_meta")["smoke"] is True
  assert "E2|linear|hierarchical soft b=2" in raw and "E1|linear|SORD scale=1" in raw
  # 2 CV splits in E1, 2 seeds in E2; every metric finite and in range.
  for key, v in raw.items():
    assert len(v["runs"]) == 2, key
    for run_metrics in v["runs"]:
      assert all(np.isfinite(x) for x in run_metrics.values()), key
      assert 0.0 <= run_metrics["accuracy"] <= 1.0
  # The paired difference in the table is the mean of per-run differences.
  ce = [q["accuracy"] for q in raw["E1|linear|CE"]["runs"]]
  r9 = [q["accuracy"] for q in raw["E1|linear|simloss r=0.9"]["runs"]]
  assert f"{np.mean(np.subtract(r9, ce)):+.3f}" in md
  # The effect itself (large margin even after 30 steps): a superclass similarity keeps mistakes
  # inside the superclass far more often than cross-entropy.
  fsa = lambda k: np.mean([q["failed_superclass_accuracy"] for q in raw[k]["runs"]])
  assert fsa("E2|linear|simloss r=0.9") > fsa("E2|linear|CE") + 0.05
  # Provenance: the record beside the table holds the study settings, seeds and the git commit,
  # and the table's footer names it; re-rendering from results.json keeps that record.
  prov = json.loads((tmp_path / "results.provenance.json").read_text())
  assert prov["seeds"] == [0, 1] and prov["configs"]["args"]["smoke"] is True
  assert prov["configs"]["E1"]["steps"] == 30 and prov["extra"]["smoke"] is True
  assert prov["packages"]["jax"] and "commit" in prov["git"]
  assert "results.provenance.json" in md and "_Provenance: commit" in md
  run.main(["--report_only", "--out", str(tmp_path)])
  assert (tmp_path / "results.md").read_text() == md
