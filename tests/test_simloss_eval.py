"""SimLoss study metrics against hand counts, and the study's offline datasets."""

import os

import numpy as np
import pytest

from labelwise.eval import metrics


def _onehot_logits(pred, c):
  z = np.zeros((len(pred), c), np.float32)
  z[np.arange(len(pred)), pred] = 1.0
  return z


def test_ordinal_metrics_hand_numbers():
  labels = np.array([0, 3, 5, 5, 9])
  pred = np.array([0, 1, 5, 8, 9])           # errors: |3-1| = 2, |5-8| = 3
  z = _onehot_logits(pred, 10)
  np.testing.assert_array_equal(metrics.ordinal_absolute_error(z, labels), [0, 2, 0, 3, 0])
  np.testing.assert_array_equal(metrics.ordinal_squared_error(z, labels), [0, 4, 0, 9, 0])
  assert metrics.failure_severity(z, labels) == pytest.approx(2.5)
  assert metrics.num_predicted_classes(z) == 5
  assert metrics.num_predicted_classes(z, where=np.array([1, 1, 1, 0, 0])) == 3
  out = metrics.ordinal_metrics(z, labels)
  assert out["mae"] == pytest.approx(1.0) and out["mse"] == pytest.approx(13 / 5)
  assert np.isnan(metrics.failure_severity(z[:1], labels[:1]))


def test_superclass_metrics_hand_numbers():
  f2c = np.array([0, 0, 1, 1, 2, 2])
  labels = np.array([0, 0, 2, 3, 4, 5])
  pred = np.array([0, 1, 3, 0, 4, 2])        # correct: 0, 4; errors: 1 (same sc), 3 (same), 0, 2
  z = _onehot_logits(pred, 6)
  np.testing.assert_array_equal(metrics.superclass_correct(z, labels, f2c), [1, 1, 1, 0, 1, 0])
  assert metrics.superclass_accuracy(z, labels, f2c) == pytest.approx(4 / 6)
  assert metrics.failed_superclass_accuracy(z, labels, f2c) == pytest.approx(2 / 4)
  out = metrics.superclass_metrics(z, labels, f2c)
  assert out == {"superclass_accuracy": pytest.approx(4 / 6),
                 "failed_superclass_accuracy": pytest.approx(0.5)}


def test_diabetes_bins_and_splits():
  from labelwise.data.builders import simloss_ordinal as so
  x, y = so.diabetes_arrays()
  assert x.shape == (442, 10) and y.min() == 0 and y.max() == 9
  counts = np.bincount(y)
  assert counts.min() >= 40 and counts.max() <= 50          # quantile bins: about 44 each
  np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(x.std(0), 1, atol=1e-4)
  from sklearn.datasets import load_diabetes
  target = load_diabetes().target
  # Ordinal: the bin order follows the target order.
  assert np.all(np.diff(y[np.argsort(target, kind="stable")]) >= 0)
  splits = so._diabetes_splits(y)
  assert len(splits["train"]) + len(splits["test"]) == 442
  assert not set(splits["train"]) & set(splits["test"])
  assert sorted(splits["cv"]) == list(range(442))


def test_hierarchy_gaussians_generator():
  from labelwise.data.builders import hierarchy_gaussians as hg
  x, y = hg.generate(per_class=3, seed=5)
  assert x.shape == (300, 16) and np.all(np.bincount(y) == 3)
  assert hg.FINE_TO_COARSE[:6] == (0, 0, 0, 0, 0, 1)
  # Same-superclass class means are closer than means of different superclasses (on average).
  m = hg.class_means()
  d = np.linalg.norm(m[:, None] - m[None], axis=-1)
  f2c = np.array(hg.FINE_TO_COARSE)
  same = (f2c[:, None] == f2c[None]) & ~np.eye(100, dtype=bool)
  assert d[same].mean() < 0.5 * d[f2c[:, None] != f2c[None]].mean()
  x2, y2 = hg.generate(per_class=3, seed=5)
  np.testing.assert_array_equal(x, x2)


