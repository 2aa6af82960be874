"""Attribution control with ROI masks: ``actdiff``, ``gradmask``, ``rrr``, ``classify_masked``.

Viviano et al. 2019, "Underwhelming Generalization Improvements From Controlling Feature
Attribution" (arXiv 1910.00199); RRR: Ross et al. 2017. Each method adds a mask penalty to the mean
cross-entropy (the pure pieces are in :mod:`labelwise.losses.attribution`):

- ``actdiff``: ``CE + lam * mean_masked ||h(x) - h(x~)||_2``, ``x~`` = pixels outside the mask
  shuffled per image; ``h`` = the model's ``features`` (penultimate layer). Both images go through
  the model in one concatenated batch (the model must not have batch statistics; models here have
  none in the configs). The authors' code never multiplies the ActDiff term by lambda;
  ``apply_lambda=False`` reproduces that (effective lambda 1).
- ``gradmask``: ``CE + lam * mean_masked sum |d s/dx * (1 - m)|`` with ``s = |z_0 - z_1|`` (two
  classes; ``|z_y - logsumexp_{k!=y} z_k|`` for more).
- ``rrr``: ``CE + lam * mean_masked sum (d s/dx * (1 - m))^2`` with ``s = sum_k log p_k``, plus the
  optional RRR weight decay ``weight_decay * sum theta^2`` over kernels.
- ``classify_masked``: cross-entropy on ``x * m`` (zero outside the mask) for examples with a mask.

Options shared by all: ``mask_fraction`` (the share of training examples that carry their mask,
chosen once per run from ``config.seed`` and kept in the method buffers; the others get an all-ones
mask, i.e. no penalty) and ``normalization`` (``"per_masked_example"`` default, ``"per_example"``
= the authors' ActDiff batch mean, ``"sum"`` = the authors' GradMask/RRR batch sum).

The batch needs the dataset field ``mask`` (``[B, H, W]`` or ``[B, H, W, 1]``, 1 = region of
interest), e.g. ``crosses`` or ``masked_folder``.

The study's model is ``attribution_cnn`` (``labelwise.models.cnn``): the foundation's ``small_cnn``
ends with a global average pool, which cannot tell left from right and so cannot learn the crosses
shortcut (a distractor on the left vs the right of the image); ``attribution_cnn`` flattens
instead, like the authors' small CNN.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from labelwise import losses
from labelwise.eval import metrics as metrics_lib
from labelwise.train.methods.base import LossOutput, Method, RunInfo, StepContext


def select_masked_examples(num_examples: int, fraction: float, seed: int) -> np.ndarray:
  """Host-side: a bool ``[num_examples]`` with exactly ``round(fraction * N)`` True, from ``seed``."""
  n_masked = int(round(float(fraction) * num_examples))
  order = np.random.default_rng([int(seed), 7]).permutation(num_examples)
  has = np.zeros(num_examples, bool)
  has[order[:n_masked]] = True
  return has


class _MaskMethod(Method):
  """Shared parts: options, the per-run choice of masked examples, the batch masks."""
  defaults = {"lam": 1.0, "mask_fraction": 1.0, "normalization": "per_masked_example"}
  evaluators = ("classification", "attribution")

  def validate(self) -> None:
    o = self.options
    if not 0.0 <= float(o["mask_fraction"]) <= 1.0:
      raise ValueError(f"`{self.name}.mask_fraction` must be in [0, 1], got {o['mask_fraction']}.")
    if "lam" in o and float(o["lam"]) < 0:
      raise ValueError(f"`{self.name}.lam` must be >= 0, got {o['lam']}.")
    if "normalization" in o and o["normalization"] not in losses.attribution.NORMALIZATIONS:
      raise ValueError(f"`{self.name}.normalization` must be one of "
                       f"{losses.attribution.NORMALIZATIONS}, got {o['normalization']!r}.")

  def init_buffers(self, key, *, info: RunInfo):
    del key
    seed = int(self.config.get("seed", 0))
    has = select_masked_examples(info.num_train_examples, self.options["mask_fraction"], seed)
    return {"has_mask": jnp.asarray(has, jnp.float32)}

  def batch_masks(self, ctx: StepContext):
    """Returns float32 masks ``[B, H, W]`` (all ones for examples without a mask) and weights [B]."""
    if "mask" not in ctx.batch:
      raise ValueError(f"method {self.name!r} needs a `mask` field in the batch; the dataset "
                       f"{self.config.get('dataset')!r} has none (use e.g. 'crosses').")
    m = jnp.asarray(ctx.batch["mask"]).astype(jnp.float32)
    if m.ndim == 4:
      m = m[..., 0]
    has = ctx.buffers["has_mask"][ctx.batch["index"]] > 0
    m = jnp.where(has[:, None, None], m, 1.0)
    return m, losses.mask_weights(m)

  def _finish(self, logits, labels, penalty_share, lam, weights, model_state, extra=None):
    ce = jnp.mean(losses.softmax_cross_entropy(logits, labels))
    loss = ce + lam * penalty_share
    metrics = {"ce": ce, "penalty": penalty_share, "masked_share": jnp.mean(weights),
               "accuracy": jnp.mean(metrics_lib.accuracy(logits, labels))}
    metrics.update(extra or {})
    return LossOutput(loss, metrics, model_state)


class ActDiff(_MaskMethod):
  """``CE + lam * ||h(x) - h(shuffle_outside_mask(x))||_2`` (Viviano et al. 2019)."""
  name = "actdiff"
  defaults = {**_MaskMethod.defaults, "apply_lambda": True}

  def loss(self, ctx: StepContext) -> LossOutput:
    x, y = ctx.batch["input"], ctx.batch["label"]
    m, w = self.batch_masks(ctx)
    x_shuffled = losses.shuffle_outside_mask(ctx.key, x, m)
    b = x.shape[0]
    both, model_state = ctx.apply(ctx.params, jnp.concatenate([x, x_shuffled.astype(x.dtype)]))
    feats = both["features"].reshape(2 * b, -1)
    pen = losses.actdiff_penalty(feats[:b], feats[b:])
    share = losses.reduce_masked_penalty(pen, w, normalization=self.options["normalization"],
                                         axis_name=ctx.axis_name)
    lam = self.hp(ctx)["lam"] if self.options["apply_lambda"] else 1.0
    return self._finish(both["logits"][:b], y, share, lam, w, model_state)


class _GradientMethod(_MaskMethod):
  """GradMask / RRR: penalize the input gradient of a score outside the mask (double backprop)."""

  def score(self, logits, labels):
    raise NotImplementedError

  def penalty(self, grads, masks):
    raise NotImplementedError

  def loss(self, ctx: StepContext) -> LossOutput:
    x, y = ctx.batch["input"], ctx.batch["label"]
    m, w = self.batch_masks(ctx)

    def score_fn(v):
      out, state = ctx.apply(ctx.params, v)
      return self.score(out["logits"], y), (out["logits"], state)

    g, (logits, model_state) = losses.input_gradients(score_fn, x, has_aux=True)
    pen = self.penalty(g, m)
    share = losses.reduce_masked_penalty(pen, w, normalization=self.options["normalization"],
                                         axis_name=ctx.axis_name)
    out = self._finish(logits, y, share, self.hp(ctx)["lam"], w, model_state)
    if "weight_decay" in self.hp(ctx):  # RRR's own weight decay (0 adds exactly 0)
      wd = self.hp(ctx)["weight_decay"]
      l2 = sum(jnp.sum(jnp.square(p)) for p in jax.tree_util.tree_leaves(ctx.params)
               if p.ndim > 1)
      out = out._replace(loss=out.loss + wd * l2, metrics={**out.metrics, "weight_l2": l2})
    return out


class GradMask(_GradientMethod):
  """``CE + lam * sum |d|z_0 - z_1|/dx * (1 - m)|`` (Viviano et al. 2019)."""
  name = "gradmask"

  def score(self, logits, labels):
    return losses.gradmask_score(logits, labels)

  def penalty(self, grads, masks):
    return losses.gradmask_penalty(grads, masks)


class RightForTheRightReasons(_GradientMethod):
  """``CE + lam * sum (d sum_k log p_k / dx * (1 - m))^2 + weight_decay * sum theta^2`` (Ross 2017)."""
  name = "rrr"
  defaults = {**_MaskMethod.defaults, "weight_decay": 0.0}

  def validate(self) -> None:
    super().validate()
    if float(self.options["weight_decay"]) < 0:
      raise ValueError(f"`rrr.weight_decay` must be >= 0, got {self.options['weight_decay']}.")

  def score(self, logits, labels):
    del labels
    return losses.rrr_score(logits)

  def penalty(self, grads, masks):
    return losses.rrr_penalty(grads, masks)


class ClassifyMasked(_MaskMethod):
  """Cross-entropy on ``x * m`` (zero outside the mask) for examples with a mask; raw x at test."""
  name = "classify_masked"
  defaults = {"mask_fraction": 1.0}

  def loss(self, ctx: StepContext) -> LossOutput:
    x, y = ctx.batch["input"], ctx.batch["label"]
    m, w = self.batch_masks(ctx)
    mm = m[..., None] if x.ndim == 4 else m
    out, model_state = ctx.apply(ctx.params, x * mm.astype(x.dtype))
    return self._finish(out["logits"], y, jnp.zeros((), jnp.float32), 0.0, w, model_state)


def _find_head(params, name: str):
  """The ``{kernel, bias}`` dict of the extra head ``name`` anywhere in the params tree."""
  if isinstance(params, Mapping):
    if f"head_{name}" in params:
      return params[f"head_{name}"]
    for v in params.values():
      found = _find_head(v, name)
      if found is not None:
        return found
  return None


class Adversarial(_MaskMethod):
  """CE + a discriminator on the features telling ``x`` from ``x~``, which the encoder must fool.

  The discriminator is a linear extra head ``discriminator`` (1 logit) on the penultimate features.
  One optimizer trains everything through a gradient-reversal layer: the head minimizes the
  discriminator's logistic loss, the encoder receives ``-lam`` times its gradient (Ganin &
  Lempitsky 2015), i.e. it maximizes the discriminator's loss on masked examples. Our reading of the
  authors' optional "adversarial" arm; not part of the committed study.
  """
  name = "adversarial"
  defaults = {**_MaskMethod.defaults, "lam": 0.1}

  def extra_heads(self, info: RunInfo):
    return {"discriminator": 1}

  def loss(self, ctx: StepContext) -> LossOutput:
    x, y = ctx.batch["input"], ctx.batch["label"]
    m, w = self.batch_masks(ctx)
    x_shuffled = losses.shuffle_outside_mask(ctx.key, x, m)
    b = x.shape[0]
    both, model_state = ctx.apply(ctx.params, jnp.concatenate([x, x_shuffled.astype(x.dtype)]))
    head = _find_head(ctx.params, "discriminator")
    if head is None:
      raise ValueError("method 'adversarial' needs the model's extra head 'discriminator'; the "
                       "trainer adds it from `extra_heads` (use a model built on models.heads).")
    lam = self.hp(ctx)["lam"]
    f = both["features"].reshape(2 * b, -1)
    f_rev = jax.lax.stop_gradient((1.0 + lam) * f) - lam * f  # forward f, backward -lam
    d_logit = (f_rev @ head["kernel"] + head["bias"])[:, 0]
    target = jnp.concatenate([jnp.ones(b), jnp.zeros(b)])      # 1 = raw image, 0 = shuffled
    bce = jnp.maximum(d_logit, 0) - d_logit * target + jnp.log1p(jnp.exp(-jnp.abs(d_logit)))
    per_example = bce[:b] + bce[b:]
    share = losses.reduce_masked_penalty(per_example, w,
                                         normalization=self.options["normalization"],
                                         axis_name=ctx.axis_name)
    d_acc = jnp.mean(((d_logit > 0) == (target > 0)).astype(jnp.float32))
    return self._finish(both["logits"][:b], y, share, 1.0, w, model_state,
                        extra={"discriminator_accuracy": d_acc})
