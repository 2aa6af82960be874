"""Saliency maps and how much of them falls inside a region-of-interest mask.

Used to diagnose attribution-controlled training (ActDiff, GradMask, RRR; Viviano et al. 2019,
"Underwhelming Generalization Improvements From Controlling Feature Attribution").

- :func:`input_gradient_saliency`: ``s = |d z_y / d x|`` (summed over channels), optionally blurred.
- :func:`integrated_gradients`: Sundararajan et al. 2017, zero baseline, midpoint Riemann sum.
- :func:`saliency_overlap`: keep the top-k pixels (k = mask area by default) and compare with the
  mask: IoU ``|S n M| / |S u M|``, IoP ``|S n M| / |S|``, IoT ``|S n M| / |M|``, plus the
  continuous mass fraction ``sum_M |s| / sum |s|``. With k = mask area, ``|S| = |M|`` so IoP = IoT.
- :func:`roc_auc`: binary ROC AUC (Mann-Whitney statistic, ties counted 1/2).
- :func:`save_saliency_grid`: a PNG grid (image, mask, one saliency map per method) per example.
- evaluator ``"attribution"``: accuracy and AUC on every test split of the dataset, saliency metrics
  on the shifted split, and the PNG grid in the workdir.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
import sklearn.metrics

# --------------------------------------------------------------------------------------------------
# Saliency maps
# --------------------------------------------------------------------------------------------------


def _class_logit_fn(apply_fn: Callable, labels):
  labels = jnp.asarray(labels, jnp.int32)

  def total(x):
    z = apply_fn(x)
    return jnp.sum(jnp.take_along_axis(z, labels[:, None], axis=-1))
  return total


def _to_map(attr):
  """``[B, H, W, C]`` or ``[B, H, W]`` attribution -> ``[B, H, W]`` |.| summed over channels."""
  a = jnp.abs(attr)
  return jnp.sum(a, axis=-1) if a.ndim == 4 else a


def gaussian_blur(maps: ArrayLike, sigma: float) -> jax.Array:
  """Separable Gaussian blur of ``[B, H, W]`` maps (zero padding, radius ``ceil(3 sigma)``)."""
  maps = jnp.asarray(maps, jnp.float32)
  if sigma <= 0:
    return maps
  r = int(np.ceil(3 * sigma))
  t = np.arange(-r, r + 1, dtype=np.float64)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  k = jnp.asarray(k / k.sum(), jnp.float32)
  conv = lambda v: jnp.convolve(v, k, mode="same")
  rows = jax.vmap(jax.vmap(conv))(maps)                       # along W
  cols = jax.vmap(jax.vmap(conv))(jnp.swapaxes(rows, 1, 2))   # along H
  return jnp.swapaxes(cols, 1, 2)


def input_gradient_saliency(apply_fn: Callable, inputs: ArrayLike, labels: ArrayLike, *,
                            blur_sigma: float = 0.0) -> jax.Array:
  """``s_i = sum_c |d z_{i, y_i} / d x_i[., ., c]|`` as ``[B, H, W]`` maps.

  Args:
    apply_fn: ``inputs -> logits [B, C]`` (parameters closed over; no cross-example statistics).
    inputs: ``[B, H, W, C]`` or ``[B, H, W]`` images.
    labels: ``[B]`` the class whose logit is explained (the true label).
    blur_sigma: Gaussian blur in pixels (0: none).

  Returns:
    ``[B, H, W]`` float32 non-negative maps.
  """
  x = jnp.asarray(inputs, jnp.float32)
  g = jax.grad(_class_logit_fn(apply_fn, labels))(x)
  return gaussian_blur(_to_map(g), blur_sigma)


def integrated_gradients(apply_fn: Callable, inputs: ArrayLike, labels: ArrayLike, *,
                         steps: int = 32, baseline: Optional[ArrayLike] = None) -> jax.Array:
  """Integrated gradients (Sundararajan et al. 2017) of the label logit.

  ``IG(x) = (x - x0) * mean_{j} grad z_y(x0 + (j + 1/2)/steps (x - x0))`` (midpoint rule), with the
  zero baseline ``x0 = 0`` by default. Completeness: ``sum IG ~= z_y(x) - z_y(x0)``.

  Args:
    apply_fn: ``inputs -> logits [B, C]``.
    inputs: ``[B, ...]``.
    labels: ``[B]``.
    steps: number of points on the path (>= 1).
    baseline: ``inputs``-shaped baseline or None (zeros).

  Returns:
    attributions with the shape of ``inputs`` (signed; use ``abs``/sum over channels for a map).
  """
  if steps < 1:
    raise ValueError(f"`steps` must be >= 1, got {steps}.")
  x = jnp.asarray(inputs, jnp.float32)
  x0 = jnp.zeros_like(x) if baseline is None else jnp.asarray(baseline, jnp.float32)
  if x0.shape != x.shape:
    raise ValueError(f"`baseline` must have the shape of `inputs` {x.shape}, got {x0.shape}.")
  grad_fn = jax.grad(_class_logit_fn(apply_fn, labels))
  alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps

  def body(acc, a):
    return acc + grad_fn(x0 + a * (x - x0)), None

  total, _ = jax.lax.scan(body, jnp.zeros_like(x), alphas)
  return (x - x0) * total / steps


def integrated_gradients_saliency(apply_fn: Callable, inputs: ArrayLike, labels: ArrayLike, *,
                                  steps: int = 32, blur_sigma: float = 0.0) -> jax.Array:
  """``[B, H, W]`` map of |integrated gradients| summed over channels."""
  return gaussian_blur(_to_map(integrated_gradients(apply_fn, inputs, labels, steps=steps)),
                       blur_sigma)


# --------------------------------------------------------------------------------------------------
# Overlap with the mask
# --------------------------------------------------------------------------------------------------


def topk_mask(saliency: ArrayLike, k: ArrayLike) -> np.ndarray:
  """Boolean ``[B, H, W]``: the ``k[i]`` most salient pixels of map ``i`` (ties by pixel order)."""
  s = np.asarray(saliency, np.float64)
  b = s.shape[0]
  flat = s.reshape(b, -1)
  k_in = np.asarray(k, np.float64)
  if np.any(k_in < 0) or np.any(k_in > flat.shape[1]) or np.any(k_in != np.round(k_in)):
    raise ValueError(f"`k` must hold whole pixel counts in [0, {flat.shape[1]}] (H * W), got "
                     f"{np.ravel(k_in)[:5].tolist()}.")
  k = np.broadcast_to(np.asarray(k, np.int64), (b,))
  order = np.argsort(-flat, axis=1, kind="stable")
  ranks = np.empty_like(order)
  np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None, :].repeat(b, 0), axis=1)
  return (ranks < k[:, None]).reshape(s.shape)


def saliency_overlap(saliency: ArrayLike, masks: ArrayLike, *,
                     top_k: Optional[int] = None) -> Dict[str, np.ndarray]:
  """Per-example agreement between saliency maps and ROI masks.

  Args:
    saliency: ``[B, H, W]`` non-negative maps.
    masks: ``[B, H, W]`` (or ``[B, H, W, 1]``) binary masks, 1 = region of interest.
    top_k: pixels kept per map; None keeps ``k_i = |M_i|`` (the mask area), as in the paper.

  Returns:
    dict of ``[B]`` float arrays: ``iou``, ``iop`` (share of salient pixels inside the mask),
    ``iot`` (share of the mask covered), ``mass_fraction`` (``sum_M s / sum s``; 0 for an all-zero
    map). Examples with an empty mask give ``nan`` for iot/iou.
  """
  s = np.asarray(saliency, np.float64)
  m = np.asarray(masks)
  if m.ndim == 4 and m.shape[-1] == 1:
    m = m[..., 0]
  if s.ndim != 3 or m.shape != s.shape:
    raise ValueError(f"`masks` must have the shape of `saliency` [B, H, W] {s.shape}, got "
                     f"{np.shape(masks)}.")
  m = m.astype(bool)
  b = s.shape[0]
  area = m.reshape(b, -1).sum(1)
  k = area if top_k is None else np.full(b, int(top_k))
  sel = topk_mask(s, k)
  inter = (sel & m).reshape(b, -1).sum(1).astype(np.float64)
  union = (sel | m).reshape(b, -1).sum(1).astype(np.float64)
  nsel = sel.reshape(b, -1).sum(1).astype(np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    iop = np.where(nsel > 0, inter / np.maximum(nsel, 1), np.nan)
    iot = np.where(area > 0, inter / np.maximum(area, 1), np.nan)
  tot = s.reshape(b, -1).sum(1)
  inside = (s * m).reshape(b, -1).sum(1)
  mass = np.where(tot > 0, inside / np.where(tot > 0, tot, 1.0), 0.0)
  return {"iou": iou, "iop": iop, "iot": iot, "mass_fraction": mass}


# --------------------------------------------------------------------------------------------------
# ROC AUC
# --------------------------------------------------------------------------------------------------


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
  """Binary ROC AUC (``sklearn.metrics.roc_auc_score``): ``P(score_pos > score_neg) + 0.5 P(equal)``;
  nan if a class is missing.

  Args:
    scores: ``[N]`` real scores (higher = more positive).
    labels: ``[N]`` 0/1 (or bool).

  Example:
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
  """
  s = np.asarray(scores, np.float64).reshape(-1)
  y = np.asarray(labels).reshape(-1).astype(bool)
  if s.shape != y.shape:
    raise ValueError(f"`labels` must have the shape of `scores` {s.shape}, got {y.shape}.")
  if y.all() or not y.any():
    return float("nan")
  return float(sklearn.metrics.roc_auc_score(y, s))


def multiclass_auc(logits: ArrayLike, labels: ArrayLike) -> float:
  """ROC AUC of ``p(class 1)`` for two classes; macro one-vs-rest AUC over classes for more."""
  z = np.asarray(logits, np.float64)
  if z.ndim != 2:
    raise ValueError(f"`logits` must be [N, classes], got shape {z.shape}.")
  y = np.asarray(labels).astype(np.int64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  if z.shape[-1] == 2:
    return roc_auc(p[:, 1], y == 1)
  aucs = [roc_auc(p[:, c], y == c) for c in range(z.shape[-1])]
  aucs = [a for a in aucs if np.isfinite(a)]
  return float(np.mean(aucs)) if aucs else float("nan")


# --------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------


def save_saliency_grid(path: str, images: ArrayLike, masks: ArrayLike,
                       saliencies: Mapping[str, np.ndarray], *,
                       labels: Optional[Sequence[int]] = None, max_examples: int = 8) -> str:
  """Writes a PNG: one row per example, columns image | mask | one saliency map per entry.

  Args:
    path: the PNG file to write (folders are created).
    images: ``[B, H, W, C]`` or ``[B, H, W]``.
    masks: ``[B, H, W]`` (or ``[B, H, W, 1]``).
    saliencies: ``{column title: [B, H, W] map}``.
    labels: optional ``[B]`` labels shown in the row titles.
    max_examples: rows drawn.

  Returns:
    ``path``.
  """
  import matplotlib
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt

  images = np.asarray(images, np.float32)
  masks = np.asarray(masks)
  if masks.ndim == 4:
    masks = masks[..., 0]
  n = min(max_examples, images.shape[0])
  cols = 2 + len(saliencies)
  fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
  for i in range(n):
    img = images[i]
    if img.ndim == 3 and img.shape[-1] == 1:
      img = img[..., 0]
    if img.ndim == 3:
      lo, hi = img.min(), img.max()
      img = (img - lo) / max(hi - lo, 1e-8)
    panels = [("image", img, "gray"), ("mask", masks[i], "gray")]
    panels += [(name, np.asarray(v)[i], "inferno") for name, v in saliencies.items()]
    for j, (title, arr, cmap) in enumerate(panels):
      ax = axes[i, j]
      ax.imshow(arr, cmap=cmap, interpolation="nearest")
      if title not in ("image", "mask"):
        ax.contour(masks[i], levels=[0.5], colors="cyan", linewidths=0.5)
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(title, fontsize=7)
    if labels is not None:
      axes[i, 0].set_ylabel(f"y={int(labels[i])}", fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


# --------------------------------------------------------------------------------------------------
# Evaluator (``labelwise.eval.evaluators.BUILTIN_EVALUATORS["attribution"]``)
# --------------------------------------------------------------------------------------------------

from labelwise.eval.context import EvalContext  # noqa: E402


def _chunked(fn, arrays, size=128):
  outs = []
  n = len(arrays[0])
  for lo in range(0, n, size):
    outs.append(np.asarray(fn(*[a[lo:lo + size] for a in arrays])))
  return np.concatenate(outs) if outs else np.zeros((0,))


@functools.lru_cache(maxsize=32)
def _saliency_fns(model, blur_sigma: float, ig_steps: int):
  """Jitted ``(variables, x, y) -> [B, H, W]`` maps (input gradient, integrated gradients) of
  ``model``'s logits; cached per (model, options), so every model of that definition (the replicas
  of a sweep, the runs of a study) reuses one compilation per input shape."""
  def logits(variables):
    return lambda v: model.apply(variables, v, train=False)["logits"]

  grad = jax.jit(lambda variables, x, y: input_gradient_saliency(
      logits(variables), x, y, blur_sigma=blur_sigma))
  ig = jax.jit(lambda variables, x, y: integrated_gradients_saliency(
      logits(variables), x, y, steps=ig_steps, blur_sigma=blur_sigma))
  return grad, ig


def attribution_evaluator(ctx: EvalContext) -> Dict[str, float]:
  """Accuracy and ROC AUC on every non-train split; saliency-vs-mask metrics on the shifted split.

  Keys: ``<split>/accuracy``, ``<split>/auc`` for each split of the dataset except ``train``;
  ``saliency/<kind>_<metric>`` (kind ``grad`` = |d z_y / dx|, ``ig`` = integrated gradients;
  metric ``iou``, ``iop``, ``iot``, ``mass`` = mass fraction inside the mask) on
  ``config.attribution_eval.split`` (default: the first split whose name contains ``shift``, else the
  eval split). Writes ``saliency_<split>.png`` to the workdir, and ``saliency_<split>.npz`` (the
  pictured examples: ``input``, ``mask``, ``label``, ``grad`` and ``ig`` maps) so that a study can
  draw its own grid without computing the maps again. Options under ``config.attribution_eval``:
  ``split``, ``ig_steps`` (32), ``blur_sigma`` (0), ``max_examples`` for the saliency metrics (256;
  a positive integer),
  ``picture_examples`` (8), ``save_png`` (True; False writes only the npz, e.g. for the many
  replicas of a study, which draws its own grid).

  The saliency metrics are computed once per model: only in the evaluation on the run's eval split
  (``config.data.eval_split``). A second pass over the same model with another eval split (the
  validation pass of a sweep choice, ``val/...``) reports the per-split accuracies and AUCs but not
  the saliency keys, which do not depend on the eval split. The saliency maps are jitted once per
  (model, options, shapes) with the variables as an argument, so the replicas of a sweep share one
  compilation.
  """
  opts = dict(ctx.config.get("attribution_eval", None) or {})
  max_examples = opts.get("max_examples", 256)
  if (isinstance(max_examples, bool) or not isinstance(max_examples, (int, np.integer))
      or max_examples < 1):
    raise ValueError("`config.attribution_eval.max_examples` must be a positive integer (how many "
                     f"examples of the saliency split to score), got {max_examples!r}.")
  spec = ctx.dataset.spec
  splits = [s for s in spec.splits if s != "train"] or [ctx.eval_split]
  out: Dict[str, float] = {}
  for split in splits:
    p = ctx.predictions(split)
    out[f"{split}/accuracy"] = float(np.mean(p["logits"].argmax(-1) == p["label"]))
    out[f"{split}/auc"] = multiclass_auc(p["logits"], p["label"])
  data_cfg = ctx.config.get("data", None)
  main_split = data_cfg.get("eval_split", "test") if data_cfg is not None else ctx.eval_split
  if ctx.eval_split != main_split:
    return out   # a second pass over the same model (validation): saliency only in the main one
  sal_split = opts.get("split") or next((s for s in splits if "shift" in s), ctx.eval_split)
  data = ctx.dataset.split(sal_split).all()
  if "mask" not in data:
    return out
  if len(data["label"]) == 0:
    raise ValueError(f"The saliency split {sal_split!r} (`config.attribution_eval.split`, default: "
                     "the first split named *shift*, else the eval split) has no examples; "
                     "expected at least one masked example to score the saliency maps against.")
  n = min(int(max_examples), len(data["label"]))
  x, m, y = data["input"][:n], np.asarray(data["mask"])[:n], data["label"][:n]
  variables = {"params": ctx.params, **(ctx.model_state or {})}
  fns_args = (ctx.model, float(opts.get("blur_sigma", 0.0)), int(opts.get("ig_steps", 32)))
  try:
    grad_fn, ig_fn = _saliency_fns(*fns_args)
  except TypeError:   # a model object that cannot be hashed: compiled for this call only
    grad_fn, ig_fn = _saliency_fns.__wrapped__(*fns_args)
  maps = {"grad": _chunked(functools.partial(grad_fn, variables), (x, y)),
          "ig": _chunked(functools.partial(ig_fn, variables), (x, y))}
  for kind, smap in maps.items():
    ov = saliency_overlap(smap, m)
    out[f"saliency/{kind}_iou"] = float(np.nanmean(ov["iou"]))
    out[f"saliency/{kind}_iop"] = float(np.nanmean(ov["iop"]))
    out[f"saliency/{kind}_iot"] = float(np.nanmean(ov["iot"]))
    out[f"saliency/{kind}_mass"] = float(np.nanmean(ov["mass_fraction"]))
  if ctx.workdir:
    k = int(opts.get("picture_examples", 8))
    if opts.get("save_png", True):
      save_saliency_grid(os.path.join(ctx.workdir, f"saliency_{sal_split}.png"), x[:k], m[:k],
                         {"|dz_y/dx|": maps["grad"][:k], "IG": maps["ig"][:k]}, labels=y[:k])
    np.savez_compressed(os.path.join(ctx.workdir, f"saliency_{sal_split}.npz"), input=x[:k],
                        mask=m[:k], label=y[:k], grad=maps["grad"][:k], ig=maps["ig"][:k])
  return out