def test_age_folder_builder_on_a_tiny_generated_folder(tmp_path, monkeypatch):
  from PIL import Image
  from labelwise.data.builders import simloss_ordinal as so
  root = tmp_path / "faces"
  rng = np.random.default_rng(0)
  ages = {1: 6, 30: 7, 90: 7, 95: 2}                      # 95 is outside 1..90: skipped
  for age, n in ages.items():
    os.makedirs(root / str(age))
    for i in range(n):
      Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
          root / str(age) / f"{i}.jpg")
  (root / "notes.txt").write_text("not an age folder")
  monkeypatch.setenv(so.AGE_FOLDER_ENV, str(root))
  b = so.AgeFolder(data_dir=str(tmp_path / "tfds"), file_format="array_record")
  b.download_and_prepare()
  sizes = {s: len(b.as_data_source(split=s)) for s in ("train", "validation", "test")}
  assert sum(sizes.values()) == 20 and sizes["train"] == 16
  ex = b.as_data_source(split="train")[0]
  assert ex["image"].shape == (60, 60, 3) and ex["image"].dtype == np.uint8
  labels = sorted(int(b.as_data_source(split=s)[i]["label"])
                  for s in sizes for i in range(sizes[s]))
  assert labels == [0] * 6 + [29] * 7 + [89] * 7
  with pytest.raises(ValueError, match="no images"):
    so.list_age_folder(str(tmp_path / "tfds"))


H_CNN_TREE = ([0, 1, 0, 2, 3, 5, 0, 5, 4, 5], [0, 0, 0, 0, 0, 1, 0, 1, 1, 1])  # hcnn6, clothes_goods


def test_mistake_heights_hand_numbers_in_the_h_cnn_tree():
  # label Shirt (6): Shirt 0, T-shirt 1 (same hcnn6 group), Coat 2 (clothes side), Bag 3 (goods);
  # label Sneaker (7): Ankle boot 1, Trouser 3.
  labels = np.array([6, 6, 6, 6, 7, 7])
  pred = np.array([6, 0, 4, 8, 9, 1])
  z = _onehot_logits(pred, 10)
  np.testing.assert_array_equal(metrics.mistake_heights(z, labels, H_CNN_TREE),
                                [0, 1, 2, 3, 1, 3])
  assert metrics.mistake_severity(z, labels, H_CNN_TREE) == pytest.approx((1 + 2 + 3 + 1 + 3) / 5)
  keep = np.array([1, 1, 1, 0, 1, 0], bool)
  assert metrics.mistake_severity(z, labels, H_CNN_TREE, where=keep) == pytest.approx(4 / 3)
  assert np.isnan(metrics.mistake_severity(z[:1], labels[:1], H_CNN_TREE))
  # One level: 1 + the share of mistakes outside the superclass (1 - failed superclass accuracy).
  one = metrics.mistake_severity(z, labels, H_CNN_TREE[:1])
  assert one == pytest.approx(2 - metrics.failed_superclass_accuracy(z, labels, H_CNN_TREE[0]))


def test_mistake_heights_refuse_what_is_not_a_tree():
  z = _onehot_logits([0, 1], 4)
  with pytest.raises(ValueError, match=r"not a tree: group 1 of levels\[0\] lies in groups "
                                       r"\[0, 1\] of levels\[1\]"):
    metrics.mistake_heights(z, np.array([0, 1]), [[0, 1, 1, 2], [0, 0, 1, 1]])
  with pytest.raises(ValueError, match=r"`levels\[0\]` must map each of the 4 classes"):
    metrics.mistake_heights(z, np.array([0, 1]), [[0, 1, 1]])
  with pytest.raises(ValueError, match=r"`levels\[1\]` must map"):
    metrics.mistake_heights(z, np.array([0, 1]), [[0, 0, 1, 1], [0.0, 0.0, 0.0, 0.0]])


def test_confusion_matrix_against_a_loop():
  rng = np.random.RandomState(0)
  logits = rng.randn(200, 7).astype(np.float32)
  labels = rng.randint(0, 7, 200)
  m = metrics.confusion_matrix(logits, labels)
  ref = np.zeros((7, 7), int)
  for y, p in zip(labels, logits.argmax(1)):
    ref[y, p] += 1
  np.testing.assert_array_equal(m, ref)
  assert np.trace(m) / 200 == pytest.approx(np.mean(logits.argmax(1) == labels))


