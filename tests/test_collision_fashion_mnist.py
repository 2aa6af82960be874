"""The collision study's Fashion-MNIST part (``experiments/collision/run.py --part fashion_mnist
--smoke``) on tiny IDX files written here (no Debian package needed): it trains through the
trainer, chooses every soft-target arm's learning rate on the validation split only, scores the
clustering arms on the split they trained on, and writes its section, plot and raw numbers; the
offline part keeps that section when it rewrites results.md. The smoke run's tests are marked
slow (``make test-slow``); the configs, the paired statistics and the offline report's keeping of
the section are checked in ``make test``."""

import json
import types

import numpy as np
import pytest

from tests.test_fashion_mnist import accepted, image_ids


@pytest.fixture(scope="module")
def smoke(tiny_dirs, tmp_path_factory):
  from labelwise.data.builders import fashion_mnist as fm
  from labelwise.experiments.collision import run
  arrays, sha, data_dir, files = tiny_dirs
  root = tmp_path_factory.mktemp("coll_fm")
  out = root / "out"
  out.mkdir()
  (out / "results.md").write_text("# Collision study\n\noffline tables\n")
  with accepted(sha) as mp:
    mp.setattr(fm, "debian_folder", lambda: None)
    res = run.main(["--part", "fashion_mnist", "--smoke", "--data_dir", data_dir,
                    "--manual_dir", files, "--out", str(out),
                    "--workdir", str(root / "runs")])
  return arrays, res, out


@pytest.mark.slow   # 15 trainer runs: ~60 s of CPU (220 s wall at load 11)
def test_soft_arms_choose_on_validation_only(smoke):
  from labelwise.experiments.collision import fashion_mnist as part
  arrays, res, out = smoke
  raw = json.loads((out / "results_fashion_mnist.json").read_text())
  assert raw["_meta"]["smoke"] is True and raw["select"] == "val/accuracy:max"
  expected = [f"{n}/{lv:g}" for n, levels in part.SMOKE_LEVELS.items() for lv in levels]
  assert list(raw["soft"]) == expected
  n_test = len(arrays["test_labels"])
  for key, arms in raw["soft"].items():
    assert sorted(arms) == ["collision", "shannon"]
    for loss, r in arms.items():
      reps = r["replicas"]
      # The grid on the tuning seed 0, then the chosen rate on seed 1: the same budget per arm.
      assert [q["overrides"]["seed"] for q in reps] == [0] * len(part.LR_GRID) + [1]
      assert [q["overrides"][part.LR] for q in reps[:-1]] == list(part.LR_GRID)
      best = max(reps[:-1], key=lambda q: (q["val/accuracy"], -q["overrides"][part.LR]))
      assert r["selected"]["point"] == {part.LR: best["overrides"][part.LR]}, (key, loss)
      assert reps[-1]["overrides"] == {**r["selected"]["point"], "seed": 1}
      for q in reps:
        assert 0.0 <= q["eval/accuracy"] <= 1.0 and 0.0 <= q["val/accuracy"] <= 1.0
        assert q["eval/num_examples"] == n_test and q["val/num_examples"] == 20
  assert raw["soft"]["mix/0.9"]["collision"]["selected"] == json.loads(
      json.dumps(res["soft"]["mix/0.9"]["collision"]["selected"]))


def test_soft_configs_are_the_arms_asked_for():
  from labelwise.experiments.collision import fashion_mnist as part
  args = part.parse([])
  c = part.soft_config("flat", 0.5, "collision", args)
  assert c.method == "collision_soft" and c.collision_soft.targets == "flat"
  assert c.collision_soft.noise_level == 0.5 and c.collision_soft.noise_seed == part.NOISE_SEED
  assert c.data.train_split == "train[:20000]" and c.data.validation_split == "validation"
  assert c.data.eval_split == "test" and c.total_steps == 100 and c.model == "small_cnn"
  s = part.soft_config("mix", 0.9, "shannon", args)
  assert s.method == "shannon_soft" and s.shannon_soft.targets == "mix"
  k = part.cluster_config("collision_cluster", True, args)
  assert k.data.train_split == k.data.eval_split == "train[:10000]" and k.data.augment
  assert k.collision_cluster.fairness_weight == part.LAMBDA and k.total_steps == 200
  assert k.optimizer.warmup_steps == 20
  with pytest.raises(ValueError, match="tune_seeds"):
    part.parse(["--seeds", "2", "--tune_seeds", "3"])
  with pytest.raises(ValueError, match="cluster_steps"):
    part.parse(["--cluster_steps", "0"])


