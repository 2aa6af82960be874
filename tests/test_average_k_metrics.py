"""Average-K metrics and evaluator against independent numpy / Python computations."""

import math

import numpy as np
import pytest

from labelwise.eval import average_k as ak
from labelwise.eval import evaluators as evaluators_lib
from labelwise.eval import metrics


def py_threshold(scores, k):
  flat = sorted((float(v) for v in np.ravel(scores)), reverse=True)
  m = int(math.floor(len(scores) * k + 1e-9))
  return flat[m - 1] if m == len(flat) else (flat[m - 1] + flat[m]) / 2


def test_threshold_hand_numbers():
  s = np.array([[0.9, 0.5, 0.1], [0.6, 0.3, 0.2]])
  assert ak.average_k_threshold(s, 1.5) == pytest.approx(0.4)   # m=3: (0.5 + 0.3) / 2
  assert ak.average_k_threshold(s, 1.0) == pytest.approx(0.55)  # m=2: (0.6 + 0.5) / 2
  assert ak.average_k_threshold(s, 3.0) == pytest.approx(0.1)   # every score kept
  assert ak.average_k_threshold(s, 1.75) == pytest.approx(0.4)  # floor(3.5) = 3


@pytest.mark.parametrize("k", [0.5, 1.0, 1.5, 2.0, 2.37, 3.0])
def test_calibration_reaches_k_on_calibration_set(k):
  rng = np.random.default_rng(int(k * 100))
  scores = rng.random((200, 7)).astype(np.float32)
  lam = ak.average_k_threshold(scores, k)
  assert lam == pytest.approx(py_threshold(scores, k))
  # Continuous scores, no ties: exactly floor(n k) scores are kept, i.e. mean set size ~ K.
  m = math.floor(200 * k + 1e-9)
  assert ak.average_k_set_size(scores, lam) == pytest.approx(m / 200)
  assert abs(ak.average_k_set_size(scores, lam) - k) < 1 / 200
  assert int(ak.average_k_sets(scores, lam).sum()) == m


def test_accuracy_micro_macro_against_loops():
  rng = np.random.default_rng(0)
  scores = rng.random((300, 5))
  labels = rng.choice(5, size=300, p=[0.5, 0.2, 0.15, 0.1, 0.05])
  lam = 0.6
  hits = [scores[i, labels[i]] >= lam for i in range(300)]
  assert ak.average_k_accuracy(scores, labels, lam) == pytest.approx(np.mean(hits))
  per_class = [np.mean([hits[i] for i in range(300) if labels[i] == c]) for c in range(5)]
  assert ak.average_k_accuracy(scores, labels, lam, macro=True) == pytest.approx(
      np.mean(per_class))
  sub = labels >= 3
  assert ak.average_k_accuracy(scores, labels, lam, where=sub) == pytest.approx(
      np.mean([hits[i] for i in range(300) if sub[i]]))
  assert math.isnan(ak.average_k_accuracy(scores, labels, lam, where=np.zeros(300, bool)))
  sizes = [sum(scores[i, j] >= lam for j in range(5)) for i in range(300)]
  assert ak.average_k_set_size(scores, lam) == pytest.approx(np.mean(sizes))
  # Re-exported in labelwise.eval.metrics.
  assert metrics.average_k_accuracy is ak.average_k_accuracy
  assert metrics.average_k_threshold is ak.average_k_threshold


def test_top_k_and_expected_accuracy():
  rng = np.random.default_rng(1)
  scores = rng.random((100, 6))
  labels = rng.integers(0, 6, 100)
  for k in (1, 2, 3):
    want = np.mean([labels[i] in np.argsort(-scores[i])[:k] for i in range(100)])
    assert ak.top_k_set_accuracy(scores, labels, k) == pytest.approx(want)
  post = rng.dirichlet(np.ones(6), size=100)
  sets = scores >= 0.5
  assert ak.expected_average_k_accuracy(sets, post) == pytest.approx(
      np.mean([post[i][sets[i]].sum() for i in range(100)]))