def test_hierarchy_and_confusion_evaluators(tmp_path):
  import json

  import ml_collections

  from labelwise.data.registry import get_dataset_spec
  from labelwise.eval import evaluators
  from tests.helpers import fake_eval_context
  labels = np.array([6, 6, 6, 6, 7, 7])
  split = {"logits": _onehot_logits([6, 0, 4, 8, 9, 1], 10), "label": labels}

  class _Data:
    spec = get_dataset_spec("fashion_mnist")
    coarse_map = np.asarray(H_CNN_TREE[0])

  config = {"data": {"train_split": "train"}, "hierarchy_eval": {"levels": ("hcnn6",
                                                                            "clothes_goods")}}
  ctx = fake_eval_context({"test": split}, config=config, dataset=_Data())
  assert evaluators.get_evaluator("hierarchy")(ctx) == {"mistake_severity": pytest.approx(2.0)}
  ctx.config = ml_collections.ConfigDict({"data": {"train_split": "train"}})  # default: coarse map
  assert evaluators.get_evaluator("hierarchy")(ctx)["mistake_severity"] == pytest.approx(
      (1 + 2 + 2 + 1 + 2) / 5)
  ctx.workdir = str(tmp_path)
  assert evaluators.get_evaluator("confusion")(ctx) == {"num_predicted_classes": 6.0}
  saved = json.loads((tmp_path / "confusion_test.json").read_text())
  assert saved["split"] == "test"
  np.testing.assert_array_equal(saved["matrix"], metrics.confusion_matrix(split["logits"], labels))


def test_check_hierarchy_refuses_a_negative_group_index():
  """Group indices must be >= 0: -1 is refused, naming the level. (Killed mutant of the clean-clone
  pass: ``m.min() < 0`` -> ``< -1``.)"""
  from labelwise.eval import simloss as simloss_eval
  with pytest.raises(ValueError, match=r"`levels\[0\]` must map each of the 4 classes to a group "
                                       r"index >= 0"):
    simloss_eval.check_hierarchy([np.array([0, 0, -1, 1])], 4)
  out = simloss_eval.check_hierarchy([np.array([0, 0, 1, 1])], 4)
  np.testing.assert_array_equal(out[0], [0, 0, 1, 1])


def test_one_example_without_a_batch_axis_by_hand():
  """Logits ``[C]`` and a scalar label (accepted by the shared check): prediction 1, label 3,
  groups {0, 1} {2, 3}: |1 - 3| = 2, superclasses differ (0.0), mistake height 1 + 1 = 2; a map of
  the wrong length is refused with the class axis's shape. (Killed mutants of the clean-clone pass:
  ``axis=-1`` -> ``axis=1`` in the argmax, ``shape[-1]`` -> ``shape[1]`` and ``shape[-1:]`` ->
  ``shape[1:]``, and mistake_severity's ``*`` -> ``/``.)"""
  from labelwise.eval import simloss as simloss_eval
  z = np.array([0.1, 2.0, 0.3, 0.0], np.float32)
  groups = np.array([0, 0, 1, 1])
  assert float(simloss_eval.ordinal_absolute_error(z, 3)) == 2.0
  assert float(simloss_eval.superclass_correct(z, 3, groups)) == 0.0
  assert float(simloss_eval.mistake_heights(z, 3, [groups])) == 2.0
  with pytest.raises(ValueError, match=r"one superclass id per class, shape \(4,\), got \(3,\)"):
    simloss_eval.superclass_correct(z, 3, groups[:3])
  zz = np.stack([z, z])
  assert simloss_eval.mistake_severity(zz, np.array([3, 1]), [groups],
                                       where=np.array([True, False])) == 2.0
  with pytest.raises(TypeError):
    simloss_eval.mistake_severity(zz, np.array([3, 1]), [groups], np.array([True, False]))
