"""Fine-grain metrics (labelwise.eval.fine_grain) against scikit-learn / scipy on small data."""

import types

import numpy as np
import pytest
import scipy.stats
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier

from labelwise.eval import fine_grain
from labelwise.eval import metrics
from tests.helpers import fake_eval_context


def _data(seed=0, n_train=120, n_test=50, d=6, c=4):
  rng = np.random.RandomState(seed)
  centers = rng.randn(c, d) * 1.5
  ytr, yte = rng.randint(0, c, n_train), rng.randint(0, c, n_test)
  xtr = centers[ytr] + rng.randn(n_train, d)
  xte = centers[yte] + rng.randn(n_test, d)
  return xtr.astype(np.float32), ytr, xte.astype(np.float32), yte


@pytest.mark.parametrize("k", [1, 5])
def test_knn_matches_sklearn_cosine_and_chunking_does_not_matter(k):
  xtr, ytr, xte, yte = _data()
  ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(xtr, ytr)
  expect = ref.predict(xte)
  got = fine_grain.knn_predict(xtr, ytr, xte, k=k)
  np.testing.assert_array_equal(got, expect)
  # Tiny chunks (several training chunks with padding, several query blocks): same predictions.
  np.testing.assert_array_equal(
      fine_grain.knn_predict(xtr, ytr, xte, k=k, query_chunk=7, train_chunk=13), expect)
  acc = fine_grain.knn_accuracy(xtr, ytr, xte, yte, k=k, train_chunk=16)
  assert acc == pytest.approx(np.mean(expect == yte))
  assert metrics.knn_accuracy is fine_grain.knn_accuracy


def test_knn_hand_example_and_errors():
  x = np.eye(4, dtype=np.float32)
  assert fine_grain.knn_accuracy(x, [0, 1, 2, 3], 3.0 * x, [0, 1, 2, 3], k=1) == 1.0
  with pytest.raises(ValueError, match="k"):
    fine_grain.knn_accuracy(x, [0, 1, 2, 3], x, [0, 1, 2, 3], k=5)
  with pytest.raises(ValueError, match="test_x"):
    fine_grain.knn_predict(x, [0, 1, 2, 3], np.ones((2, 3)), k=1)


def test_logistic_probe_matches_sklearn():
  xtr, ytr, xte, yte = _data(1, d=5)
  l2 = 1e-2
  tr, te = fine_grain.standardize(xtr, xte)
  w, b, converged = fine_grain.fit_logistic_regression(tr, ytr, num_classes=4, l2=l2)
  assert converged
  ref = LogisticRegression(C=1.0 / (l2 * len(ytr)), tol=1e-10, max_iter=10_000).fit(tr, ytr)
  z = te @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  np.testing.assert_allclose(p, ref.predict_proba(te), atol=2e-4)
  acc = fine_grain.linear_probe_accuracy(xtr, ytr, xte, yte, l2=l2)
  assert acc == pytest.approx(np.mean(ref.predict(te) == yte))
  with pytest.raises(ValueError, match="l2"):
    fine_grain.linear_probe_accuracy(xtr, ytr, xte, yte, l2=0.0)


def test_ridge_probe_matches_sklearn():
  rng = np.random.RandomState(2)
  x, xt = rng.randn(80, 4), rng.randn(20, 4)
  t = x @ rng.randn(4) + 0.1 * rng.randn(80)
  l2 = 0.05
  tr, te = fine_grain.standardize(x, xt)
  ref = Ridge(alpha=l2 * len(x)).fit(tr, t).predict(te)
  np.testing.assert_allclose(fine_grain.ridge_probe(x, t, xt, l2=l2), ref, rtol=1e-8, atol=1e-10)
  two = fine_grain.ridge_probe(x, np.stack([t, 2 * t], 1), xt, l2=l2)
  np.testing.assert_allclose(two[:, 1], 2 * ref, rtol=1e-8, atol=1e-10)


def test_spearman_matches_scipy_with_ties():
  rng = np.random.RandomState(3)
  x = rng.randint(0, 6, 40).astype(float)
  y = x + rng.randint(0, 4, 40)
  np.testing.assert_allclose(fine_grain.rankdata(x), scipy.stats.rankdata(x))
  assert fine_grain.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y)[0], rel=1e-10)
  assert fine_grain.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert np.isnan(fine_grain.spearman([1, 1, 1], [1, 2, 3]))
  g = np.arange(40) % 3
  expect = np.mean([scipy.stats.spearmanr(x[g == i], y[g == i])[0] for i in range(3)])
  assert fine_grain.within_group_spearman(x, y, g) == pytest.approx(expect, rel=1e-10)


