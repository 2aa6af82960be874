"""The per-example metrics of ``eval/metrics.py`` and the average-K functions of ``eval/average_k.py``
against numpy loops, on leading batch axes, at their argument boundaries and under jit.

Written from the survivors of a mutation pass (``tools/mutate.py``, 30% sample: ``eval/metrics.py``
12 of 21 mutants survived, ``eval/average_k.py`` 15 of 52); each test names the mutant it kills
(checked by planting it by hand: the test fails with it and passes without).
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise.eval import average_k as ak
from labelwise.eval import metrics
from tests.helpers import fake_eval_context


def _np_log_softmax(z):
  z = np.asarray(z, np.float64)
  m = z.max(-1, keepdims=True)
  return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


@pytest.fixture
def batch3d():
  """Logits with two leading axes [2, 3, 5] (a class axis of 5, not equal to either leading one)."""
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  labels = rng.integers(0, 5, size=(2, 3)).astype(np.int32)
  labels[0, 0] = 4  # a label above the size of axis 1 (3): the range check must use the class axis
  return logits, labels


def test_per_example_metrics_on_leading_axes_match_numpy(batch3d):
  """Kills ``axis=-1 -> axis=1`` in accuracy and cross_entropy, ``[:, 0] -> [:, 1]``, and the label
  range checked against ``shape[1]`` instead of the class axis."""
  logits, labels = batch3d
  acc = metrics.accuracy(logits, labels)
  assert acc.shape == labels.shape
  np.testing.assert_array_equal(np.asarray(acc), (logits.argmax(-1) == labels).astype(np.float32))
  ce = metrics.cross_entropy(logits, labels)
  want = -np.take_along_axis(_np_log_softmax(logits), labels[..., None], -1)[..., 0]
  np.testing.assert_allclose(np.asarray(ce), want, rtol=1e-5, atol=1e-6)
  for k in (1, 2, 5):
    rank = (logits > np.take_along_axis(logits, labels[..., None], -1)).sum(-1)
    np.testing.assert_array_equal(np.asarray(metrics.top_k_accuracy(logits, labels, k=k)),
                                  (rank < k).astype(np.float32))


def test_cross_entropy_is_the_labels_entry_in_two_dimensions():
  """Kills ``[:, 0] -> [:, 1]`` with the usual [batch, C] logits."""
  logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
  labels = np.array([0, 2], np.int32)
  want = -_np_log_softmax(logits)[np.arange(2), labels]
  np.testing.assert_allclose(np.asarray(metrics.cross_entropy(logits, labels)), want, rtol=1e-6)


def test_metrics_run_under_jit_with_traced_labels():
  """Kills ``if not isinstance(labels, Tracer)`` -> ``if isinstance(...)`` (the host range check
  would then run on tracers and fail, and concrete out-of-range labels would pass unchecked)."""
  logits = jnp.array([[0.0, 1.0], [3.0, 1.0]])
  labels = jnp.array([1, 0])
  f = jax.jit(lambda z, y: (metrics.accuracy(z, y), metrics.cross_entropy(z, y),
                            metrics.top_k_accuracy(z, y, k=1)))
  acc, ce, top1 = f(logits, labels)
  np.testing.assert_array_equal(np.asarray(acc), [1.0, 1.0])
  np.testing.assert_array_equal(np.asarray(top1), np.asarray(acc))
  np.testing.assert_allclose(np.asarray(ce), -_np_log_softmax(logits)[[0, 1], [1, 0]], rtol=1e-6)
  with pytest.raises(ValueError, match="labels"):
    metrics.accuracy(np.asarray(logits), np.array([1, 2]))  # 2 is not a class of 2


def test_scalar_logits_are_refused_naming_the_class_axis():
  """Kills ``len(shape) < 1 -> < 0``."""
  with pytest.raises(ValueError, match=r"`logits` must have a class axis"):
    metrics.accuracy(np.float32(1.0), np.int32(0))


def test_top_k_bounds_and_keyword_only():
  """Kills ``1 <= k`` -> ``1 < k`` / ``2 <= k``, ``k <= shape[-1]`` -> ``shape[-2]``, the message's
  ``shape[-1]`` -> ``shape[1]`` and ``*, k`` -> ``/, k``."""
  logits = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)  # batch 3 < 5 classes
  labels = np.array([0, 4, 2], np.int32)
  assert float(metrics.top_k_accuracy(logits, labels, k=5).mean()) == 1.0  # k = C is allowed
  top1 = np.asarray(metrics.top_k_accuracy(logits, labels, k=1))
  np.testing.assert_array_equal(top1, np.asarray(metrics.accuracy(logits, labels)))
  for bad in (0, 6):
    with pytest.raises(ValueError, match=r"`k` must be in \[1, 5\], got " + str(bad)):
      metrics.top_k_accuracy(logits, labels, k=bad)
  with pytest.raises(ValueError, match=r"`k` must be in \[1, 5\]"):
    metrics.top_k_accuracy(logits.reshape(1, 3, 5), labels.reshape(1, 3), k=6)
  assert inspect.signature(metrics.top_k_accuracy).parameters["k"].kind is inspect.Parameter.KEYWORD_ONLY
  with pytest.raises(TypeError):
    metrics.top_k_accuracy(logits, labels, 2)  # pylint: disable=too-many-function-args


def test_masked_mean_of_one_kept_entry_is_that_entry():
  """Kills ``max(w.sum(), 1.0) -> 2.0``; an empty mask gives 0 without a warning."""
  values = np.array([3.0, 5.0, 7.0])
  assert metrics.masked_mean(values, np.array([0, 1, 0])) == 5.0
  assert metrics.masked_mean(values, np.array([1, 0, 1])) == 5.0
  assert metrics.masked_mean(values) == 5.0
  assert metrics.masked_mean(values, np.zeros(3)) == 0.0
  assert math.isnan(metrics.masked_mean(np.zeros(0)))
  with pytest.raises(ValueError, match="`where` must have the shape"):
    metrics.masked_mean(values, np.ones(2))


# ------------------------------------------------------------------------------------------------
# eval/average_k.py
# ------------------------------------------------------------------------------------------------

def test_average_k_accuracy_options_are_keyword_only():
  """Kills ``threshold, *, macro`` -> ``threshold, /, macro`` (the call runs the body, so the
  mutation tool, which runs the tests that execute a function's body, picks this test)."""
  assert ak.average_k_accuracy(np.eye(2), np.array([0, 1]), 0.5, macro=True) == 1.0
  params = inspect.signature(ak.average_k_accuracy).parameters
  assert params["macro"].kind is inspect.Parameter.KEYWORD_ONLY
  assert params["where"].kind is inspect.Parameter.KEYWORD_ONLY
  with pytest.raises(TypeError):
    ak.average_k_accuracy(np.eye(2), np.array([0, 1]), 0.5, True)


def test_top_k_set_accuracy_refuses_k_zero_and_counts_ties_towards_the_label():
  """Kills ``1 <= int(k)`` -> ``0 <= int(k)``."""
  scores = np.array([[0.5, 0.5, 0.1], [0.2, 0.3, 0.9]])
  labels = np.array([1, 0])
  with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 3\], got 0"):
    ak.top_k_set_accuracy(scores, labels, 0)
  assert ak.top_k_set_accuracy(scores, labels, 1) == 0.5   # the tie of row 0 counts as inside
  assert ak.top_k_set_accuracy(scores, labels, 3) == 1.0


