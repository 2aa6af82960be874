"""Evaluators on fake contexts: the registry, the predictions cache, classification, ordinal,
superclass, clustering and attribution."""

import os

import numpy as np
import pytest

from labelwise.eval import evaluators
from tests.helpers import fake_eval_context


def test_classification_evaluator_against_numpy():
  rng = np.random.RandomState(0)
  logits = rng.randn(30, 7).astype(np.float32)
  labels = rng.randint(0, 7, 30)
  out = evaluators.get_evaluator("classification")(
      fake_eval_context({"test": {"logits": logits, "label": labels}}))
  z = logits.astype(np.float64)
  logp = z - z.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  rank = (z > z[np.arange(30), labels][:, None]).sum(1)
  assert out["accuracy"] == pytest.approx(np.mean(z.argmax(1) == labels))
  assert out["loss"] == pytest.approx(-np.mean(logp[np.arange(30), labels]), rel=1e-5)
  assert out["top5_accuracy"] == pytest.approx(np.mean(rank < 5))
  assert out["num_examples"] == 30.0
  # Top-5 only when there are more than 5 classes.
  few = evaluators.classification(fake_eval_context(
      {"test": {"logits": logits[:, :5], "label": labels % 5}}))
  assert "top5_accuracy" not in few
  six = evaluators.classification(fake_eval_context(
      {"test": {"logits": logits[:, :6], "label": labels % 6}}))
  assert "top5_accuracy" in six


def test_predictions_default_to_the_eval_split_and_are_cached():
  calls = []
  ctx = fake_eval_context({"val": {"x": np.ones(2)}, "train": {"x": np.zeros(3)}},
                          eval_split="val")
  inner = ctx.predict_fn
  ctx.predict_fn = lambda split: calls.append(split) or inner(split)
  assert len(ctx.predictions()["x"]) == 2
  assert len(ctx.predictions("val")["x"]) == 2 and len(ctx.predictions("train")["x"]) == 3
  ctx.predictions("train")
  assert calls == ["val", "train"]


def test_registry_names_known_evaluators_and_refuses_duplicates():
  with pytest.raises(ValueError, match=r"Unknown evaluator 'nope'; known evaluators: \[.*"
                                       r"'classification'"):
    evaluators.get_evaluator("nope")
  with pytest.raises(ValueError, match="registered twice"):
    evaluators.register_evaluator("classification")(lambda ctx: {})
  assert evaluators.get_evaluator("classification") is evaluators.classification


def _one_hot_logits(pred, num_classes):
  return np.eye(num_classes, dtype=np.float32)[np.asarray(pred)]


