"""SimLoss (Kobs et al., ISMIS 2020) and its soft-label baselines as trainer methods.

* ``simloss``: ``mean_i -log(sum_c S[y_i, c] p_ic)`` (:func:`labelwise.losses.simloss`). The similarity
  matrix ``S`` is built once on the host from the config and kept in the method's buffers (an array
  argument of the compiled step, saved in checkpoints)::

      config.simloss.similarity = "ordinal"     # S = r^|i-j|           (reduction_factor r)
                                  "superclass"  # 1 / r / 0 by superclass (reduction_factor r,
                                                #   the dataset's fine-to-coarse map: data.coarse)
                                  "embedding"   # max(0, (cos - b)/(1 - b)) of a [C, D] .npy of class
                                                #   embeddings (embeddings=path, lower_bound b)
                                  "identity"    # S = I: plain cross-entropy (a sanity control)
      config.simloss.epsilon = 0.0              # 0: stable form; > 0: the authors' -log(q + eps)

* ``label_smoothing``: cross-entropy against ``(1 - alpha) onehot + alpha / C``.
* ``sord``: cross-entropy against SORD targets ``softmax_c(-scale (c - y)^2)`` (Diaz & Marathe 2019).
* ``hierarchical_soft``: cross-entropy against ``softmax_c(-beta d(c, y))`` with the two-level tree
  distance (0 same class, 1 same superclass, 2 otherwise; Bertinetto et al. 2020).

All four log ``accuracy`` and evaluate with ``("classification",)`` unless ``config.evaluators``
names more (the SimLoss configs add ``ordinal`` and/or ``superclass``, :mod:`labelwise.eval.simloss`).
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from labelwise import losses
from labelwise.eval import metrics as metrics_lib
from labelwise.train.methods.base import LossOutput, Method, RunInfo, StepContext

SIMILARITIES = ("ordinal", "superclass", "embedding", "identity")


def _need_fine_to_coarse(info: RunInfo, method: str):
  if info.fine_to_coarse is None:
    raise ValueError(f"method {method!r} needs a fine-to-coarse map: set `data.coarse` "
                     f"('dataset' for datasets with their own, e.g. cifar100, hierarchy_gaussians).")
  f2c = np.asarray(info.fine_to_coarse)
  if f2c.shape != (info.num_classes,):
    raise ValueError(f"method {method!r}: the fine-to-coarse map has shape {f2c.shape}, expected "
                     f"({info.num_classes},) (training on coarse labels is not supported here).")
  return f2c


def build_similarity(options, info: RunInfo) -> np.ndarray:
  """The ``[C, C]`` similarity matrix described by ``config.simloss`` (validated on the host)."""
  kind = options["similarity"]
  c = info.num_classes
  if kind == "ordinal":
    s = losses.ordinal_similarity(c, reduction_factor=float(options["reduction_factor"]))
  elif kind == "superclass":
    s = losses.superclass_similarity(_need_fine_to_coarse(info, "simloss"),
                                     reduction_factor=float(options["reduction_factor"]))
  elif kind == "embedding":
    path = options["embeddings"]
    if not path:
      raise ValueError("`simloss.similarity='embedding'` needs `simloss.embeddings`: the path of a "
                       "[num_classes, dim] .npy of class embeddings.")
    emb = np.load(path)
    if emb.ndim != 2 or emb.shape[0] != c:
      raise ValueError(f"`simloss.embeddings` ({path}) must hold a [{c}, dim] array, got shape "
                       f"{emb.shape}.")
    s = losses.embedding_similarity(emb, lower_bound=float(options["lower_bound"]))
  else:
    s = np.eye(c, dtype=np.float32)
  return losses.validate_similarity(np.asarray(s), num_classes=c)


class SimLoss(Method):
  """``mean_i -log(sum_c S[y_i, c] softmax(z_i)_c)`` with ``S`` from the config (in the buffers)."""
  name = "simloss"
  defaults = {"similarity": "ordinal", "reduction_factor": 0.5, "lower_bound": 0.5,
              "embeddings": "", "epsilon": 0.0}
  # reduction_factor and lower_bound shape the similarity buffer, built per run (per replica).
  static_options = {"epsilon": "0 selects the numerically stable form and > 0 the authors' "
                               "-log(q + eps): two different programs"}

  def validate(self):
    o = self.options
    if o["similarity"] not in SIMILARITIES:
      raise ValueError(f"`simloss.similarity` must be one of {list(SIMILARITIES)}, got "
                       f"{o['similarity']!r}.")
    if not 0.0 <= float(o["reduction_factor"]) < 1.0:
      raise ValueError(f"`simloss.reduction_factor` must be in [0, 1), got {o['reduction_factor']}.")
    if not 0.0 <= float(o["lower_bound"]) < 1.0:
      raise ValueError(f"`simloss.lower_bound` must be in [0, 1), got {o['lower_bound']}.")
    if not float(o["epsilon"]) >= 0.0:
      raise ValueError(f"`simloss.epsilon` must be >= 0 (0: the stable form), got {o['epsilon']}.")

  def init_buffers(self, key, *, info: RunInfo):
    del key
    return {"similarity": jnp.asarray(build_similarity(self.options, info))}

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    eps = self.options["epsilon"] or None  # static: picks the form
    per_example = losses.simloss(outputs["logits"], ctx.batch["label"],
                                 ctx.buffers["similarity"], epsilon=eps)
    acc = metrics_lib.accuracy(outputs["logits"], ctx.batch["label"])
    return LossOutput(jnp.mean(per_example), {"accuracy": jnp.mean(acc)}, model_state)


class _SoftTargetMethod(Method):
  """Cross-entropy against ``self.targets(labels, num_classes)``."""

  def targets(self, labels, num_classes, hparams):
    raise NotImplementedError

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    logits, labels = outputs["logits"], ctx.batch["label"]
    t = self.targets(labels, logits.shape[-1], self.hp(ctx))
    per_example = losses.softmax_cross_entropy_with_targets(logits, t)
    acc = metrics_lib.accuracy(logits, labels)
    return LossOutput(jnp.mean(per_example), {"accuracy": jnp.mean(acc)}, model_state)


class LabelSmoothing(_SoftTargetMethod):
  """Cross-entropy against ``(1 - alpha) onehot(y) + alpha / C`` (Szegedy et al. 2016)."""
  name = "label_smoothing"
  defaults = {"alpha": 0.1}

  def validate(self):
    if not 0.0 <= float(self.options["alpha"]) <= 1.0:
      raise ValueError(f"`label_smoothing.alpha` must be in [0, 1], got {self.options['alpha']}.")

  def targets(self, labels, num_classes, hparams):
    return losses.smoothed_targets(labels, num_classes, alpha=hparams["alpha"])


class SORD(_SoftTargetMethod):
  """Cross-entropy against SORD targets ``softmax_c(-scale (c - y)^2)`` (Diaz & Marathe 2019)."""
  name = "sord"
  defaults = {"scale": 1.0}

  def validate(self):
    if not float(self.options["scale"]) > 0.0:
      raise ValueError(f"`sord.scale` must be > 0, got {self.options['scale']}.")

  def targets(self, labels, num_classes, hparams):
    return losses.sord_targets(labels, num_classes, scale=hparams["scale"])


class HierarchicalSoft(_SoftTargetMethod):
  """Cross-entropy against ``softmax_c(-beta d(c, y))``, tree distance 0/1/2 (Bertinetto et al.)."""
  name = "hierarchical_soft"
  defaults = {"beta": 2.0}

  def validate(self):
    if not float(self.options["beta"]) >= 0.0:
      raise ValueError(f"`hierarchical_soft.beta` must be >= 0, got {self.options['beta']}.")

  def init_buffers(self, key, *, info: RunInfo):
    del key
    self.fine_to_coarse = _need_fine_to_coarse(info, "hierarchical_soft")
    return {}

  def targets(self, labels, num_classes, hparams):
    return losses.hierarchical_targets(labels, self.fine_to_coarse, beta=hparams["beta"])