def test_tail_classes_default_third_and_ties_take_the_higher_index():
  """Kills the default ``fraction=1/3 -> 0/3`` and ``lexsort((-arange, ...)) -> (arange, ...)``."""
  labels = np.array([0] * 5 + [1] * 2 + [2] * 2 + [3] * 2 + [4] * 7 + [5] * 9)  # 1, 2, 3 tie at 2
  assert ak.tail_classes(labels, 6).tolist() == [2, 3]            # ceil(6 / 3) = 2 of the three
  assert ak.tail_classes(labels, 6, 0.5).tolist() == [1, 2, 3]
  assert ak.tail_classes(labels, 7).tolist() == [2, 3, 6]         # class 6 never appears: count 0
  assert ak.tail_classes(labels, 6, 1 / 6).tolist() == [3]


def test_average_k_report_adds_the_subset_accuracies_only_when_asked():
  """Kills ``if ambiguous is not None`` -> ``if not ambiguous is not None``."""
  rng = np.random.default_rng(2)
  cal, test = rng.random((50, 4)), rng.random((40, 4))
  labels = rng.integers(0, 4, 40)
  plain = ak.average_k_report(cal, test, labels, 2.0)
  assert "ambiguous_accuracy" not in plain and "tail_accuracy" not in plain
  amb = np.arange(40) % 3 == 0
  rep = ak.average_k_report(cal, test, labels, 2.0, ambiguous=amb, tail=[1])
  lam = ak.average_k_threshold(cal, 2.0)
  correct = test[np.arange(40), labels] >= lam
  assert rep["ambiguous_accuracy"] == pytest.approx(correct[amb].mean())
  assert rep["tail_accuracy"] == pytest.approx(correct[labels == 1].mean())
  assert rep["accuracy"] == pytest.approx(correct.mean())