def test_fine_grain_metrics_spearman_for_one_dimensional_features():
  rng = np.random.RandomState(4)
  y = rng.randint(0, 10, 60)
  f = -(y + 0.3 * rng.randn(60))[:, None]   # anti-correlated: the sign is arbitrary
  out = fine_grain.fine_grain_metrics(f, y, f, y, test_coarse=(y >= 5).astype(int))
  assert out["fine_spearman"] == pytest.approx(abs(scipy.stats.spearmanr(f[:, 0], y)[0]))
  assert out["fine_spearman_within_coarse"] > 0.5
  assert 0.0 <= out["fine_knn_accuracy"] <= 1.0


def test_ridge_probe_accuracy_is_sklearn_ridge_on_one_hot_labels():
  xtr, ytr, xte, yte = _data(seed=5)
  l2 = 1e-2
  tr, te = fine_grain.standardize(xtr, xte)
  scores = Ridge(alpha=l2 * len(tr)).fit(tr, np.eye(4)[ytr]).predict(te)
  expect = float(np.mean(np.argmax(scores, 1) == yte))
  assert fine_grain.ridge_probe_accuracy(xtr, ytr, xte, yte, l2=l2) == pytest.approx(expect)
  ridge = fine_grain.fine_grain_metrics(xtr, ytr, xte, yte, l2=l2, probe="ridge")
  assert ridge["fine_probe_accuracy"] == pytest.approx(expect)
  with pytest.raises(ValueError, match="`probe` must be one of"):
    fine_grain.fine_grain_metrics(xtr, ytr, xte, yte, probe="lbfgs")


_TRAIN_SPLIT = types.SimpleNamespace(train=types.SimpleNamespace(split="train"))


def _eval_context(splits, **fine_grain_eval):
  return fake_eval_context(splits, config={"data": {"train_split": "train"},
                                           "fine_grain_eval": fine_grain_eval},
                           dataset=_TRAIN_SPLIT)


