"""Average-K methods: the two-head loss (Garcin et al. 2023) and two multi-label baselines.

* ``two_head``: shared backbone, softmax head (``logits``) with CE on the observed label, and a
  multi-label head (``multilabel``, added to the model) with BCE on the batch's average-K
  pseudo-labels (:func:`labelwise.losses.two_head_loss`). The pseudo-label threshold is over the
  global batch (``ctx.axis_name``). ``pseudo_labels="posterior"`` is the oracle control: the
  pseudo-labels rank the dataset's true ``posterior`` field instead of the softmax head.
* ``assume_negative``: one sigmoid head (the model's ``logits``) with BCE, observed label positive
  and every other class negative (AN).
* ``epr``: one sigmoid head with ``-log sigmoid(z_iy)`` on the observed label plus ``weight`` times
  the expected positive regularizer ``((1/B) sum_ij sigmoid(z_ij) - K)^2 / L^2`` (Cole et al. 2021).
* Softmax thresholding is the ``ce`` method with the ``average_k`` evaluator (or ``two_head`` with
  ``weight=0``, which is exactly CE, when labels are sampled with ``sampled_labels_from``).

Every method here evaluates with ``("classification", "average_k")``; ``average_k_heads`` tells the
evaluator which outputs to threshold (head name -> (output key, link)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labelwise import losses
from labelwise.eval import metrics as metrics_lib
from labelwise.train.methods.base import LossOutput, Method, RunInfo, StepContext

_EVALUATORS = ("classification", "average_k")
# Shared options: train on one label per example drawn once from a distribution field
# (e.g. CIFAR-10H's human ``soft_label``), deterministic in (label_seed, example index).
_LABEL_OPTIONS = {"sampled_labels_from": "", "label_seed": 0}
_STATIC_K = {"k": "fixes the number of pseudo-positives round(k B), a static count"}


def sample_labels(index, probs, seed: int):
  """One label per example drawn from ``probs [B, C]``, a pure function of ``(seed, index)``.

  The same example gets the same label at every step and epoch (a fixed single-annotator
  draw), whatever the batch composition or the number of devices.
  """
  root = jax.random.PRNGKey(seed if isinstance(seed, jax.Array) else int(seed))
  keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(index, jnp.int32))
  logp = jnp.log(jnp.clip(jnp.asarray(probs, jnp.float32), 0.0, None))
  return jax.vmap(jax.random.categorical)(keys, logp).astype(jnp.int32)


def _train_labels(ctx: StepContext, options, hparams):
  """The observed label, or one drawn from ``options["sampled_labels_from"]`` per example."""
  field = options["sampled_labels_from"]
  if not field:
    return ctx.batch["label"]
  if field not in ctx.batch:
    raise ValueError(f"`sampled_labels_from`={field!r} is not a field of the batch "
                     f"({sorted(ctx.batch)}).")
  return sample_labels(ctx.batch["index"], ctx.batch[field], hparams["label_seed"])


def _check_k(k, num_classes=None):
  k = float(k)
  if not k > 0 or (num_classes is not None and k > num_classes):
    raise ValueError(f"`k` must be in (0, num_classes], got {k}.")
  return k


class TwoHead(Method):
  """``mean_i CE(z^s_i, y_i) + weight * mean_ij BCE(z^m_ij, P_ij)`` with batch pseudo-labels P."""
  name = "two_head"
  defaults = {"k": 2.0, "weight": 1.0, "include_true": True, "pseudo_labels": "softmax",
              **_LABEL_OPTIONS}
  static_options = _STATIC_K
  evaluators = _EVALUATORS
  average_k_heads = {"softmax": ("logits", "softmax"), "multilabel": ("multilabel", "sigmoid")}

  def validate(self):
    _check_k(self.options["k"])
    if float(self.options["weight"]) < 0:
      raise ValueError(f"`two_head.weight` must be >= 0, got {self.options['weight']}.")
    if self.options["pseudo_labels"] not in ("softmax", "posterior"):
      raise ValueError("`two_head.pseudo_labels` must be 'softmax' or 'posterior' (the oracle "
                       f"control), got {self.options['pseudo_labels']!r}.")
    if self.options["include_true"] not in (True, False):
      raise ValueError(f"`two_head.include_true` must be a bool, got "
                       f"{self.options['include_true']!r}.")

  def extra_heads(self, info: RunInfo):
    _check_k(self.options["k"], info.num_classes)
    return {"multilabel": info.num_classes}

  def loss(self, ctx: StepContext) -> LossOutput:
    o = self.options
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    zs, zm, y = outputs["logits"], outputs["multilabel"], _train_labels(ctx, o, self.hp(ctx))
    k, weight = float(o["k"]), self.hp(ctx)["weight"]
    if o["pseudo_labels"] == "softmax":
      per_example = losses.two_head_loss(zs, zm, y, k=k, weight=weight,
                                         include_true=bool(o["include_true"]),
                                         axis_name=ctx.axis_name)
      ce = losses.softmax_cross_entropy(zs, y)
      bce = jnp.where(weight > 0, (per_example - ce) / jnp.maximum(weight, 1e-12), 0.0)
    else:
      if "posterior" not in ctx.batch:
        raise ValueError("`two_head.pseudo_labels='posterior'` needs a dataset with a `posterior` "
                         "field (e.g. ambiguous_gaussians).")
      pseudo = losses.average_k_pseudo_labels(ctx.batch["posterior"], y, k=k,
                                              include_true=bool(o["include_true"]),
                                              axis_name=ctx.axis_name)
      ce = losses.softmax_cross_entropy(zs, y)
      bce = losses.mean_binary_cross_entropy(zm, pseudo)
      per_example = ce + weight * bce
    metrics = {"accuracy": jnp.mean(metrics_lib.accuracy(zs, y)), "ce": jnp.mean(ce),
               "bce": jnp.mean(bce),
               "multilabel_mean_positives": jnp.mean(jnp.sum(jax.nn.sigmoid(zm), -1))}
    return LossOutput(jnp.mean(per_example), metrics, model_state)


class AssumeNegative(Method):
  """One sigmoid head (``logits``), BCE against the one-hot observed label."""
  name = "assume_negative"
  defaults = dict(_LABEL_OPTIONS)
  evaluators = _EVALUATORS
  average_k_heads = {"multilabel": ("logits", "sigmoid")}

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    z, y = outputs["logits"], _train_labels(ctx, self.options, self.hp(ctx))
    per_example = losses.assume_negative_loss(z, y)
    metrics = {"accuracy": jnp.mean(metrics_lib.accuracy(z, y)),
               "mean_positives": jnp.mean(jnp.sum(jax.nn.sigmoid(z), -1))}
    return LossOutput(jnp.mean(per_example), metrics, model_state)


class ExpectedPositive(Method):
  """One sigmoid head: ``mean_i -log sigmoid(z_iy) + weight * EPR(z; K)`` (global batch mean)."""
  name = "epr"
  defaults = {"k": 2.0, "weight": 1.0, **_LABEL_OPTIONS}
  static_options = _STATIC_K
  evaluators = _EVALUATORS
  average_k_heads = {"multilabel": ("logits", "sigmoid")}

  def validate(self):
    _check_k(self.options["k"])
    if float(self.options["weight"]) < 0:
      raise ValueError(f"`epr.weight` must be >= 0, got {self.options['weight']}.")

  def extra_heads(self, info: RunInfo):
    _check_k(self.options["k"], info.num_classes)
    return {}

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    z, y = outputs["logits"], _train_labels(ctx, self.options, self.hp(ctx))
    zy = jnp.take_along_axis(z.astype(jnp.float32), y[:, None].astype(jnp.int32), axis=-1)[:, 0]
    positive = -jax.nn.log_sigmoid(zy)
    reg = losses.expected_positive_regularizer(z, k=float(self.options["k"]),
                                               axis_name=ctx.axis_name)
    loss = jnp.mean(positive) + self.hp(ctx)["weight"] * reg
    metrics = {"accuracy": jnp.mean(metrics_lib.accuracy(z, y)), "epr": reg,
               "mean_positives": jnp.mean(jnp.sum(jax.nn.sigmoid(z), -1))}
    return LossOutput(loss, metrics, model_state)
