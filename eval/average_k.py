"""Average-K metrics and the calibrate-on-validation evaluator.

A set-valued classifier with one global threshold ``lambda`` returns ``{j : s_j(x) >= lambda}``.
``lambda`` is calibrated on a held-out split so that sets hold K classes on average there, then
applied unchanged on test (Garcin et al., arXiv:2303.18118; the calibration follows the
Pl@ntNet-300K code: midpoint of the nK-th and (nK+1)-th largest scores, ``floor(nK)`` for fractional
K).

Metrics are numpy functions of ``scores [n, L]`` (any scores: probabilities, sigmoid outputs or logits
of one head; only their order and the threshold matter).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
from jax.typing import ArrayLike


def _scores_2d(scores, name="scores") -> np.ndarray:
  scores = np.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(f"`{name}` must have shape [n, num_classes], got {scores.shape}.")
  if not np.issubdtype(scores.dtype, np.floating):
    raise TypeError(f"`{name}` must be floating, got dtype {scores.dtype}.")
  return scores


def _labels_1d(labels, n, num_classes, name="labels") -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != (n,):
    raise ValueError(f"`{name}` must have shape [{n}], got {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise TypeError(f"`{name}` must be integer class indices, got dtype {labels.dtype}.")
  if n and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"`{name}` must be in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}].")
  return labels


def average_k_threshold(scores: ArrayLike, k: float) -> float:
  """Global threshold giving sets of K classes on average on ``scores``.

  ``lambda = (s_(m) + s_(m+1)) / 2`` with ``s_(1) >= s_(2) >= ...`` the flattened scores sorted in
  decreasing order and ``m = floor(n k)``. When ``m = n L`` (every score kept), ``lambda = s_(m)``.
  Without ties, exactly ``m`` scores are ``>= lambda``.

  Args:
    scores: ``[n, L]`` floating scores of the calibration set.
    k: average set size in ``(0, L]``; ``floor(n k)`` must be >= 1.

  Returns:
    the threshold (Python float).

  Example:
    >>> average_k_threshold(np.array([[0.9, 0.5, 0.1], [0.6, 0.3, 0.2]]), 1.5)  # m = 3: (0.5+0.3)/2
    0.4
  """
  scores = _scores_2d(scores)
  n, num_classes = scores.shape
  k = float(k)
  if not math.isfinite(k) or not 0.0 < k <= num_classes:
    raise ValueError(f"`k` must be in (0, {num_classes}], got {k}.")
  m = int(math.floor(n * k + 1e-9))  # tolerate n * k = 2.9999999 for n * k = 3
  if m < 1:
    raise ValueError(f"`k`={k} on {n} calibration examples keeps floor(n k) = 0 scores.")
  flat = np.sort(scores.astype(np.float64).reshape(-1))[::-1]
  if m >= flat.size:
    return float(flat[-1])
  return float((flat[m - 1] + flat[m]) / 2.0)


def average_k_sets(scores: ArrayLike, threshold: float) -> np.ndarray:
  """Boolean ``[n, L]`` membership ``s_ij >= threshold``."""
  return _scores_2d(scores).astype(np.float64) >= float(threshold)


def average_k_set_size(scores: ArrayLike, threshold: float) -> float:
  """Realized mean set size ``(1/n) sum_i |{j : s_ij >= threshold}|``."""
  return float(average_k_sets(scores, threshold).sum(-1).mean())


def average_k_correct(scores: ArrayLike, labels: ArrayLike, threshold: float) -> np.ndarray:
  """Per-example ``1[s_{i, y_i} >= threshold]`` (float64 ``[n]``)."""
  scores = _scores_2d(scores)
  labels = _labels_1d(labels, scores.shape[0], scores.shape[1])
  true = scores[np.arange(len(labels)), labels].astype(np.float64)
  return (true >= float(threshold)).astype(np.float64)


def average_k_accuracy(scores: ArrayLike, labels: ArrayLike, threshold: float, *,
                       macro: bool = False, where: Optional[ArrayLike] = None) -> float:
  """Average-K accuracy: the fraction of examples whose label is in its set.

  Micro: ``mean_i 1[s_{i, y_i} >= lambda]``. Macro: the mean over the classes present in ``labels``
  (restricted to ``where``) of the per-class micro accuracy.

  Args:
    scores: ``[n, L]`` floating.
    labels: ``[n]`` integer labels.
    threshold: ``lambda`` (from :func:`average_k_threshold` on a calibration set).
    macro: per-class average instead of per-example.
    where: optional ``[n]`` boolean subset (e.g. ambiguous inputs); NaN if empty.

  Returns:
    float in [0, 1].
  """
  correct = average_k_correct(scores, labels, threshold)
  labels = np.asarray(labels)
  keep = np.ones(len(labels), bool) if where is None else np.asarray(where, bool)
  if keep.shape != labels.shape:
    raise ValueError(f"`where` must have shape {labels.shape}, got {keep.shape}.")
  if not keep.any():
    return float("nan")
  correct, labels = correct[keep], labels[keep]
  if not macro:
    return float(correct.mean())
  classes = np.unique(labels)
  return float(np.mean([correct[labels == c].mean() for c in classes]))


def expected_average_k_accuracy(sets: ArrayLike, posterior: ArrayLike) -> float:
  """``mean_i sum_{j in set_i} eta_j(x_i)``: the accuracy expected under the true posterior ``eta``.

  Removes the label-sampling noise when the data-generating posterior is known.
  """
  sets = np.asarray(sets, bool)
  posterior = np.asarray(posterior, np.float64)
  if sets.shape != posterior.shape:
    raise ValueError(f"`posterior` must have the shape of `sets` {sets.shape}, got "
                     f"{posterior.shape}.")
  return float((sets * posterior).sum(-1).mean())


def top_k_set_accuracy(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
  """Top-k accuracy (sets of exactly k classes), ties broken towards the label."""
  scores = _scores_2d(scores)
  labels = _labels_1d(labels, scores.shape[0], scores.shape[1])
  if not 1 <= int(k) <= scores.shape[1]:
    raise ValueError(f"`k` must be an integer in [1, {scores.shape[1]}], got {k}.")
  true = scores[np.arange(len(labels)), labels]
  rank = (scores > true[:, None]).sum(-1)
  return float((rank < int(k)).mean())


def tail_classes(labels, num_classes: int, fraction: float = 1.0 / 3.0) -> np.ndarray:
  """The ``ceil(fraction * L)`` least frequent classes of ``labels`` (ties: higher index first)."""
  counts = np.bincount(np.asarray(labels), minlength=num_classes)
  order = np.lexsort((-np.arange(num_classes), counts))  # by count, then higher index first
  return np.sort(order[:int(math.ceil(fraction * num_classes))])


def average_k_report(cal_scores, test_scores, test_labels, k: float, *,
                     cal_labels=None, test_posterior=None, tail=None,
                     ambiguous=None) -> Dict[str, float]:
  """Calibrates on ``cal_scores`` and evaluates on test; returns the metrics of one head and K.

  Keys: ``threshold``, ``accuracy``, ``macro_accuracy``, ``set_size`` (test), ``cal_set_size``;
  ``tail_accuracy`` when ``tail`` (class indices) is given; ``ambiguous_accuracy`` when
  ``ambiguous`` (``[n]`` boolean) is given; ``expected_accuracy`` with ``test_posterior``.
  """
  del cal_labels
  lam = average_k_threshold(cal_scores, k)
  out = {"threshold": lam,
         "accuracy": average_k_accuracy(test_scores, test_labels, lam),
         "macro_accuracy": average_k_accuracy(test_scores, test_labels, lam, macro=True),
         "set_size": average_k_set_size(test_scores, lam),
         "cal_set_size": average_k_set_size(cal_scores, lam)}
  if tail is not None:
    out["tail_accuracy"] = average_k_accuracy(test_scores, test_labels, lam,
                                              where=np.isin(test_labels, tail))
  if ambiguous is not None:
    out["ambiguous_accuracy"] = average_k_accuracy(test_scores, test_labels, lam,
                                                   where=ambiguous)
  if test_posterior is not None:
    out["expected_accuracy"] = expected_average_k_accuracy(
        average_k_sets(test_scores, lam), test_posterior)
  return out


def k_tag(k: float) -> str:
  """``1.5 -> "K1.5"``, ``2.0 -> "K2"`` (metric-name friendly)."""
  return "K" + (f"{k:g}")


# ------------------------------------------------------------------------------------------------
# evaluator
# ------------------------------------------------------------------------------------------------

#: defaults of ``config.avgk_eval``.
EVAL_DEFAULTS = dict(ks=(1.5, 2.0, 3.0), ambiguous_max_posterior=0.5, tail_fraction=1.0 / 3.0,
                     oracle=True, posterior_field="posterior")


def _softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _sigmoid(z):
  z = np.asarray(z, np.float64)
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def head_scores(method, outputs) -> Dict[str, np.ndarray]:
  """Scores to threshold, per head: ``method.average_k_heads`` maps head name -> (output, link).

  Default (methods without the attribute, e.g. ``ce``): ``{"softmax": ("logits", "softmax")}``.
  """
  heads = getattr(method, "average_k_heads", None) or {"softmax": ("logits", "softmax")}
  out = {}
  for head, (key, link) in heads.items():
    z = outputs[key]
    out[head] = {"softmax": _softmax, "sigmoid": _sigmoid}[link](z)
  return out


def _eval_options(config) -> dict:
  given = dict(config.get("avgk_eval", {}) or {})
  unknown = sorted(set(given) - set(EVAL_DEFAULTS))
  if unknown:
    raise ValueError(f"unknown `avgk_eval` option(s) {unknown}; known: {sorted(EVAL_DEFAULTS)}.")
  return {**EVAL_DEFAULTS, **given}


def average_k_evaluator(ctx) -> Dict[str, float]:
  """Calibrates lambda on ``config.data.validation_split``, reports test metrics per head and K.

  Keys ``avgk/<head>/<K>/<metric>`` (see :func:`average_k_report`), the top-k accuracy for
  integer K, and with a posterior field (``avgk_eval.posterior_field``: ``posterior`` of the
  synthetic data, or CIFAR-10H's human ``soft_label``) the oracle (threshold on the true posterior,
  calibrated the same way) and the regrets ``oracle - method`` (micro and macro).
  """
  opts = _eval_options(ctx.config)
  cal_split = ctx.config.get("data", {}).get("validation_split", "")
  if not cal_split:
    raise ValueError("the `average_k` evaluator calibrates its threshold on a held-out split: "
                     "set --config.data.validation_split (e.g. 'validation' or 'train[90%:]').")
  cal = ctx.predictions(cal_split)
  test = ctx.predictions()
  num_classes = test["logits"].shape[-1]
  labels = test["label"]
  tail = tail_classes(cal["label"], num_classes, opts["tail_fraction"])
  field = opts["posterior_field"]
  posterior = test.get(field)
  ambiguous = None
  if posterior is not None:
    ambiguous = np.asarray(posterior).max(-1) < float(opts["ambiguous_max_posterior"])
  cal_heads = head_scores(ctx.method, cal)
  test_heads = head_scores(ctx.method, test)
  if posterior is not None and opts["oracle"]:
    cal_heads["oracle"] = np.asarray(cal[field], np.float64)
    test_heads["oracle"] = np.asarray(posterior, np.float64)
  out: Dict[str, float] = {}
  for k in opts["ks"]:
    k = float(k)
    reports = {}
    for head in test_heads:
      rep = average_k_report(cal_heads[head], test_heads[head], labels, k, tail=tail,
                             ambiguous=ambiguous, test_posterior=posterior)
      if float(k).is_integer():
        rep["top_k_accuracy"] = top_k_set_accuracy(test_heads[head], labels, int(k))
      reports[head] = rep
    if "oracle" in reports:
      for head, rep in reports.items():
        if head != "oracle":
          rep["regret"] = reports["oracle"]["accuracy"] - rep["accuracy"]
          rep["macro_regret"] = reports["oracle"]["macro_accuracy"] - rep["macro_accuracy"]
    for head, rep in reports.items():
      for name, value in rep.items():
        out[f"avgk/{head}/{k_tag(k)}/{name}"] = float(value)
  return out