def test_fine_grain_evaluator_scores_the_eval_split():
  """The k-NN and probe are fitted on the training split and scored on the eval split.

  The eval split holds the training points with half of the fine labels swapped, so the 1-NN and a
  probe that fits the training split are right on exactly half of it (1.0 on the training split).
  Checked: with ``te = ctx.predictions()`` replaced by ``te = ctx.predictions(train_split)`` in
  ``eval/fine_grain.py`` both accuracies are 1.0 and the test fails; the code as it is passes.
  """
  rng = np.random.RandomState(5)
  centers = 4.0 * np.eye(4, dtype=np.float32)
  ytr = np.repeat(np.arange(4), 5)
  xtr = centers[ytr] + 0.1 * rng.randn(20, 4).astype(np.float32)
  yte = np.array([0, 1, 3, 2])  # classes 2 and 3 swapped
  splits = {"train": {"features": xtr, "label": ytr},
            "test": {"features": centers, "label": yte}}
  out = fine_grain.fine_grain(_eval_context(splits, k=1))
  assert out["fine_knn_accuracy"] == 0.5
  assert out["fine_probe_accuracy"] == 0.5
  # Training on coarse labels: the fine label is `fine_label`, `label` is the coarse one.
  coarse = {s: {"features": v["features"], "fine_label": v["label"], "label": v["label"] // 2}
            for s, v in splits.items()}
  out = fine_grain.fine_grain(_eval_context(coarse, k=1))
  assert (out["fine_knn_accuracy"], out["fine_probe_accuracy"]) == (0.5, 0.5)


def test_fine_grain_evaluator_options_max_train_and_codebook_entropy():
  """``max_train`` caps the examples the k-NN/probe are fitted on (a k above the cap is then an
  error); with a FIERCE codebook in the buffers the entropy of the eval features is reported."""
  import jax.numpy as jnp
  from labelwise.losses import fierce_entropy
  rng = np.random.RandomState(6)
  xtr, ytr = rng.randn(20, 4).astype(np.float32), np.repeat(np.arange(4), 5)
  xte, yte = rng.randn(12, 4).astype(np.float32), np.arange(12) % 4
  codes = (rng.randn(8, 4) * np.arange(1, 9)[:, None]).astype(np.float32)  # norms differ
  splits = {"train": {"features": xtr, "label": ytr}, "test": {"features": xte, "label": yte}}
  full = fine_grain.fine_grain(_eval_context(splits, k=3))
  assert fine_grain.fine_grain(_eval_context(splits, k=3, max_train=20)) == full
  assert full["fine_knn_accuracy"] == fine_grain.knn_accuracy(xtr, ytr, xte, yte, k=3)
  with pytest.raises(ValueError, match=r"`k` must be in \[1, 4\]"):
    fine_grain.fine_grain(_eval_context(splits, k=5, max_train=4))
  assert "feature_entropy_bits" not in full

  class _Fierce:
    options = {"similarity": "dot", "logit_scale": 2.0}
  ctx = fake_eval_context(splits, config={"data": {"train_split": "train"},
                                          "fine_grain_eval": {"k": 3}},
                          buffers={"codes": codes}, method=_Fierce(), dataset=_TRAIN_SPLIT)
  got = fine_grain.fine_grain(ctx)["feature_entropy_bits"]

  def entropy(x, similarity):
    return float(fierce_entropy(jnp.asarray(x), jnp.asarray(codes), similarity=similarity,
                                logit_scale=2.0))
  assert got == pytest.approx(entropy(xte, "dot"), rel=1e-6)
  # the eval split's features, with the method's similarity: the alternatives give other numbers
  assert got != pytest.approx(entropy(xtr, "dot"), rel=1e-3)
  assert got != pytest.approx(entropy(xte, "cosine"), rel=1e-3)


def test_fine_grain_length_errors():
  x = np.ones((4, 3))
  with pytest.raises(ValueError, match=r"`train_x` has 4 rows but `train_y` 3 labels"):
    fine_grain.knn_predict(x, [0, 1, 2], x, k=1)
  with pytest.raises(ValueError, match=r"same length, got train 4 vs 3, test 4 vs 4"):
    fine_grain.linear_probe_accuracy(x, [0, 1, 2], x, [0, 1, 2, 3])
  with pytest.raises(ValueError, match=r"`l2` must be > 0, got -1.0"):
    fine_grain.ridge_probe(x, np.ones(4), x, l2=-1.0)
  with pytest.raises(ValueError, match=r"`x` and `y` must have the same length, got 3 and 2"):
    fine_grain.spearman([1, 2, 3], [1, 2])


def test_spearman_of_constants_is_nan_without_warnings():
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # the early NaN: no ConstantInputWarning from scipy
    assert np.isnan(fine_grain.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(fine_grain.spearman([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))
    assert np.isnan(fine_grain.spearman([1.0], [2.0]))


# --- survivors of the clean-clone `make mutate` (0.2 sample) --------------------------------------

def _fan(labels):
  """2-D training features at angles 0.1, 0.2, ... from the query (1, 0): neighbour i is the i-th
  nearest by cosine; labels in that order."""
  ang = 0.1 * np.arange(1, len(labels) + 1)
  return np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32), np.asarray(labels)


def test_knn_default_k_is_5_and_k_is_keyword_only():
  """Neighbours by distance vote 0, 0, 1, 1, 1, 0: 4 of them tie 2-2 and 6 tie 3-3, each tie going
  to the smaller class 0, while 5 vote 1 (hand), so the default (5) is seen; ``k`` is
  keyword-only. (Killed mutants: the default 5 -> 6 and 5 -> 4, ``*`` -> ``/``.)"""
  x, y = _fan([0, 0, 1, 1, 1, 0])
  q = np.array([[1.0, 0.0]], np.float32)
  assert fine_grain.knn_predict(x, y, q).tolist() == [1]
  assert fine_grain.knn_predict(x, y, q, k=6).tolist() == [0]
  assert fine_grain.knn_predict(x, y, q, k=4).tolist() == [0]
  assert fine_grain.knn_accuracy(x, y, q, np.array([1])) == 1.0            # its default k is 5 too
  assert fine_grain.knn_accuracy(x, y, q, np.array([1]), k=4) == 0.0
  with pytest.raises(TypeError):
    fine_grain.knn_predict(x, y, q, 5)


def test_knn_of_no_queries_and_the_feature_count_message():
  """No test rows: an empty prediction (it failed before in the normalization's
  ``reshape(0, -1)``); a test set with another feature count is refused naming both counts. (Killed mutants: the empty result's shape (0,) -> (1,), the message's
  ``xte.shape[1]`` -> ``shape[0]``.)"""
  x, y = _fan([0, 1, 0])
  out = fine_grain.knn_predict(x, y, np.zeros((0, 2), np.float32), k=1)
  assert out.shape == (0,)
  with pytest.raises(ValueError, match=r"`test_x` must have 2 features \(as `train_x`\), got 5\."):
    fine_grain.knn_predict(x, y, np.ones((3, 5), np.float32), k=1)


def test_standardize_by_hand():
  """Both sides use the training mean and std: train [0, 2, 4] -> [-1.22, 0, 1.22]
  (std sqrt(8/3)), test [6] -> 3 / sqrt(8/3); a constant feature stays 0. (Killed mutant: the
  training side multiplied by the std.)"""
  tr, te = fine_grain.standardize(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]),
                                  np.array([[6.0, 1.0]]))
  s = np.sqrt(8.0 / 3.0)
  np.testing.assert_allclose(tr, [[-2 / s, 0], [0, 0], [2 / s, 0]], rtol=1e-12)
  np.testing.assert_allclose(te, [[4 / s, 0]], rtol=1e-12)


