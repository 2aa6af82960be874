"""The attribution study's Fashion-MNIST part (``experiments/attribution/run.py --part
fashion_mnist``) on tiny IDX files written here (no Debian package needed): it trains through the
trainer, chooses on ``valid_id`` only, trains the masked fractions at the chosen ActDiff point and
writes its section and raw numbers; the reading follows the paired intervals."""

import json
import os

import numpy as np
import pytest

from tests.test_fashion_mnist import accepted


@pytest.mark.slow   # every arm through the trainer, 5 splits evaluated: ~40 s wall at load 8 (make test-slow)
def test_attribution_part_smoke(tiny_dirs, tmp_path):
  from labelwise.data.builders import fashion_mnist as fm
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments import tuning
  from labelwise.experiments.attribution import fashion_mnist as part
  from labelwise.experiments.attribution import run
  arrays, sha, data_dir, files = tiny_dirs
  out, runs = tmp_path / "out", tmp_path / "runs"
  out.mkdir()
  (out / "results.md").write_text("# Attribution offline study\n\noffline tables\n")
  with accepted(sha) as mp:
    mp.setattr(fm, "debian_folder", lambda: None)
    run.main(["--part", "fashion_mnist", "--smoke", "--data_dir", data_dir, "--manual_dir",
              files, "--out", str(out), "--workdir", str(runs)])
  raw = json.loads((out / "results_fashion_mnist.json").read_text())
  assert raw["_meta"]["smoke"] is True and raw["select"] == "val/loss:min"
  assert raw["validation"] == "valid_id" and raw["_meta"]["tune_seeds"] == [0]
  n_test = len(arrays["test_labels"])
  for name, (_, grid) in part.arms_spec(smoke=True).items():
    r = raw["arms"][name]
    n_points = len(part.fmr.grid_points(grid))
    # The grid on seed 0 only, then the chosen point on seed 1: the same budget for every arm.
    assert [q["overrides"]["seed"] for q in r["replicas"]] == [0] * n_points + [1], name
    # The choice reads only valid_id's cross-entropy: the lowest on the tuning seed.
    best = min(r["replicas"][:n_points], key=lambda q: q["val/loss"])
    assert r["selected"]["point"] == {k: v for k, v in best["overrides"].items() if k != "seed"}
    assert r["replicas"][-1]["overrides"] == {**r["selected"]["point"], "seed": 1}
    for q in r["replicas"]:
      assert q["eval/num_examples"] == n_test and q["val/num_examples"] == 20
      for k in ("test_shift", "test_nodistractor", "test_id", "valid_shift"):
        assert 0.0 <= q[f"eval/{k}/accuracy"] <= 1.0
      # The main pass's accuracy is that of its eval split, test_shift.
      assert q["eval/accuracy"] == pytest.approx(q["eval/test_shift/accuracy"], abs=1e-6)
      assert q["val/accuracy"] == pytest.approx(q["val/valid_id/accuracy"], abs=1e-6)
      assert 0.0 <= q["eval/saliency/grad_mass"] <= 1.0
  # The masked fractions train at the chosen ActDiff point (read from the trainer's config.json).
  fr = raw["fractions"]
  chosen = raw["arms"]["actdiff"]["selected"]["point"]
  assert fr["base_point"] == chosen
  assert [q["overrides"] for q in fr["replicas"]] == [
      {"actdiff.mask_fraction": 0.5, "seed": s} for s in (0, 1)]
  for q in fr["replicas"]:
    path = os.path.join(runs, "actdiff_fractions", tuning._key_name(
        {"actdiff.mask_fraction": 0.5}), f"seed{q['overrides']['seed']}", "config.json")
    cfg = json.load(open(path))
    assert cfg["actdiff"]["lam"] == chosen["actdiff.lam"] and cfg["actdiff"]["mask_fraction"] == 0.5
    assert cfg["data"]["validation_split"] == "valid_id" and cfg["seed"] == q["overrides"]["seed"]
  # The ceiling: CE on plain fashion_mnist, its own validation and test.
  ceil = raw["ceiling"]["replicas"]
  cfg = json.load(open(os.path.join(runs, "ceiling", "learning_rate0.001", "seed0", "config.json")))
  assert cfg["dataset"] == "fashion_mnist" and cfg["data"]["validation_split"] == "validation"
  assert all(q["eval/num_examples"] == n_test and "eval/test_shift/accuracy" not in q for q in ceil)
  md = (out / "results_fashion_mnist.md").read_text()
  assert "Fashion-MNIST part" in md and "| actdiff |" in md and "ceiling: CE on plain" in md
  assert "Paper claims vs. this part" in md and "leaks the test shift" in md
  # The paired difference in the table is recomputed here from the replicas.
  ce = {q["overrides"]["seed"]: q["eval/test_shift/accuracy"]
        for q in tuning.selected(raw["arms"]["ce"])}
  ad = {q["overrides"]["seed"]: q["eval/test_shift/accuracy"]
        for q in tuning.selected(raw["arms"]["actdiff"])}
  d = [ad[s] - ce[s] for s in (0, 1)]
  row = next(line for line in md.splitlines() if line.startswith("| actdiff |"))
  assert f"{np.mean(d):+.3f} ± {np.std(d, ddof=1):.3f}" in row
  prov = json.loads((out / "results_fashion_mnist.provenance.json").read_text())
  assert prov["seeds"] == [0, 1] and prov["configs"]["args"]["smoke"] is True
  assert prov["configs"]["validation"] == "valid_id"
  # results.md: the offline text kept, this part's section after the marker.
  both = (out / "results.md").read_text()
  assert both.startswith("# Attribution offline study\n\noffline tables\n")
  assert fashion_mnist_runs.kept_section(str(out / "results.md"), part.MARKER).startswith(part.MARKER)
  # Re-rendering from the json gives the same section and replaces it rather than appending.
  run.main(["--part", "fashion_mnist", "--report_only", "--out", str(out)])
  assert (out / "results_fashion_mnist.md").read_text() == md
  assert (out / "results.md").read_text() == both


