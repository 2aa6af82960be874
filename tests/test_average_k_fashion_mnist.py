"""The average-K study's Fashion-MNIST part on tiny IDX files written here (no Debian package
needed): ``experiments/average_k/run.py --part fashion_mnist --smoke`` trains every arm on the
balanced and the long-tailed split through the trainer, chooses on the validation split only and
writes its section, plot and raw numbers; the claim arithmetic is checked on hand-made replicas."""

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tests.test_fashion_mnist import accepted


@pytest.mark.slow   # every arm x 2 splits through the trainer: ~45 s wall at load 8 (make test-slow)
def test_average_k_part_smoke(tiny_dirs, tmp_path):
  from labelwise.data.builders import fashion_mnist as fm
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.average_k import fashion_mnist as part
  from labelwise.experiments.average_k import run
  arrays, sha, data_dir, files = tiny_dirs
  out = tmp_path / "out"
  out.mkdir()
  (out / "results.md").write_text("# Average-K study\n\noffline tables\n")
  with accepted(sha) as mp:
    mp.setattr(fm, "debian_folder", lambda: None)
    res = run.main(["--part", "fashion_mnist", "--smoke", "--data_dir", data_dir,
                    "--manual_dir", files, "--out", str(out), "--workdir", str(tmp_path / "runs")])
  raw = json.loads((out / "results_fashion_mnist.json").read_text())
  assert raw["_meta"]["smoke"] is True and raw["_meta"]["tune_seeds"] == [0]
  assert set(raw["cells"]) == {"balanced", "lt100"}
  # Training images per class: all of train (smoke) and the CIFAR-LT counts of the builder.
  train_labels = arrays["train_labels"]
  split = fm.split_indices(train_labels)
  assert raw["_meta"]["class_counts"]["balanced"] == np.bincount(
      train_labels[split["train"]], minlength=10).tolist()
  lt = raw["_meta"]["class_counts"]["lt100"]
  assert lt == np.bincount(train_labels[split["train_lt100"]], minlength=10).tolist()
  assert lt == sorted(lt, reverse=True) and lt[0] > lt[-1]
  assert raw["_meta"]["train_splits"] == {"balanced": "train", "lt100": "train_lt100"}
  n_test = len(arrays["test_labels"])
  for s, by_k in raw["cells"].items():
    assert list(by_k) == ["K2"]
    for v, arm in by_k["K2"].items():
      grid = part.SMOKE_GRIDS[v]
      n_points = len(next(iter(grid.values())))
      reps = arm["replicas"]
      # the grid on seed 0, then the chosen point on seed 1
      assert [r["overrides"]["seed"] for r in reps] == [0] * n_points + [1]
      head = part.ARMS[v][1]
      for r in reps:
        assert r["eval/num_examples"] == n_test and r["val/num_examples"] == 20
        for k in part.EVAL_KS:
          for m in ("accuracy", "macro_accuracy", "tail_accuracy"):
            assert 0.0 <= r[f"eval/avgk/{head}/K{k:g}/{m}"] <= 1.0
          assert 0.0 < r[f"eval/avgk/{head}/K{k:g}/set_size"] <= 10.0
          # calibrated on validation: there the mean set size is about K (ties aside)
          assert r[f"val/avgk/{head}/K{k:g}/cal_set_size"] == pytest.approx(k, abs=0.5)
      # The choice reads only the validation metric of the arm's head at the training K.
      key = f"val/avgk/{head}/K2/accuracy"
      val = [(r[key], i) for i, r in enumerate(reps[:n_points])]
      best = max(val, key=lambda t: (t[0], -t[1]))[1]
      chosen = {k: x for k, x in reps[best]["overrides"].items() if k != "seed"}
      assert arm["selected"]["point"] == chosen
      assert arm["selected"]["by"] == f"{key}:max"
      assert {k: x for k, x in reps[-1]["overrides"].items() if k != "seed"} == chosen
  assert raw["cells"]["lt100"]["K2"]["two_head"]["selected"] == json.loads(
      json.dumps(res["cells"]["lt100"]["K2"]["two_head"]["selected"]))
  md = (out / "results_fashion_mnist.md").read_text()
  assert "Fashion-MNIST part" in md and "| two-head (rule B) |" in md
  assert "Paper claim vs. this part" in md and "trained at K = 2, evaluated at K = 1.5" in md
  assert (out / "fashion_mnist_avgk.png").stat().st_size > 10_000
  prov = json.loads((out / "results_fashion_mnist.provenance.json").read_text())
  assert prov["seeds"] == [0, 1] and prov["configs"]["ce"]["validation"] == "validation"
  both = (out / "results.md").read_text()
  assert both.startswith("# Average-K study\n\noffline tables\n")
  assert fashion_mnist_runs.kept_section(str(out / "results.md"), part.MARKER).startswith(
      part.MARKER)
  run.main(["--part", "fashion_mnist", "--report_only", "--out", str(out)])
  assert (out / "results_fashion_mnist.md").read_text() == md
  assert (out / "results.md").read_text() == both