@pytest.mark.slow   # 15 trainer runs: ~60 s of CPU (220 s wall at load 11)
def test_cluster_arms_and_kmeans(smoke, tiny_dirs):
  from labelwise.data.builders import fashion_mnist as fm
  from labelwise.eval import metrics
  from labelwise.experiments.collision import fashion_mnist as part
  arrays, res, out = smoke
  raw = json.loads((out / "results_fashion_mnist.json").read_text())
  assert list(raw["cluster"]) == [a for a, _, _ in part.CLUSTER_ARMS] + ["kmeans"]
  rows = fm.split_indices(arrays["train_labels"])["train"]   # the tiny `train` split
  for label, r in raw["cluster"].items():
    assert [q["overrides"]["seed"] for q in r["replicas"]] == [0]
    for q in r["replicas"]:
      assert q["eval/num_examples"] == len(rows)
      for m in ("cluster_accuracy", "nmi", "ari"):
        assert -1.0 <= q[f"eval/{m}"] <= 1.0
      assert q["eval/cluster_accuracy"] >= 0.1 - 1e-9   # Hungarian matching: at least 1/K
  # k-means recomputed from the IDX arrays: the split's images are the files' `train` rows (found
  # by the id written into each image, in the split's order), standardized with the published
  # mean and std.
  config = part.cluster_config("collision_cluster", True, part.parse(
      ["--smoke", "--data_dir", tiny_dirs[2], "--manual_dir", tiny_dirs[3]]))
  x, y = part.split_pixels(config, "train")
  ids = image_ids(np.rint((x.reshape(-1, 28, 28) * fm.STD + fm.MEAN) * 255).astype(np.int64))
  assert sorted(ids) == sorted(rows)
  pix = ((arrays["train_images"][ids].astype(np.float32) / 255 - fm.MEAN) / fm.STD)
  pix = pix.reshape(len(ids), -1)
  np.testing.assert_allclose(pix, x, atol=1e-5)
  np.testing.assert_array_equal(y, arrays["train_labels"][ids])
  for q in raw["cluster"]["kmeans"]["replicas"]:
    want = metrics.clustering_metrics(arrays["train_labels"][ids], metrics.kmeans_clusters(
        pix, 10, seed=q["overrides"]["seed"], n_init=part.KMEANS_INIT))
    assert q["eval/cluster_accuracy"] == pytest.approx(want["cluster_accuracy"], abs=1e-6)
    assert q["eval/nmi"] == pytest.approx(want["nmi"], abs=1e-6)


@pytest.mark.slow   # 15 trainer runs: ~60 s of CPU (220 s wall at load 11)
def test_report_files_and_reuse(smoke):
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.collision import fashion_mnist as part
  from labelwise.experiments.collision import run
  _, res, out = smoke
  md = (out / "results_fashion_mnist.md").read_text()
  assert "Fashion-MNIST part" in md and "Paper claim vs. this part" in md
  assert "| mix | 0.9 |" in md and "| flat | 0.5 |" in md and "0.672" in md
  assert "DEC-DA" in md and "k-means on raw pixels" in md
  assert (out / "fashion_mnist.png").stat().st_size > 10_000
  prov = json.loads((out / "results_fashion_mnist.provenance.json").read_text())
  assert prov["seeds"] == [0, 1] and prov["configs"]["args"]["smoke"] is True
  assert prov["configs"]["lr_grid"] == list(part.LR_GRID)
  both = (out / "results.md").read_text()
  assert both.startswith("# Collision study\n\noffline tables\n")
  assert fashion_mnist_runs.kept_section(str(out / "results.md"), part.MARKER).startswith(
      part.MARKER)
  run.main(["--part", "fashion_mnist", "--report_only", "--out", str(out)])
  assert (out / "results_fashion_mnist.md").read_text() == md
  assert (out / "results.md").read_text() == both


def test_paired_difference_and_sign():
  from labelwise.experiments.collision import fashion_mnist as part
  a = [{"overrides": {"seed": s}, "eval/accuracy": v} for s, v in enumerate((0.5, 0.6, 0.7))]
  b = [{"overrides": {"seed": s}, "eval/accuracy": v} for s, v in ((2, 0.6), (0, 0.4), (1, 0.5))]
  d = part.paired(a, b)                   # by seed: 0.1, 0.1, 0.1
  assert d["mean"] == pytest.approx(0.1) and d["std"] == pytest.approx(0.0, abs=1e-12)
  assert part._sign(d) == 1 and part._sign(part.paired(b, a)) == -1
  noisy = [{"overrides": {"seed": s}, "eval/accuracy": v} for s, v in enumerate((0.3, 0.8, 0.5))]
  diffs = np.array([0.3, 0.8, 0.5]) - np.array([0.4, 0.5, 0.6])
  s = part.paired(noisy, b)
  assert s["mean"] == pytest.approx(diffs.mean()) and s["std"] == pytest.approx(diffs.std(ddof=1))
  assert part._sign(s) == 0                # the interval contains 0
  assert part._sign(part.paired(a[:1], b)) == 0    # one seed: no interval


def test_offline_report_keeps_the_fashion_mnist_section(tmp_path):
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.collision import fashion_mnist as part
  from labelwise.experiments.collision import run
  md = tmp_path / "results.md"
  md.write_text("old offline\n\n## Reading (written by hand after the run)\n\n- a reading\n\n"
                "_Provenance: x._\n")
  fashion_mnist_runs.attach_section(str(md), part.MARKER, "FM section\n\n_Provenance: fm._")
  soft = [dict(noise="mix", level=0.5, model=m, loss=loss, lr=1e-3, acc=[0.9, 0.8])
          for m in ("linear", "mlp") for loss in ("shannon", "collision")]
  cluster = [dict(dataset="digits", method="kmeans", acc=[0.7, 0.8], nmi=[0.6, 0.7],
                  ari=[0.5, 0.6])]
  args = types.SimpleNamespace(quick=True, soft_seeds=2, cluster_seeds=2, soft_steps=5,
                               cluster_steps=5)
  run.write_markdown(soft, cluster, args, 60.0, str(tmp_path), None)
  text = md.read_text()
  assert "old offline" not in text and "## E1: soft targets on digits" in text
  assert "- a reading" in text                       # the hand-written reading kept
  assert text.count(part.MARKER) == 1 and text.rstrip().endswith("_Provenance: fm._")
  assert fashion_mnist_runs.kept_section(str(md), part.MARKER) == (
      part.MARKER + "\n\nFM section\n\n_Provenance: fm._\n")
