"""The studies' Fashion-MNIST parts on tiny IDX files written here (no Debian package needed): the
SimLoss part (``experiments/simloss/run.py --part fashion_mnist --smoke``) trains through the
trainer, chooses on the validation split only and writes its section, plots and raw numbers."""

import json

import numpy as np
import pytest

from tests.test_fashion_mnist import accepted


def test_simloss_part_smoke(tiny_dirs, tmp_path, monkeypatch):
  from labelwise.data.builders import fashion_mnist as fm
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.simloss import fashion_mnist as part
  from labelwise.experiments.simloss import run
  arrays, sha, data_dir, files = tiny_dirs
  out = tmp_path / "out"
  (out).mkdir()
  (out / "results.md").write_text("# SimLoss study results\n\noffline tables\n")
  with accepted(sha) as mp:
    mp.setattr(fm, "debian_folder", lambda: None)
    res = run.main(["--part", "fashion_mnist", "--smoke", "--data_dir", data_dir,
                    "--manual_dir", files, "--out", str(out), "--workdir", str(tmp_path / "runs")])
  raw = json.loads((out / "results_fashion_mnist.json").read_text())
  assert raw["_meta"]["smoke"] is True and raw["select"] == "val/accuracy:max"
  test_labels = arrays["test_labels"]
  for arm, grid in part.SMOKE_ARMS.items():
    reps = raw[arm]["replicas"]
    assert [r["overrides"]["seed"] for r in reps] == [0, 1] * len(next(iter(grid[1].values())))
    for r in reps:
      for k in ("accuracy", "superclass_accuracy", "failed_superclass_accuracy"):
        assert 0.0 <= r[f"eval/{k}"] <= 1.0 and 0.0 <= r[f"val/{k}"] <= 1.0
      assert 1.0 <= r["eval/mistake_severity"] <= 3.0
      assert r["eval/num_examples"] == len(test_labels) and r["val/num_examples"] == 20
      m = np.asarray(r["confusion"])    # the test split's, rows the label
      np.testing.assert_array_equal(m.sum(1), np.bincount(test_labels, minlength=10))
      assert np.trace(m) / m.sum() == pytest.approx(r["eval/accuracy"], abs=1e-6)
    # The choice reads only the validation metric: the best mean val accuracy over seeds.
    points = {}
    for r in reps:
      key = tuple(v for k, v in r["overrides"].items() if k != "seed")
      points.setdefault(key, []).append(r["val/accuracy"])
    best = max(points, key=lambda p: (np.mean(points[p]), -list(points).index(p)))
    assert tuple(raw[arm]["selected"]["point"].values()) == best
  assert raw["SimLoss"]["selected"] == json.loads(json.dumps(res["SimLoss"]["selected"]))
  # The r curve starts at r = 0 with CE's runs at the SimLoss arm's learning rate.
  curve = part.curve(raw)
  assert [r for r, _ in curve] == [0.0, 0.1, 0.7]
  assert [q["eval/accuracy"] for q in curve[0][1]] == [
      q["eval/accuracy"] for q in raw["CE"]["replicas"] if q["overrides"]
      ["optimizer.learning_rate"] == part.SIM_LR]
  md = (out / "results_fashion_mnist.md").read_text()
  assert "Fashion-MNIST part" in md and "| SimLoss |" in md and "Δ SimLoss − CE" in md
  assert "0.916-0.934" in md and "Paper claim vs. this part" in md
  for png in ("fashion_mnist_r.png", "fashion_mnist_confusion.png"):
    assert (out / png).stat().st_size > 10_000
  prov = json.loads((out / "results_fashion_mnist.provenance.json").read_text())
  assert prov["seeds"] == [0, 1] and prov["configs"]["args"]["smoke"] is True
  assert prov["configs"]["CE"]["validation"] == "validation"
  # results.md: the offline part's text kept, this part's section after the marker.
  both = (out / "results.md").read_text()
  assert both.startswith("# SimLoss study results\n\noffline tables\n")
  assert fashion_mnist_runs.kept_section(str(out / "results.md"), part.MARKER).startswith(part.MARKER)
  # Re-rendering from the json gives the same section, and replaces it rather than appending.
  run.main(["--part", "fashion_mnist", "--report_only", "--out", str(out)])
  assert (out / "results_fashion_mnist.md").read_text() == md
  assert (out / "results.md").read_text() == both