def _rep(seed, head, **metrics):
  return {"overrides": {"seed": seed}, **{f"eval/avgk/{head}/K2/{m}": v
                                          for m, v in metrics.items()}}


def _hand_res(th, ce):
  """A result with two-head (multi-label head) and CE replicas: lists of (micro, macro, tail)."""
  def arm(rows, head):
    reps = [_rep(s, head, accuracy=a, macro_accuracy=m, tail_accuracy=t)
            for s, (a, m, t) in enumerate(rows)]
    return {"replicas": reps, "selected": {"point": {}}}
  return {"_meta": {"tune_seeds": [0]}, "cells": {"lt100": {"K2": {"two_head": arm(th, "multilabel"),
                                     "ce": arm(ce, "softmax")}}}}


def test_claims_are_paired_by_seed_hand_numbers():
  from labelwise.experiments.average_k import fashion_mnist as part
  th = [(0.80, 0.70, 0.50), (0.82, 0.71, 0.60), (0.79, 0.69, 0.55)]
  ce = [(0.78, 0.70, 0.40), (0.80, 0.70, 0.42), (0.78, 0.68, 0.44)]
  d = part.claims(_hand_res(th, ce))[("lt100", "K2")]
  micro = np.array([a[0] - b[0] for a, b in zip(th, ce)])     # 0.02, 0.02, 0.01
  tail = np.array([a[2] - b[2] for a, b in zip(th, ce)])      # 0.10, 0.18, 0.11
  assert d["accuracy"]["mean"] == pytest.approx(0.05 / 3)
  assert d["tail_accuracy"]["mean"] == pytest.approx(0.39 / 3)
  dd = tail - micro
  half = scipy_stats.t.ppf(0.975, 2) * dd.std(ddof=1) / np.sqrt(3)
  assert d["tail_minus_micro"]["ci95"] == pytest.approx([dd.mean() - half, dd.mean() + half])
  text = part.verdicts(_hand_res(th, ce))
  assert "larger on the tail classes than overall, as the paper says" in text
  # Seeds are paired, not sorted: reversing one arm's seeds changes the differences.
  d_rev = part.claims(_hand_res(th, ce[::-1]))[("lt100", "K2")]
  assert d_rev["tail_minus_micro"]["std"] != pytest.approx(d["tail_minus_micro"]["std"])


def test_null_verdict_is_stated():
  from labelwise.experiments.average_k import fashion_mnist as part
  th = [(0.80, 0.70, 0.50), (0.78, 0.71, 0.40), (0.81, 0.69, 0.47)]
  ce = [(0.79, 0.70, 0.45), (0.80, 0.70, 0.46), (0.80, 0.68, 0.44)]
  text = part.verdicts(_hand_res(th, ce))
  assert "(a null result)" in text and "does not reproduce here" in text


def test_bad_arguments_are_refused():
  from labelwise.experiments.average_k import fashion_mnist as part
  with pytest.raises(ValueError, match="--train_ks"):
    part.parse(["--train_ks", "2.5"])
  with pytest.raises(ValueError, match="--tune_seeds"):
    part.parse(["--seeds", "2", "--tune_seeds", "3"])