def test_grids_budget_and_lambdas():
  """Every arm the same number of grid points (3); the lambdas are decades that span the authors'
  values; every grid key is a key of its arm's config."""
  from labelwise.experiments import tuning
  from labelwise.experiments.attribution import fashion_mnist as part
  spec = part.arms_spec()
  assert set(spec) == set(part.METHODS)
  sizes = {a: len(part.fmr.grid_points(g)) for a, (_, g) in spec.items()}
  assert set(sizes.values()) == {3}, sizes
  for m, lams in part.LAMBDAS.items():
    assert len(lams) == 3 and np.allclose(np.diff(np.log10(lams)), 1.0), m   # decades
    assert min(lams) <= min(part.AUTHORS_LAMBDA[m]) and max(part.AUTHORS_LAMBDA[m]) <= max(lams)
  args = part.parse([])
  for a, (arg, grid) in spec.items():
    c = part.make_config(arg, args)
    assert c.method == a and c.data.validation_split == "valid_id"
    assert c.data.eval_split == "test_shift" and c.data.train_split == "train[:20000]"
    for point in part.fmr.grid_points(grid):
      tuning.set_dotted(c, *next(iter(point.items())))
  part.check_budget({a: g for a, (_, g) in spec.items()})
  with pytest.raises(ValueError, match="same number of grid points"):
    part.check_budget({"ce": {"x": (1, 2)}, "rrr": {"y": (1,)}})
  with pytest.raises(ValueError, match="--tune_seeds"):
    part.parse(["--seeds", "2", "--tune_seeds", "3"])


def _arm(shift, clean=None, *, point=None, val_shift=None):
  """An arm's result: one point (or the given one) on seeds 0..n-1 with the given test_shift
  (and no-decoy) accuracies."""
  point = point or {"p": 1.0}
  clean = clean or shift
  reps = [{"overrides": {**point, "seed": s}, "eval/test_shift/accuracy": a,
           "eval/test_nodistractor/accuracy": b, "eval/test_id/accuracy": 0.9,
           "eval/valid_shift/accuracy": (val_shift or shift)[s]}
          for s, (a, b) in enumerate(zip(shift, clean))]
  return {"selected": {"point": point, "tuned_on": [0]}, "replicas": reps}


def test_reading_follows_paired_intervals():
  from labelwise.experiments.attribution import fashion_mnist as part
  base = [0.60, 0.65, 0.62]
  up = [v + d for v, d in zip(base, (0.10, 0.11, 0.09))]      # a clear paired gain
  noisy = [v + d for v, d in zip(base, (0.05, -0.05, 0.002))]  # interval contains 0
  down = [v - d for v, d in zip(base, (0.10, 0.11, 0.09))]
  ceiling = {"selected": {"point": {"p": 1.0}}, "replicas": [
      {"overrides": {"p": 1.0, "seed": s}, "eval/accuracy": 0.83} for s in range(3)]}
  res = {"arms": {"ce": _arm(base), "rrr": _arm(up), "gradmask": _arm(noisy),
                  "actdiff": _arm(down)}, "ceiling": ceiling}
  d = part.paired(part.tuning.selected(res["arms"]["rrr"]),
                  part.tuning.selected(res["arms"]["ce"]), "test_shift/accuracy")
  assert d["mean"] == pytest.approx(0.10) and d["std"] == pytest.approx(0.01)
  assert part.verdict(d) == "better than CE"
  text = "\n".join(part.findings(res))
  assert "rrr (p=1): test_shift accuracy 0.723, minus tuned CE +0.100" in text
  assert "better than CE" in text and "gradmask" in text and "not distinguishable" in text
  assert "actdiff" in text and "worse than CE" in text
  assert "the methods that beat CE on the random-shade test set" in text and ": rrr." in text
  assert "CE reads the patch" in text        # 0.623 vs the ceiling 0.83
  res["arms"].pop("rrr")
  text = "\n".join(part.findings(res))
  assert "a null result" in text
  # The leaking protocol: the grid point with the best valid_shift accuracy on the tuning seed.
  two = {"selected": {"point": {"p": 1.0}, "tuned_on": [0]}, "replicas": [
      {"overrides": {"p": 1.0, "seed": 0}, "eval/valid_shift/accuracy": 0.5},
      {"overrides": {"p": 2.0, "seed": 0}, "eval/valid_shift/accuracy": 0.7},
      {"overrides": {"p": 1.0, "seed": 1}, "eval/valid_shift/accuracy": 0.9}]}
  assert part.authors_choice(two) == {"p": 2.0}
  # A choice at an end of a grid of several values is named.
  res = {"arms": {"ce": two}}
  assert "Chosen at a grid end" in "\n".join(part.findings(res))
  assert "ce (p 1, the grid's lowest)" in "\n".join(part.findings(res))