class _Softmax:
  average_k_heads = {"softmax": ("logits", "softmax")}


def _split(seed, n, c=6, posterior=True):
  rng = np.random.default_rng(seed)
  post = rng.dirichlet(np.ones(c), size=n)
  out = {"logits": np.log(post) + rng.normal(scale=0.5, size=(n, c)),
         "label": np.array([rng.choice(c, p=p) for p in post]).astype(np.int32)}
  if posterior:
    out["posterior"] = post.astype(np.float32)
  return out


def _evaluate(splits, avgk_eval=None):
  config = {"data": {"validation_split": "validation"}}
  if avgk_eval is not None:
    config["avgk_eval"] = avgk_eval
  ctx = fake_eval_context(splits, config=config, method=_Softmax())
  from labelwise.eval import evaluators
  return evaluators.get_evaluator("average_k")(ctx)


def test_evaluator_defaults_ks_tail_third_and_ambiguous_inputs():
  """The documented defaults (K in 1.5, 2, 3; the rarest third of the classes; inputs whose true
  max posterior is below 0.5 are ambiguous) against an independent computation. Kills the
  ``EVAL_DEFAULTS`` number mutants and ``if posterior is not None`` -> ``is None``."""
  splits = {"validation": _split(0, 300), "test": _split(1, 240)}
  out = _evaluate(splits)
  ks = sorted({key.split("/")[2] for key in out})
  assert ks == ["K1.5", "K2", "K3"]
  test, val = splits["test"], splits["validation"]
  z = test["logits"] - test["logits"].max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  cal_z = val["logits"] - val["logits"].max(-1, keepdims=True)
  cal_p = np.exp(cal_z) / np.exp(cal_z).sum(-1, keepdims=True)
  counts = np.bincount(val["label"], minlength=6)
  tail = sorted(sorted(range(6), key=lambda c: (counts[c], -c))[:2])  # ties: higher index first
  for k in (1.5, 2.0, 3.0):
    lam = ak.average_k_threshold(cal_p, k)
    correct = p[np.arange(len(p)), test["label"]] >= lam
    tag = ak.k_tag(k)
    assert out[f"avgk/softmax/{tag}/accuracy"] == pytest.approx(correct.mean())
    in_tail = np.isin(test["label"], tail)
    assert out[f"avgk/softmax/{tag}/tail_accuracy"] == pytest.approx(correct[in_tail].mean())
    amb = test["posterior"].max(-1) < 0.5
    assert 0 < amb.sum() < len(amb)
    assert out[f"avgk/softmax/{tag}/ambiguous_accuracy"] == pytest.approx(correct[amb].mean())
    assert f"avgk/oracle/{tag}/accuracy" in out and f"avgk/softmax/{tag}/regret" in out


def test_evaluator_without_a_posterior_has_no_oracle_and_no_ambiguity():
  """Kills ``posterior is not None and opts["oracle"]`` -> ``or`` (the oracle head would read a
  posterior that is not there) and ``if posterior is not None`` -> ``is None``."""
  splits = {"validation": _split(0, 200, posterior=False), "test": _split(1, 150, posterior=False)}
  out = _evaluate(splits, {"ks": (2.0,)})
  assert out and all(key.startswith("avgk/softmax/K2/") for key in out)
  assert not any(key.endswith(("regret", "ambiguous_accuracy", "expected_accuracy")) for key in out)
  assert "avgk/softmax/K2/top_k_accuracy" in out and "avgk/softmax/K2/tail_accuracy" in out


def test_one_example_without_a_batch_axis():
  """Logits ``[C]`` with a scalar label are one example (the class axis is all that is needed):
  accuracy 1 / 0 and the cross-entropy by hand. (Killed mutant: the class-axis check ``< 1`` ->
  ``< 2``, which refused 1-D logits.)"""
  z = jnp.array([0.0, np.log(3.0)])
  assert float(metrics.accuracy(z, jnp.array(1))) == 1.0
  assert float(metrics.accuracy(z, jnp.array(0))) == 0.0
  np.testing.assert_allclose(float(metrics.cross_entropy(z, jnp.array(1))), np.log(4.0 / 3.0),
                             rtol=1e-6)