def test_attach_and_keep_sections(tmp_path):
  from labelwise.experiments import fashion_mnist_runs as fmr
  md = tmp_path / "results.md"
  fmr.attach_section(str(md), "<!-- m -->", "part A")
  assert md.read_text() == "<!-- m -->\n\npart A\n"
  md.write_text("offline\n")
  fmr.attach_section(str(md), "<!-- m -->", "part A")
  fmr.attach_section(str(md), "<!-- m -->", "part B")
  assert md.read_text() == "offline\n\n<!-- m -->\n\npart B\n"
  assert fmr.kept_section(str(md), "<!-- m -->") == "<!-- m -->\n\npart B\n"
  assert fmr.kept_section(str(tmp_path / "none.md"), "<!-- m -->") == ""


@pytest.mark.slow   # ~35-80 s wall under load; the SimLoss part's smoke covers the shared path in make test
def test_fierce_part_smoke(tiny_dirs, tmp_path):
  from labelwise.data.builders import fashion_mnist as fm
  from labelwise.eval import fine_grain
  from labelwise.experiments.fierce import fashion_mnist as part
  from labelwise.experiments.fierce import run
  arrays, sha, data_dir, files = tiny_dirs
  out = tmp_path / "out"
  with accepted(sha) as mp:
    mp.setattr(fm, "debian_folder", lambda: None)
    run.main(["--part", "fashion_mnist", "--smoke", "--data_dir", data_dir, "--manual_dir",
              files, "--out", str(out), "--workdir", str(tmp_path / "runs")])
  raw = json.loads((out / "results_fashion_mnist.json").read_text())
  assert list(raw["main"]) == ["hcnn6"] and raw["_meta"]["tune_seeds"] == [0]
  for name, r in raw["main"]["hcnn6"].items():
    # The grid on seed 0 only, then the chosen point on seed 1: the same budget for every arm.
    grid = part.SMOKE_ARMS[name][1]
    n_points = len(part.fmr.grid_points(grid))
    seeds = [q["overrides"]["seed"] for q in r["replicas"]]
    assert seeds == [0] * n_points + [1], name
    chosen = r["selected"]["point"]
    best = max(r["replicas"][:n_points], key=lambda q: q["val/fine_knn_accuracy"])
    assert chosen == {k: v for k, v in best["overrides"].items() if k != "seed"}
    assert r["replicas"][-1]["overrides"] == {**chosen, "seed": 1}
    for q in r["replicas"]:
      for k in ("accuracy", "fine_knn_accuracy", "fine_probe_accuracy"):
        assert 0.0 <= q[f"eval/{k}"] <= 1.0 and 0.0 <= q[f"val/{k}"] <= 1.0
    assert ("eval/feature_entropy_bits" in r["replicas"][0]) == (name == "FIERCE")
  # The coarse accuracy is on the 6 hcnn6 groups; the upper bound trains on the 10 fine classes.
  assert raw["upper"]["replicas"][0]["eval/num_examples"] == 60
  # Raw-pixel reference: the same 5-NN on the standardized pixels of the builder's `train` rows
  # (the smoke run's feature-fit split), read here from the IDX arrays.
  pix = lambda a: ((a.astype(np.float32) / 255 - fm.MEAN) / fm.STD).reshape(len(a), -1)  # noqa
  rows = fm.split_indices(arrays["train_labels"])["train"]
  knn = fine_grain.knn_accuracy(pix(arrays["train_images"][rows]), arrays["train_labels"][rows],
                                pix(arrays["test_images"]), arrays["test_labels"], k=5)
  assert raw["raw"]["fine_knn_accuracy"] == pytest.approx(knn, abs=1e-6)
  md = (out / "results_fashion_mnist.md").read_text()
  assert "coarse = `hcnn6`" in md and "| FIERCE |" in md and "Paper claim vs. this part" in md
  assert part.MARKER in (out / "results.md").read_text()
  run.main(["--part", "fashion_mnist", "--report_only", "--out", str(out)])
  assert (out / "results_fashion_mnist.md").read_text() == md


def _arm(knn, probe):
  """An arm's result (one point, seeds 0..n-1) with the given per-seed test fine metrics."""
  return {"selected": {"point": {"p": 1.0}},
          "replicas": [{"overrides": {"p": 1.0, "seed": s}, "eval/fine_knn_accuracy": k,
                        "eval/fine_probe_accuracy": p}
                       for s, (k, p) in enumerate(zip(knn, probe))]}


