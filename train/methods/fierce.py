"""FIERCE: cross-entropy on (coarse) labels minus lambda times an entropy estimate of the features.

Baena, Drumetz, Gripon, arXiv 2208.03684 (ICASSP 2023). Options (``config.fierce``):

* ``lambda`` (1.0): weight of the entropy (``a`` of the convex form).
* ``form`` ("difference"): ``CE - lambda H`` or "convex" ``CE/(1+a) + a/(1+a) (log2 K - H)``.
* ``temperature`` (1.0), ``similarity`` ("cosine" | "dot" | "bins"), ``logit_scale`` (1.0),
  ``eps`` (1e-21, the authors'): see ``labelwise.losses.fierce_entropy``.
* ``num_codes`` (100), ``code_init`` ("uniform"), ``code_scale`` (0.01): the fixed codebook.
* ``estimator`` ("codes" = the paper's Gumbel-argmax histogram, or "koleo" = the
  Kozachenko-Leonenko nearest-neighbour alternative, not the paper's; koleo needs form "difference").
* ``label_smoothing`` (0.0): smoothing of the CE term (0 = the paper).
* ``feature_dim`` (0 = infer from the model).

The codebook is NOT a trained parameter: ``init_buffers`` draws it once from the buffer key that
the trainer derives from ``config.seed``; it lives in ``state.buffers["codes"]`` and is saved and
restored with every checkpoint (the authors' code forgets to save it). Under ``pmap``/``shard_map``
the histogram is global (psum over the data axis) and every device draws its own Gumbel noise.

Logged: ``ce``, ``accuracy``, ``entropy_bits`` (with the Gumbel noise, the trained quantity) and
``entropy_bits_noiseless`` (plain argmax histogram), plus ``koleo`` for that estimator.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from labelwise import losses
from labelwise.eval import metrics as metrics_lib
from labelwise.train.methods.base import LossOutput, Method, RunInfo, StepContext


def feature_dim_of(config, info: RunInfo) -> int:
  """The penultimate feature dimension of ``config.model`` (abstract evaluation, no compute)."""
  from labelwise.models import get_model
  kwargs = dict(config.get("model_kwargs", {}) or {})
  kwargs.pop("bn_axis_name", None)
  model = get_model(config.model, num_classes=info.num_classes, **kwargs)
  x = jax.ShapeDtypeStruct((1,) + tuple(info.input_shape), jnp.float32)
  out = jax.eval_shape(
      lambda v: model.init_with_output(jax.random.PRNGKey(0), v, train=False)[0], x)
  return int(out["features"].shape[-1])


class Fierce(Method):
  """``CE(coarse) - lambda * H(features)`` with the paper's Gumbel-argmax codebook entropy."""
  name = "fierce"
  defaults = {"lambda": 1.0, "form": "difference", "temperature": 1.0, "similarity": "cosine",
              "logit_scale": 1.0, "eps": losses.fierce.REFERENCE_EPS, "num_codes": 100,
              "code_init": "uniform", "code_scale": 0.01, "estimator": "codes",
              "label_smoothing": 0.0, "feature_dim": 0}
  evaluators = ("classification", "fine_grain")
  static_options = {"num_codes": "the codebook size is an array shape",
                    "feature_dim": "the codebook dimension is an array shape",
                    "eps": "0 selects the exact entropy form and > 0 log2(p + eps): a Python "
                           "float of the estimator"}

  def validate(self) -> None:
    o = self.options
    if o["form"] not in losses.fierce.FORMS:
      raise ValueError(f"fierce.form must be one of {losses.fierce.FORMS}, got {o['form']!r}.")
    if o["estimator"] not in ("codes", "koleo"):
      raise ValueError(f"fierce.estimator must be 'codes' or 'koleo', got {o['estimator']!r}.")
    if o["estimator"] == "koleo" and o["form"] == "convex":
      raise ValueError("fierce.form='convex' needs a bounded entropy (log2 K - H); the koleo "
                       "estimator is unbounded: use form='difference'.")
    if o["similarity"] not in losses.fierce.SIMILARITIES:
      raise ValueError(f"fierce.similarity must be one of {losses.fierce.SIMILARITIES}, got "
                       f"{o['similarity']!r}.")
    if not float(o["lambda"]) >= 0:
      raise ValueError(f"fierce.lambda must be >= 0, got {o['lambda']!r}.")
    if not float(o["temperature"]) > 0:
      raise ValueError(f"fierce.temperature must be > 0, got {o['temperature']!r}.")
    if not int(o["num_codes"]) >= 1:
      raise ValueError(f"fierce.num_codes must be >= 1, got {o['num_codes']!r}.")
    if not 0.0 <= float(o["label_smoothing"]) < 1.0:
      raise ValueError(f"fierce.label_smoothing must be in [0, 1), got {o['label_smoothing']!r}.")

  def init_buffers(self, key, *, info: RunInfo):
    o = self.options
    dim = int(o["feature_dim"]) or feature_dim_of(self.config, info)
    init = "bins" if o["similarity"] == "bins" else o["code_init"]
    codes = losses.fierce_codes(key, int(o["num_codes"]), dim, init=init,
                                scale=float(o["code_scale"]))
    return {"codes": codes}

  def _entropy_kwargs(self, hparams, axis_name):
    o = self.options
    return dict(temperature=hparams["temperature"], similarity=o["similarity"],
                logit_scale=hparams["logit_scale"], eps=float(o["eps"]), axis_name=axis_name)

  def loss(self, ctx: StepContext) -> LossOutput:
    o = self.options
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    logits, labels, feats = outputs["logits"], ctx.batch["label"], outputs["features"]
    codes = ctx.buffers["codes"]
    smoothing = self.hp(ctx)["label_smoothing"]
    c = logits.shape[-1]
    targets = (1.0 - smoothing) * jax.nn.one_hot(labels, c) + smoothing / c
    # smoothing 0 keeps the plain CE (exactly the numbers of the unsmoothed loss).
    ce = jnp.where(smoothing > 0, losses.softmax_cross_entropy_with_targets(logits, targets),
                   losses.softmax_cross_entropy(logits, labels))
    kw = self._entropy_kwargs(self.hp(ctx), ctx.axis_name)
    h_clean = jax.lax.stop_gradient(losses.fierce_entropy(feats, codes, None, **kw))
    metrics = {"ce": jnp.mean(ce), "accuracy": jnp.mean(metrics_lib.accuracy(logits, labels)),
               "entropy_bits_noiseless": h_clean}
    if o["estimator"] == "codes":
      h = losses.fierce_entropy(feats, codes, ctx.key, **kw)
      metrics["entropy_bits"] = h
    else:
      h = losses.koleo_entropy(feats, axis_name=ctx.axis_name)
      metrics["koleo"] = h
    per_example = losses.fierce_objective(
        ce, h, lam=self.hp(ctx)["lambda"], form=o["form"],
        max_entropy=math.log2(int(o["num_codes"])))
    return LossOutput(jnp.mean(per_example), metrics, model_state)