def test_ordinal_evaluator_hand_example_uses_the_fine_label():
  pred, fine = np.array([0, 2, 4, 1]), np.array([0, 1, 1, 1])
  split = {"logits": _one_hot_logits(pred, 5), "fine_label": fine, "label": fine // 2}
  out = evaluators.get_evaluator("ordinal")(fake_eval_context({"test": split}))
  # errors 0, 1, 3, 0: MAE 1, MSE 10/4, severity over the two failures 2, classes {0, 1, 2, 4}
  assert out == {"mae": 1.0, "mse": 2.5, "failure_severity": 2.0, "num_predicted_classes": 4.0}
  del split["fine_label"]
  split["label"] = fine
  assert evaluators.get_evaluator("ordinal")(fake_eval_context({"test": split}))["mae"] == 1.0


class _Obj:
  def __init__(self, **kw):
    self.__dict__.update(kw)


def test_superclass_evaluator_finds_the_fine_to_coarse_map():
  """From the dataset's coarse map, else the method's, else the dataset spec's; none: an error."""
  pred, fine = np.array([0, 1, 3, 2]), np.array([0, 0, 2, 3])
  split = {"test": {"logits": _one_hot_logits(pred, 4), "label": fine}}
  evaluate = evaluators.get_evaluator("superclass")
  pairs = np.array([0, 0, 1, 1])   # pred 1 for 0: same pair; 3 for 2 and 2 for 3: same pair
  odd = np.array([0, 1, 0, 1])     # the same predictions: none in the label's superclass
  for dataset, method in [(_Obj(coarse_map=pairs, spec=None), _Obj(fine_to_coarse=odd)),
                          (_Obj(coarse_map=None, spec=None), _Obj(fine_to_coarse=pairs)),
                          (_Obj(coarse_map=None, spec=_Obj(fine_to_coarse=pairs)), None)]:
    ctx = fake_eval_context(split, method=method)
    ctx.dataset = dataset
    # 1 correct (index 0); all 4 in the label's pair; the 3 failures all in it
    assert evaluate(ctx) == {"superclass_accuracy": 1.0, "failed_superclass_accuracy": 1.0}
  ctx = fake_eval_context(split, method=_Obj(fine_to_coarse=odd))
  ctx.dataset = _Obj(coarse_map=None, spec=None)
  assert evaluate(ctx) == {"superclass_accuracy": 0.25, "failed_superclass_accuracy": 0.0}
  ctx = fake_eval_context(split)
  ctx.dataset = _Obj(coarse_map=None, spec=_Obj(fine_to_coarse=None))
  with pytest.raises(ValueError, match="`superclass` evaluator needs a fine-to-coarse map"):
    evaluate(ctx)


def test_clustering_evaluator_hand_example():
  clusters = np.array([2, 2, 0, 0, 0, 2])   # cluster 1 is empty
  labels = np.array([1, 1, 0, 0, 0, 1])     # a relabelled perfect clustering
  out = evaluators.get_evaluator("clustering")(fake_eval_context(
      {"test": {"logits": _one_hot_logits(clusters, 3), "label": labels}}))
  assert out["cluster_accuracy"] == 1.0 and out["nmi"] == pytest.approx(1.0)
  assert out["ari"] == pytest.approx(1.0)
  assert out["num_nonempty_clusters"] == 2.0 and out["num_examples"] == 6.0
  assert out["cluster_size_entropy"] == pytest.approx(np.log(2.0))  # sizes 3, 0, 3 (nats)


def test_clustering_evaluator_counts_a_one_example_cluster():
  """A cluster holding one example is non-empty: clusters 0 (3), 1 (1), 2 (2). (Killed mutant of
  the clean-clone pass: ``sizes > 0`` -> ``> 1``.)"""
  clusters = np.array([0, 0, 0, 1, 2, 2])
  labels = np.array([0, 0, 0, 1, 2, 2])
  out = evaluators.get_evaluator("clustering")(fake_eval_context(
      {"test": {"logits": _one_hot_logits(clusters, 3), "label": labels}}))
  assert out["num_nonempty_clusters"] == 3.0
  assert out["cluster_size_entropy"] == pytest.approx(
      -sum(q * np.log(q) for q in (3 / 6, 1 / 6, 2 / 6)))


def test_masked_mean():
  from labelwise.eval.metrics import masked_mean
  assert masked_mean([1.0, 2.0, 6.0]) == 3.0
  assert masked_mean([1.0, 2.0, 6.0], where=[1, 0, 1]) == 3.5
  assert masked_mean([1.0, 2.0], where=[0, 0]) == 0.0
  assert np.isnan(masked_mean([]))
  with pytest.raises(ValueError, match=r"`where` must have the shape of `values` \(2,\), got "
                                       r"\(3,\)"):
    masked_mean([1.0, 2.0], where=[1, 1, 1])


class _MaskedLinear:
  """logits = (+s, -s) with s = sum of the pixels inside a fixed region: saliency lies there."""

  def __init__(self, region):
    self.region = region

  def apply(self, variables, x, train=False):
    import jax.numpy as jnp
    s = jnp.sum(x * self.region * variables["params"]["scale"], axis=(1, 2, 3))
    return {"logits": jnp.stack([s, -s], axis=-1)}


def test_attribution_evaluator_on_a_model_that_only_sees_the_mask(tmp_path):
  from sklearn.metrics import roc_auc_score
  rng = np.random.RandomState(1)
  region = np.zeros((6, 6, 1), np.float32)
  region[1:3, 2:5] = 1.0
  n = 10
  splits = {}
  for i, name in enumerate(["train", "test", "test_shift"]):
    x = rng.rand(n, 6, 6, 1).astype(np.float32) + 0.1   # positive: IG is nonzero in the region
    splits[name] = {"input": x, "label": rng.randint(0, 2, n).astype(np.int32),
                    "mask": np.broadcast_to(region[..., 0], (n, 6, 6)).copy()}
  model = _MaskedLinear(region)
  params = {"scale": np.float32(1.0)}

  def predictions(split):
    z = np.asarray(model.apply({"params": params}, splits[split]["input"])["logits"])
    return {"logits": z, "label": splits[split]["label"]}
  ctx = fake_eval_context({}, config={"attribution_eval": {"ig_steps": 4, "max_examples": 7}})
  ctx.predict_fn, ctx.params, ctx.model, ctx.model_state, ctx.workdir = (
      predictions, params, model, {}, str(tmp_path))
  ctx.dataset = _Obj(spec=_Obj(splits=("train", "test", "test_shift")),
                     split=lambda name: _Obj(all=lambda: splits[name]))
  out = evaluators.get_evaluator("attribution")(ctx)
  for name in ("test", "test_shift"):
    p = predictions(name)
    assert out[f"{name}/accuracy"] == pytest.approx(np.mean(p["logits"].argmax(-1) == p["label"]))
    prob1 = 1.0 / (1.0 + np.exp(p["logits"][:, 0] - p["logits"][:, 1]))
    assert out[f"{name}/auc"] == pytest.approx(roc_auc_score(p["label"], prob1))
  assert "train/accuracy" not in out
  for kind in ("grad", "ig"):  # all saliency inside the mask, the top-|M| pixels are the mask
    for metric in ("iou", "iop", "iot", "mass"):
      assert out[f"saliency/{kind}_{metric}"] == pytest.approx(1.0), (kind, metric)
  assert os.path.exists(tmp_path / "saliency_test_shift.png")
  # No mask in the saliency split: accuracy and AUC only.
  del splits["test"]["mask"]
  ctx.config.attribution_eval.split = "test"
  assert sorted(evaluators.get_evaluator("attribution")(ctx)) == sorted(
      f"{s}/{m}" for s in ("test", "test_shift") for m in ("accuracy", "auc"))


def test_cluster_map_empty_clusters_and_negative_ids():
  from labelwise.eval import clustering
  labels, clusters = np.array([0, 0, 1, 1]), np.array([0, 0, 2, 3])   # cluster 1 is empty
  np.testing.assert_array_equal(clustering.cluster_to_class_map(labels, clusters), [0, -1, 1, 1])
  np.testing.assert_array_equal(
      clustering.cluster_to_class_map(labels, np.array([0, 0, 2, 2]), many_to_one=True),
      [0, -1, 1])
  with pytest.raises(ValueError, match=r"`clusters` must hold ids >= 0, got a minimum of -1"):
    clustering.clustering_accuracy(labels, np.array([0, -1, 1, 1]))