def test_tail_classes():
  labels = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 5 + [4] * 2 + [5] * 7)
  np.testing.assert_array_equal(ak.tail_classes(labels, 6, 1 / 3), [2, 4])
  np.testing.assert_array_equal(ak.tail_classes(labels, 7, 1 / 3), [2, 4, 6])  # 6 never seen


def test_metric_errors():
  s = np.random.default_rng(0).random((4, 3))
  with pytest.raises(ValueError, match="k"):
    ak.average_k_threshold(s, 0.0)
  with pytest.raises(ValueError, match="k"):
    ak.average_k_threshold(s, 3.5)
  with pytest.raises(ValueError, match="floor"):
    ak.average_k_threshold(s, 0.1)
  with pytest.raises(ValueError, match="scores"):
    ak.average_k_threshold(s[0], 1.0)
  with pytest.raises(ValueError, match="labels"):
    ak.average_k_accuracy(s, np.array([0, 1]), 0.5)
  with pytest.raises(ValueError, match="labels"):
    ak.average_k_accuracy(s, np.array([0, 1, 2, 3]), 0.5)
  with pytest.raises(TypeError, match="labels"):
    ak.average_k_accuracy(s, np.zeros(4), 0.5)
  with pytest.raises(ValueError, match="k"):
    ak.top_k_set_accuracy(s, np.zeros(4, int), 4)


class _FakeMethod:
  average_k_heads = {"softmax": ("logits", "softmax"), "multilabel": ("multilabel", "sigmoid")}


class _Cfg(dict):
  def get(self, key, default=None):
    return dict.get(self, key, default)


def _fake_split(seed, n, c=4):
  rng = np.random.default_rng(seed)
  post = rng.dirichlet(np.ones(c) * 0.5, size=n).astype(np.float32)
  labels = np.array([rng.choice(c, p=p / p.sum()) for p in post.astype(np.float64)])
  noise = rng.normal(size=(n, c))
  return {"logits": np.log(post + 1e-12), "multilabel": noise, "posterior": post,
          "label": labels.astype(np.int32)}


def test_evaluator_calibrates_on_validation_and_oracle_regret():
  splits = {"validation": _fake_split(0, 400), "test": _fake_split(1, 600)}
  config = _Cfg(data={"validation_split": "validation"}, avgk_eval={"ks": (1.5, 2.0)})
  ctx = evaluators_lib.EvalContext(
      config=config, params=None, model_state=None, buffers=None, model=None,
      method=_FakeMethod(), dataset=None, eval_split="test", workdir=None,
      predict_fn=lambda split: splits[split])
  out = evaluators_lib.get_evaluator("average_k")(ctx)
  # A softmax head whose probabilities are the true posterior *is* the oracle: zero regret.
  assert out["avgk/softmax/K2/regret"] == pytest.approx(0.0, abs=1e-6)
  assert out["avgk/softmax/K1.5/macro_regret"] == pytest.approx(0.0, abs=1e-6)
  # The threshold is calibrated on validation, applied unchanged on test.
  lam = ak.average_k_threshold(splits["validation"]["posterior"].astype(np.float64), 2.0)
  assert out["avgk/oracle/K2/threshold"] == pytest.approx(lam)
  assert out["avgk/oracle/K2/cal_set_size"] == pytest.approx(2.0)
  test = splits["test"]
  assert out["avgk/oracle/K2/accuracy"] == pytest.approx(
      ak.average_k_accuracy(test["posterior"].astype(np.float64), test["label"], lam))
  # The noise head is far from the oracle.
  assert out["avgk/multilabel/K2/regret"] > 0.1
  assert out["avgk/multilabel/K2/top_k_accuracy"] == pytest.approx(
      ak.top_k_set_accuracy(test["multilabel"], test["label"], 2))
  assert "avgk/softmax/K1.5/top_k_accuracy" not in out  # only for integer K


def test_evaluator_needs_validation_split():
  ctx = evaluators_lib.EvalContext(
      config=_Cfg(data={"validation_split": ""}), params=None, model_state=None, buffers=None,
      model=None, method=_FakeMethod(), dataset=None, eval_split="test", workdir=None,
      predict_fn=lambda split: {})
  with pytest.raises(ValueError, match="validation_split"):
    evaluators_lib.get_evaluator("average_k")(ctx)