def test_fierce_reading():
  """The verdict follows the paired 95% intervals: a win needs FIERCE above CE *and* label
  smoothing on the same split and metric."""
  from labelwise.experiments.fierce import fashion_mnist as part
  base = [0.80, 0.82, 0.81]
  up = [v + d for v, d in zip(base, (0.050, 0.052, 0.048))]   # a clear paired gain
  noisy = [v + d for v, d in zip(base, (0.03, -0.03, 0.001))]  # interval contains 0
  def res(fierce_knn, fierce_probe, ls_knn=base):
    return {"main": {"hcnn6": {"CE": _arm(base, base), "LS": _arm(ls_knn, base),
                               "FIERCE": _arm(fierce_knn, fierce_probe)}}}
  assert part._wins(res(up, base), "CE") == [("hcnn6", "5-NN")]
  assert part._wins(res(up, up), "LS") == [("hcnn6", "5-NN"), ("hcnn6", "probe")]
  assert part._wins(res(noisy, noisy), "CE") == []
  text = part.reading(res(up, base))
  assert text.startswith("FIERCE keeps more") and "`hcnn6` 5-NN" in text and "probe" not in text
  # Better than CE on 5-NN but label smoothing is as good: the claim does not reproduce.
  text = part.reading(res(up, base, ls_knn=up))
  assert text.startswith("FIERCE beats CE on `hcnn6` 5-NN") and "does not reproduce" in text
  text = part.reading(res(noisy, noisy))
  assert text.startswith("FIERCE does NOT") and "null result" in text
  # Worse than CE (interval below 0) is not a win either.
  down = [2 * v - u for v, u in zip(base, up)]   # base minus the same clear gain
  assert part._wins(res(down, down), "CE") == []


def test_fierce_lr_note():
  """The caveat names where CE's learning rate fell in its grid and compares CE at 1e-3 with the
  other arms on the tuning seed."""
  from labelwise.experiments.fierce import fashion_mnist as part
  def ce(chosen):
    reps = [{"overrides": {part.LR: lr, "seed": 0}, "eval/fine_knn_accuracy": knn}
            for lr, knn in ((5e-4, 0.81), (1e-3, 0.803), (2e-3, 0.79))]
    reps.append({"overrides": {part.LR: chosen, "seed": 1}, "eval/fine_knn_accuracy": 0.5})
    return {"selected": {"point": {part.LR: chosen}, "tuned_on": [0]}, "replicas": reps}
  other = _arm([0.777, 0.6], [0.7, 0.6])
  other["selected"]["tuned_on"] = [0]
  text = part.lr_note({"main": {"hcnn6": {"CE": ce(5e-4), "FIERCE": other}}})
  assert "CE chose learning rate 0.0005 (the grid's lowest value)" in text
  assert "CE at 0.001 (the learning rate of the other arms) has test fine 5-NN 80.3" in text
  assert "FIERCE 77.7" in text
  assert "(the grid's highest value)" in part.lr_note({"main": {"g": {"CE": ce(2e-3)}}})
  text = part.lr_note({"main": {"g": {"CE": ce(1e-3)}}})
  assert "CE chose learning rate 0.001. On seed 0" in text
  assert part.lr_note({"main": {"g": {"CE": _arm([0.8], [0.8])}}}) == ""


def test_parse_part_shared_options_and_the_parts_own():
  """The shared command line: per-part defaults, the part's own options, no --tune_seeds where the
  part has none, and a help override for an option that is not shared is refused."""
  from labelwise.experiments import fashion_mnist_runs as fmr

  def own(ap):
    ap.add_argument("--coarse", default="hcnn6")
  args = fmr.parse_part([], "doc line\nmore", out="o", workdir="runs/x", seeds=3, smoke="s",
                        add=own)
  assert vars(args) == {"out": "o", "seeds": 3, "tune_seeds": 1, "steps": 100, "batch_size": 128,
                        "coarse": "hcnn6", "data_dir": "", "manual_dir": "", "workdir": "runs/x",
                        "smoke": False, "report_only": False}
  args = fmr.parse_part(["--seeds", "5", "--smoke", "--report_only", "--steps", "7"], "doc",
                        out="o", workdir="w", seeds=3, smoke="s", tune_seeds=False)
  assert (args.seeds, args.smoke, args.report_only, args.steps) == (5, True, True, 7)
  assert not hasattr(args, "tune_seeds")
  with pytest.raises(SystemExit):   # argparse: unknown option
    fmr.parse_part(["--tune_seeds", "2"], "doc", out="o", workdir="w", seeds=3, smoke="s",
                   tune_seeds=False)
  with pytest.raises(ValueError, match="helps.*cluster_seeds"):
    fmr.parse_part([], "doc", out="o", workdir="w", seeds=3, smoke="s",
                   helps={"cluster_seeds": "x"})
