"""eval/evaluators.py: the registry, the predictions cache and the classification evaluator."""

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