def test_spearman_of_two_points():
  """Two distinct points are perfectly rank-correlated (+1 or -1), not undefined. (Killed mutant:
  ``len(x) < 2`` -> ``<= 2``.)"""
  assert fine_grain.spearman([1.0, 2.0], [3.0, 5.0]) == pytest.approx(1.0)
  assert fine_grain.spearman([1.0, 2.0], [5.0, 3.0]) == pytest.approx(-1.0)
  assert np.isnan(fine_grain.spearman([1.0], [2.0]))


def test_ridge_probe_accuracy_default_l2_is_1e_3():
  """8 training points of class 0 at x = 0 and 2 of class 1 at x = 1, the test point at x = 0.6:
  with l2 = 1e-3 the ridge fit interpolates (class-1 score 0.6, hand) and predicts 1; l2 = 1
  halves the slope about the training mean (score 0.2 + 0.5 * 0.4 = 0.4) and predicts 0. The
  default call matches l2 = 1e-3. (Killed mutants: the default 1e-3 -> 1.001 and -> -0.999.)"""
  tr_x = np.array([[0.0]] * 8 + [[1.0]] * 2)
  tr_y = np.array([0] * 8 + [1] * 2)
  te_x, te_y = np.array([[0.6]]), np.array([1])
  np.testing.assert_allclose(fine_grain.ridge_probe(tr_x, np.eye(2)[tr_y], te_x, l2=1.0),
                             [[0.6, 0.4]], atol=1e-12)
  assert fine_grain.ridge_probe_accuracy(tr_x, tr_y, te_x, te_y, l2=1e-3) == 1.0
  assert fine_grain.ridge_probe_accuracy(tr_x, tr_y, te_x, te_y, l2=1.001) == 0.0
  assert fine_grain.ridge_probe_accuracy(tr_x, tr_y, te_x, te_y) == 1.0


def test_fine_grain_evaluator_defaults_k_5_and_l2_1e_3():
  """The evaluator's options default to k = 5 and l2 = 1e-3 (the docstring's numbers): on the fan
  of neighbours voting 0, 0, 1, 1, 1, 0 the default k gives the query's class 1 and k = 4 or 6 the
  tie's class 0; on the ridge example of ``test_ridge_probe_accuracy_default_l2_is_1e_3`` (a second,
  constant feature added: standardized to 0) the default l2 predicts class 1 and l2 = 1.001 class 0
  (hand). (Killed mutants: the evaluator's ``5`` -> ``6`` and ``1e-3`` -> ``1.001``.)"""
  x, y = _fan([0, 0, 1, 1, 1, 0])
  splits = {"train": {"features": x, "label": y},
            "test": {"features": np.array([[1.0, 0.0]], np.float32), "label": np.array([1])}}
  assert fine_grain.fine_grain(_eval_context(splits))["fine_knn_accuracy"] == 1.0
  assert fine_grain.fine_grain(_eval_context(splits, k=6))["fine_knn_accuracy"] == 0.0
  assert fine_grain.fine_grain(_eval_context(splits, k=4))["fine_knn_accuracy"] == 0.0
  tr_x = np.array([[0.0, 1.0]] * 8 + [[1.0, 1.0]] * 2, np.float32)
  ridge = {"train": {"features": tr_x, "label": np.array([0] * 8 + [1] * 2)},
           "test": {"features": np.array([[0.6, 1.0]], np.float32), "label": np.array([1])}}
  assert fine_grain.fine_grain(_eval_context(ridge, probe="ridge"))["fine_probe_accuracy"] == 1.0
  assert fine_grain.fine_grain(
      _eval_context(ridge, probe="ridge", l2=1.001))["fine_probe_accuracy"] == 0.0


def test_fine_grain_evaluator_max_train_draws_without_replacement():
  """``max_train = 4`` of 5 one-point classes (orthogonal features, the test set is the training
  set, k = 1) keeps 4 distinct points: the 1-NN is right on 4 of 5. A draw with replacement
  (``RandomState(0).choice(5, 4)`` = [4, 0, 3, 3]) keeps 3 classes: 3 of 5. (Killed mutant:
  ``replace=False`` -> ``True``; without replacement the draw is [2, 0, 1, 3].)"""
  x, y = np.eye(5, dtype=np.float32), np.arange(5)
  splits = {"train": {"features": x, "label": y}, "test": {"features": x, "label": y}}
  out = fine_grain.fine_grain(_eval_context(splits, k=1, max_train=4))
  assert out["fine_knn_accuracy"] == pytest.approx(0.8)
