"""Fine-grain evaluation of frozen features: k-NN accuracy, linear probes, Spearman correlation.

Used by the FIERCE study (train on coarse labels, measure how much fine-label information the
penultimate features keep) and usable on any feature matrix. All functions take numpy or jax arrays.

* ``knn_accuracy``: majority vote of the ``k`` nearest training features by cosine similarity
  (L2-normalized features), jitted, chunked over queries and over the training set with a running
  top-k, so memory stays ``O(query_chunk * train_chunk)`` (no ``N x N`` matrix on 50k examples).
* ``linear_probe_accuracy``: multinomial logistic regression on standardized features, L2 penalty on
  the weights (not the bias), solved to convergence with L-BFGS in float64 (well conditioned, so the
  probe does not under-fit the way a badly tuned SGD probe does).
* ``ridge_probe``: closed-form ridge regression on standardized features (continuous targets, or
  one-hot targets for classification); ``ridge_probe_accuracy`` classifies with it.
* ``spearman`` / ``within_group_spearman``: rank correlation (average ranks for ties) for an ordinal
  fine target, globally and inside each coarse class.

The evaluator ``fine_grain`` runs them on a trained model: features of the training split fit the
k-NN / probe, features of the eval split are scored against the fine label.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
import scipy.stats

from labelwise.eval.context import EvalContext


# ---------------------------------------------------------------- k-NN

def _normalize_np(x):
  x = np.asarray(x, np.float32)
  x = x.reshape(len(x), int(np.prod(x.shape[1:])))  # (not -1: an empty set keeps its features)
  n = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.maximum(n, 1e-12)


@functools.partial(jax.jit, static_argnames=("k",))
def _topk_chunk(queries, train_chunks, label_chunks, valid_chunks, *, k):
  """Running top-k over training chunks: returns (sims [q, k], labels [q, k])."""
  q = queries.shape[0]
  init = (jnp.full((q, k), -jnp.inf, jnp.float32), jnp.zeros((q, k), jnp.int32))

  def body(carry, chunk):
    best_s, best_l = carry
    x, y, v = chunk
    s = queries @ x.T
    s = jnp.where(v[None, :], s, -jnp.inf)
    all_s = jnp.concatenate([best_s, s], axis=1)
    all_l = jnp.concatenate([best_l, jnp.broadcast_to(y[None, :], s.shape)], axis=1)
    top_s, idx = jax.lax.top_k(all_s, k)
    return (top_s, jnp.take_along_axis(all_l, idx, axis=1)), None

  (best_s, best_l), _ = jax.lax.scan(body, init, (train_chunks, label_chunks, valid_chunks))
  return best_s, best_l


def knn_predict(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, *, k: int = 5,
                num_classes: Optional[int] = None, query_chunk: int = 512,
                train_chunk: int = 4096) -> np.ndarray:
  """k-NN predictions ``[num_test]`` by cosine similarity; ties of the vote go to the smaller class."""
  train_y = np.asarray(train_y).astype(np.int32).reshape(-1)
  n_train = len(train_y)
  if np.shape(train_x)[0] != n_train:
    raise ValueError(f"`train_x` has {np.shape(train_x)[0]} rows but `train_y` {n_train} labels.")
  if not 1 <= k <= n_train:
    raise ValueError(f"`k` must be in [1, {n_train}] (the training set size), got {k}.")
  num_classes = int(num_classes or train_y.max() + 1)
  xtr, xte = _normalize_np(train_x), _normalize_np(test_x)
  if xtr.shape[1] != xte.shape[1]:
    raise ValueError(f"`test_x` must have {xtr.shape[1]} features (as `train_x`), got "
                     f"{xte.shape[1]}.")
  t = min(train_chunk, n_train)
  n_chunks = math.ceil(n_train / t)
  pad = n_chunks * t - n_train
  xtr = np.concatenate([xtr, np.zeros((pad, xtr.shape[1]), np.float32)])
  ytr = np.concatenate([train_y, np.zeros((pad,), np.int32)])
  valid = np.arange(n_chunks * t) < n_train
  chunks = (jnp.asarray(xtr.reshape(n_chunks, t, -1)), jnp.asarray(ytr.reshape(n_chunks, t)),
            jnp.asarray(valid.reshape(n_chunks, t)))
  preds = []
  q = min(query_chunk, max(len(xte), 1))
  for start in range(0, len(xte), q):
    block = xte[start:start + q]
    n = len(block)
    if n < q:  # pad the last block: one compiled shape
      block = np.concatenate([block, np.zeros((q - n, block.shape[1]), np.float32)])
    _, labels = _topk_chunk(jnp.asarray(block), *chunks, k=k)
    votes = jax.nn.one_hot(labels, num_classes).sum(axis=1)      # [q, C]
    preds.append(np.asarray(jnp.argmax(votes, axis=1))[:n])      # argmax: first (smallest) tie
  return np.concatenate(preds) if preds else np.zeros((0,), np.int32)


def knn_accuracy(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike, *,
                 k: int = 5, query_chunk: int = 512, train_chunk: int = 4096) -> float:
  """Fraction of test examples whose ``k`` nearest training features (cosine) vote their label.

  Features are L2-normalized; the vote is a plain majority, ties broken towards the smaller label
  (as scikit-learn's ``KNeighborsClassifier``). Memory is bounded by ``query_chunk x train_chunk``.

  Args:
    train_x: ``[n_train, ...]`` features (flattened).
    train_y: ``[n_train]`` integer labels.
    test_x: ``[n_test, ...]`` features.
    test_y: ``[n_test]`` integer labels.
    k: number of neighbours.

  Returns:
    accuracy in ``[0, 1]``.

  Example:
    >>> knn_accuracy(np.eye(4), [0, 1, 2, 3], np.eye(4), [0, 1, 2, 3], k=1)
    1.0
  """
  test_y = np.asarray(test_y).reshape(-1)
  num_classes = int(max(np.max(train_y), np.max(test_y) if len(test_y) else 0) + 1)
  pred = knn_predict(train_x, train_y, test_x, k=k, num_classes=num_classes,
                     query_chunk=query_chunk, train_chunk=train_chunk)
  return float(np.mean(pred == test_y)) if len(test_y) else float("nan")


# ---------------------------------------------------------------- linear probes

def standardize(train_x, test_x):
  """Standardizes both with the training mean and std (constant features stay 0)."""
  tr = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
  te = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
  mu, sd = tr.mean(0), tr.std(0)
  sd = np.where(sd > 1e-8, sd, 1.0)
  return (tr - mu) / sd, (te - mu) / sd


def fit_logistic_regression(x, y, *, num_classes: int, l2: float = 1e-3, max_iter: int = 500,
                            tol: float = 1e-6):
  """Multinomial logistic regression, ``mean_i CE + l2/2 |W|^2`` (bias not penalized), by L-BFGS.

  Returns ``(W [D, C], b [C], converged)``.
  """
  from scipy.optimize import minimize
  x = np.asarray(x, np.float64)
  n, d = x.shape
  onehot = np.eye(num_classes)[np.asarray(y, np.int64)]

  def fun(theta):
    w, b = theta[:d * num_classes].reshape(d, num_classes), theta[d * num_classes:]
    z = x @ w + b
    z = z - z.max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1, keepdims=True))
    logp = z - lse
    loss = -(onehot * logp).sum() / n + 0.5 * l2 * (w * w).sum()
    g = (np.exp(logp) - onehot) / n
    gw = x.T @ g + l2 * w
    return loss, np.concatenate([gw.ravel(), g.sum(0)])

  theta0 = np.zeros(d * num_classes + num_classes)
  res = minimize(fun, theta0, jac=True, method="L-BFGS-B",
                 options=dict(maxiter=max_iter, gtol=tol, ftol=1e-12, maxcor=30))
  w, b = res.x[:d * num_classes].reshape(d, num_classes), res.x[d * num_classes:]
  return w, b, bool(res.success)


def linear_probe_accuracy(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike,
                          test_y: ArrayLike, *, l2: float = 1e-3, max_iter: int = 500) -> float:
  """Test accuracy of a logistic-regression probe on standardized frozen features.

  Standardization uses the training statistics; the objective ``mean CE + l2/2 |W|^2`` is solved to
  convergence with L-BFGS (float64). Equivalent to scikit-learn's
  ``LogisticRegression(C=1/(l2 * n_train))`` on the standardized features.

  Returns:
    accuracy in ``[0, 1]``.
  """
  if not l2 > 0:
    raise ValueError(f"`l2` must be > 0 (keeps the probe well conditioned), got {l2!r}.")
  train_y = np.asarray(train_y).reshape(-1)
  test_y = np.asarray(test_y).reshape(-1)
  if len(train_x) != len(train_y) or len(test_x) != len(test_y):
    raise ValueError(f"features and labels must have the same length, got train {len(train_x)} "
                     f"vs {len(train_y)}, test {len(test_x)} vs {len(test_y)}.")
  num_classes = int(max(train_y.max(), test_y.max()) + 1)
  tr, te = standardize(train_x, test_x)
  w, b, _ = fit_logistic_regression(tr, train_y, num_classes=num_classes, l2=l2,
                                    max_iter=max_iter)
  return float(np.mean(np.argmax(te @ w + b, 1) == test_y))


def ridge_probe(train_x: ArrayLike, train_t: ArrayLike, test_x: ArrayLike, *,
                l2: float = 1e-3) -> np.ndarray:
  """Closed-form ridge regression on standardized features: predictions for ``test_x``.

  ``W = (X^T X + n l2 I)^{-1} X^T (T - mean T)``; the intercept is the training target mean.
  ``train_t`` may be ``[n]`` (returns ``[n_test]``) or ``[n, m]`` (e.g. one-hot; ``[n_test, m]``).
  """
  if not l2 > 0:
    raise ValueError(f"`l2` must be > 0, got {l2!r}.")
  tr, te = standardize(train_x, test_x)
  t = np.asarray(train_t, np.float64)
  vec = t.ndim == 1
  t = t.reshape(len(t), -1)
  mu = t.mean(0)
  a = tr.T @ tr + len(tr) * l2 * np.eye(tr.shape[1])
  w = np.linalg.solve(a, tr.T @ (t - mu))
  out = te @ w + mu
  return out[:, 0] if vec else out


# ---------------------------------------------------------------- rank correlation

def rankdata(x: ArrayLike) -> np.ndarray:
  """Ranks ``1..n`` of the flattened ``x``, ties given their average rank (``scipy.stats.rankdata``)."""
  return scipy.stats.rankdata(np.asarray(x, np.float64).reshape(-1), method="average")


def spearman(x: ArrayLike, y: ArrayLike) -> float:
  """Spearman rank correlation (``scipy.stats.spearmanr``: Pearson correlation of average ranks);
  NaN if ``x`` or ``y`` is constant."""
  x, y = np.asarray(x, np.float64).reshape(-1), np.asarray(y, np.float64).reshape(-1)
  if len(x) != len(y):
    raise ValueError(f"`x` and `y` must have the same length, got {len(x)} and {len(y)}.")
  if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
    return float("nan")
  return float(scipy.stats.spearmanr(x, y).statistic)


def within_group_spearman(x: ArrayLike, y: ArrayLike, groups: ArrayLike) -> float:
  """Mean over groups (e.g. coarse classes) of the Spearman correlation inside each group.

  Groups with fewer than 2 examples or a constant ``x`` or ``y`` are skipped (NaN if none is left).
  """
  x, y, groups = (np.asarray(a).reshape(-1) for a in (x, y, groups))
  vals = []
  for g in np.unique(groups):
    m = groups == g
    if m.sum() >= 2:
      v = spearman(x[m], y[m])
      if not math.isnan(v):
        vals.append(v)
  return float(np.mean(vals)) if vals else float("nan")


# ---------------------------------------------------------------- evaluator

PROBES = ("logistic", "ridge")


def ridge_probe_accuracy(train_x, train_y, test_x, test_y, *, l2: float = 1e-3) -> float:
  """Test accuracy of a closed-form ridge probe on one-hot labels (standardized features).

  The cheap alternative to :func:`linear_probe_accuracy` (one linear solve instead of L-BFGS), for
  studies that evaluate dozens of models: the predicted class is the argmax of
  :func:`ridge_probe` fitted to the one-hot training labels.

  Example:
    >>> ridge_probe_accuracy(np.eye(3), [0, 1, 2], np.eye(3), [0, 1, 2])
    1.0
  """
  train_y = np.asarray(train_y).astype(np.int64).reshape(-1)
  test_y = np.asarray(test_y).reshape(-1)
  num_classes = int(max(train_y.max(), test_y.max()) + 1)
  scores = ridge_probe(train_x, np.eye(num_classes)[train_y], test_x, l2=l2)
  return float(np.mean(np.argmax(scores, 1) == test_y))


def fine_grain_metrics(train_features: ArrayLike, train_fine: ArrayLike, test_features: ArrayLike,
                       test_fine: ArrayLike, *, test_coarse: Optional[ArrayLike] = None, k: int = 5,
                       l2: float = 1e-3, probe: str = "logistic") -> Dict[str, float]:
  """k-NN and probe accuracy on the fine labels; Spearman for a 1-D feature.

  ``probe``: "logistic" (:func:`linear_probe_accuracy`) or "ridge" (:func:`ridge_probe_accuracy`).
  """
  if probe not in PROBES:
    raise ValueError(f"`probe` must be one of {PROBES}, got {probe!r}.")
  probe_fn = linear_probe_accuracy if probe == "logistic" else ridge_probe_accuracy
  out = {"fine_knn_accuracy": knn_accuracy(train_features, train_fine, test_features, test_fine,
                                           k=k),
         "fine_probe_accuracy": probe_fn(train_features, train_fine, test_features, test_fine,
                                         l2=l2)}
  feats = np.asarray(test_features).reshape(len(test_features), -1)
  if feats.shape[1] == 1:
    out["fine_spearman"] = abs(spearman(feats[:, 0], test_fine))
    if test_coarse is not None:
      # The sign of a 1-D feature is arbitrary; within-class ordering uses the global sign.
      sign = np.sign(spearman(feats[:, 0], test_fine)) or 1.0
      out["fine_spearman_within_coarse"] = within_group_spearman(sign * feats[:, 0], test_fine,
                                                                 test_coarse)
  return out


def fine_grain(ctx: EvalContext) -> Dict[str, float]:
  """Frozen features of the train and eval splits; fine-label k-NN, probe (and Spearman if 1-D).

  Options (``config.fine_grain_eval``, all optional): ``k`` (5), ``l2`` (1e-3), ``max_train``
  (cap on training examples for the k-NN/probe fit, 0 = all), ``train_split`` (default: the run's
  training split, without a carved ``data.validation_fraction``), ``probe`` ("logistic", or
  "ridge": closed form, for studies). The fine label is ``fine_label`` when training on coarse
  labels, else ``label``. When the method has a FIERCE codebook (``buffers["codes"]``) the noiseless
  entropy of the eval features is reported too.
  """
  opts = dict(ctx.config.get("fine_grain_eval", None) or {})
  k, l2 = int(opts.get("k", 5)), float(opts.get("l2", 1e-3))
  probe = opts.get("probe", "logistic")
  max_train = int(opts.get("max_train", 0))
  train_split = opts.get("train_split") or ctx.dataset.train.split  # without a carved validation
  tr = ctx.predictions(train_split)
  te = ctx.predictions()
  fine_key = "fine_label" if "fine_label" in te else "label"
  tr_x, tr_y = tr["features"], tr[fine_key]
  if max_train and len(tr_y) > max_train:
    sel = np.random.RandomState(0).choice(len(tr_y), max_train, replace=False)
    tr_x, tr_y = tr_x[sel], tr_y[sel]
  coarse = te["label"] if fine_key == "fine_label" else te.get("coarse_label")
  out = fine_grain_metrics(tr_x, tr_y, te["features"], te[fine_key], test_coarse=coarse,
                           k=k, l2=l2, probe=probe)
  buffers = ctx.buffers if isinstance(ctx.buffers, dict) else {}
  if "codes" in buffers:
    from labelwise.losses import fierce_entropy
    method_opts = getattr(ctx.method, "options", {}) or {}
    out["feature_entropy_bits"] = float(fierce_entropy(
        jnp.asarray(te["features"]), jnp.asarray(buffers["codes"]),
        similarity=method_opts.get("similarity", "cosine"),
        logit_scale=float(method_opts.get("logit_scale", 1.0))))
  return out
