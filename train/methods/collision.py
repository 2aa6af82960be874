"""Collision cross-entropy methods: soft-target training and self-labeled clustering.

Zhang & Boykov, "Collision Cross-entropy for Soft Class Labels and Deep Clustering", arXiv 2303.07321.

Soft targets (supervised):

* ``collision_soft``: ``mean_i H2(t_i, softmax(z_i))`` with ``H2(t, s) = -log sum_k t_k s_k``.
* ``shannon_soft``: ``mean_i -sum_k t_ik log softmax(z_i)_k`` (the baseline).

The targets ``t_i`` are the dataset's ``soft_label`` field (``targets="soft_label"``, e.g.
``cifar10_h``) or synthetic noisy targets made from the clean ``label`` (:func:`noisy_soft_targets`):
``"mix"``: ``t = (1 - eta) onehot + eta Dirichlet(1)`` for every example, ``"flat"``: with
probability ``rho`` the target is replaced by a ``Dirichlet(1)`` draw, ``"onehot"``: no noise. The
noise of one example is a function of ``(noise_seed, index)`` only, so it is the same every epoch.
Evaluation uses the clean labels.

Self-labeled clustering (the labels are never used for training; they are used for evaluation):

* ``collision_cluster``: pseudo-labels ``Y`` from :func:`labelwise.losses.collision_pseudo_labels`
  (EM, under ``stop_gradient``), then a gradient step on ``mean_i H2(y_i, softmax(z_i))``.
* ``shannon_cluster``: pseudo-labels from :func:`labelwise.losses.shannon_pseudo_labels`, then
  Shannon cross-entropy against them.
* ``mi_cluster``: no pseudo-labels, ``mean_i H(sigma_i) - H(mean_i sigma_i)`` (IMSAT/RIM style).

``pseudo_labels="batch"`` re-estimates ``Y`` on every training batch (the marginal ``ybar`` over the
global batch: the EM psums over ``ctx.axis_name``); ``pseudo_labels="dataset"`` re-estimates ``Y`` for
the whole training split every ``update_every`` steps from eval-mode predictions (in
``host_update``, which runs only at those steps) and stores it in the method buffers (checkpointed); the step then reads the rows of
its batch by ``index``. The EM iteration count and the objective are logged as ``train/em_iterations``
and ``train/self_labeling_objective``.

Deadlock: a zero-initialized output head predicts the same distribution for every input; the
pseudo-labels are then uniform and collision CE has exactly zero gradient. ``host_update`` checks
the predictions on the first batch (before step 0, and on every dataset-level update) and raises a
ValueError.
"""

from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from labelwise import losses
from labelwise.eval import metrics as metrics_lib
from labelwise.losses import collision as collision_lib
from labelwise.train.methods.base import HostContext, LossOutput, Method, RunInfo, StepContext

TARGETS = ("soft_label", "mix", "flat", "onehot")
PSEUDO_LABELS = ("batch", "dataset")


def noisy_soft_targets(labels, index, *, num_classes: int, noise: str, level: float, seed: int):
  """Synthetic soft targets from clean labels; deterministic in ``(seed, index)``.

  ``"mix"``: ``(1 - level) * onehot(label) + level * d``; ``"flat"``: ``d`` with probability
  ``level``, else ``onehot(label)``; ``"onehot"``: ``onehot(label)``. ``d ~ Dirichlet(1)`` (uniform on
  the simplex) drawn from ``fold_in(PRNGKey(seed), index)``.

  Args:
    labels: ``[batch]`` integer labels.
    index: ``[batch]`` integer example indices (the noise of an example depends only on it).
    num_classes: ``K``.
    noise: ``"mix"``, ``"flat"`` or ``"onehot"``.
    level: ``eta`` (mix) or ``rho`` (flat) in ``[0, 1]``.
    seed: noise seed.

  Returns:
    ``[batch, K]`` float32 targets on the simplex.
  """
  if noise not in ("mix", "flat", "onehot"):
    raise ValueError(f"`noise` must be 'mix', 'flat' or 'onehot', got {noise!r}.")
  if not isinstance(level, jax.core.Tracer) and not 0.0 <= float(level) <= 1.0:
    raise ValueError(f"`level` must be in [0, 1], got {level}.")
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if noise == "onehot":
    return onehot
  base = jax.random.PRNGKey(seed if isinstance(seed, jax.Array) else int(seed))
  keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(index, jnp.uint32))
  draw_key = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
  flip_key = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
  # Dirichlet(1, ..., 1) = normalized i.i.d. Exponential(1) draws (cheaper than gamma sampling).
  e = jax.vmap(lambda k: jax.random.exponential(k, (num_classes,), jnp.float32))(draw_key)
  d = e / jnp.sum(e, axis=-1, keepdims=True)
  if noise == "mix":
    return (1.0 - level) * onehot + level * d
  flip = jax.vmap(lambda k: jax.random.bernoulli(k, level))(flip_key)
  return jnp.where(flip[:, None], d, onehot)


class _SoftTargets(Method):
  defaults = {"targets": "mix", "noise_level": 0.0, "noise_seed": 0}

  def validate(self):
    o = self.options
    if o["targets"] not in TARGETS:
      raise ValueError(f"`{self.name}.targets` must be one of {TARGETS}, got {o['targets']!r}.")
    if not 0.0 <= float(o["noise_level"]) <= 1.0:
      raise ValueError(f"`{self.name}.noise_level` must be in [0, 1], got {o['noise_level']}.")

  def targets(self, ctx: StepContext, num_classes: int):
    o = self.options
    if o["targets"] == "soft_label":
      if "soft_label" not in ctx.batch:
        raise ValueError(f"`{self.name}.targets='soft_label'` needs a dataset with a `soft_label` "
                         "field (e.g. cifar10_h); use 'mix', 'flat' or 'onehot' for synthetic "
                         "targets.")
      t = ctx.batch["soft_label"].astype(jnp.float32)
      return t / jnp.sum(t, axis=-1, keepdims=True)
    return noisy_soft_targets(ctx.batch["label"], ctx.batch["index"], num_classes=num_classes,
                              noise=o["targets"], level=self.hp(ctx)["noise_level"],
                              seed=self.hp(ctx)["noise_seed"])

  def per_example(self, logits, targets):
    raise NotImplementedError

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    logits = outputs["logits"]
    t = self.targets(ctx, logits.shape[-1])
    per_example = self.per_example(logits, t)
    metrics = {"accuracy": jnp.mean(metrics_lib.accuracy(logits, ctx.batch["label"])),
               "target_label_agreement": jnp.mean(
                   (jnp.argmax(t, -1) == ctx.batch["label"]).astype(jnp.float32))}
    return LossOutput(jnp.mean(per_example), metrics, model_state)


class CollisionSoft(_SoftTargets):
  """``mean_i -log(t_i . softmax(z_i))`` against soft targets."""
  name = "collision_soft"

  def per_example(self, logits, targets):
    return losses.collision_cross_entropy(logits, targets)


class ShannonSoft(_SoftTargets):
  """``mean_i -t_i . log softmax(z_i)`` against soft targets (baseline)."""
  name = "shannon_soft"

  def per_example(self, logits, targets):
    return losses.softmax_cross_entropy_with_targets(logits, targets)


class _Clustering(Method):
  """Shared machinery of the clustering methods (evaluators, deadlock check)."""
  evaluators = ("clustering",)
  defaults: Dict[str, Any] = {"check_deadlock": True}

  def check_deadlock(self, host: HostContext, logits=None) -> None:
    if not self.options.get("check_deadlock", True):
      return
    if logits is None:
      state = host.state()
      outputs = host.apply({"params": state.params, **state.model_state},
                           host.first_batch()["input"], train=False)
      logits = outputs["logits"]
    try:
      collision_lib.check_not_deadlocked(jax.nn.softmax(jnp.asarray(logits, jnp.float32), -1))
    except ValueError as e:
      raise ValueError(f"method {self.name!r}: {e}") from None

  def needs_host_update(self, step: int) -> bool:
    return step == 0 and bool(self.options.get("check_deadlock", True))

  def host_update(self, host: HostContext):
    self.check_deadlock(host)
    return None

  @staticmethod
  def spread(probs):
    """Largest deviation of any row from the first one (0 means a deadlock)."""
    return jnp.max(jnp.abs(probs - probs[:1]))


class _SelfLabeling(_Clustering):
  defaults = {"fairness_weight": 1.0, "fairness": "strong", "tol": 1e-5, "max_iter": 200,
              "pseudo_labels": "batch", "update_every": 50, "check_deadlock": True}
  static_options = {"tol": "a Python float of the EM loop's stopping rule",
                    "max_iter": "the EM loop's iteration bound",
                    "update_every": "the host-side schedule of the dataset-level EM"}
  cross_entropy = "collision"

  def validate(self):
    o = self.options
    if o["fairness"] not in ("strong", "classic"):
      raise ValueError(f"`{self.name}.fairness` must be 'strong' or 'classic', got "
                       f"{o['fairness']!r}.")
    if float(o["fairness_weight"]) < 0:
      raise ValueError(f"`{self.name}.fairness_weight` must be >= 0, got {o['fairness_weight']}.")
    if o["pseudo_labels"] not in PSEUDO_LABELS:
      raise ValueError(f"`{self.name}.pseudo_labels` must be one of {PSEUDO_LABELS}, got "
                       f"{o['pseudo_labels']!r}.")
    if int(o["update_every"]) < 1 or int(o["max_iter"]) < 1 or float(o["tol"]) < 0:
      raise ValueError(f"`{self.name}`: update_every and max_iter must be >= 1 and tol >= 0, got "
                       f"{o['update_every']}, {o['max_iter']}, {o['tol']}.")

  def solve(self, probs, hparams, axis_name=None):
    o = self.options
    return collision_lib.collision_pseudo_labels(
        probs, fairness_weight=hparams["fairness_weight"], fairness=o["fairness"],
        tol=float(o["tol"]), max_iter=int(o["max_iter"]), axis_name=axis_name)

  def per_example(self, logits, targets):
    return losses.collision_cross_entropy(logits, targets)

  def objective(self, probs, y, hparams, axis_name=None):
    o = self.options
    return losses.self_labeling_objective(probs, y, fairness_weight=hparams["fairness_weight"],
                                          fairness=o["fairness"],
                                          cross_entropy=self.cross_entropy, axis_name=axis_name)

  def init_buffers(self, key, *, info: RunInfo):
    if self.options["pseudo_labels"] != "dataset":
      return {}
    n, k = info.num_train_examples, info.num_classes
    return {"pseudo_labels": np.full((n, k), 1.0 / k, np.float32),
            "em_iterations": np.zeros((), np.float32),
            "objective": np.zeros((), np.float32)}

  def needs_host_update(self, step: int) -> bool:
    if self.options["pseudo_labels"] != "dataset":
      return super().needs_host_update(step)
    return step % int(self.options["update_every"]) == 0

  def host_update(self, host: HostContext):
    if self.options["pseudo_labels"] != "dataset":
      return super().host_update(host)
    preds = host.train_predictions()
    self.check_deadlock(host, logits=preds["logits"])
    n = host.num_train_examples
    probs = np.asarray(jax.nn.softmax(jnp.asarray(preds["logits"], jnp.float32), -1))
    order = np.asarray(preds["index"])
    if sorted(order.tolist()) != list(range(n)):
      raise RuntimeError(f"{self.name}: dataset-level pseudo-labels need every training example "
                         f"exactly once, got {len(order)} predictions for {n} examples.")
    hparams = self.hparams()
    y, iters = self.solve(probs, hparams)
    objective = self.objective(probs, y, hparams)
    table = np.empty((n, probs.shape[1]), np.float32)
    table[order] = np.asarray(y)
    return {"pseudo_labels": table, "em_iterations": np.asarray(iters, np.float32),
            "objective": np.asarray(objective, np.float32)}

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    logits = outputs["logits"]
    probs = jax.lax.stop_gradient(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
    if self.options["pseudo_labels"] == "batch":
      y, iters = self.solve(probs, self.hp(ctx), axis_name=ctx.axis_name)
      y = jax.lax.stop_gradient(y)
      objective = self.objective(probs, y, self.hp(ctx), axis_name=ctx.axis_name)
    else:
      y = jnp.take(ctx.buffers["pseudo_labels"], ctx.batch["index"], axis=0)
      iters, objective = ctx.buffers["em_iterations"], ctx.buffers["objective"]
    per_example = self.per_example(logits, y)
    metrics = {"em_iterations": jnp.asarray(iters, jnp.float32),
               "self_labeling_objective": objective,
               "pseudo_label_max": jnp.mean(jnp.max(y, -1)),
               "prediction_spread": self.spread(probs),
               "batch_cluster_accuracy_proxy": jnp.mean(
                   (jnp.argmax(y, -1) == jnp.argmax(probs, -1)).astype(jnp.float32))}
    return LossOutput(jnp.mean(per_example), metrics, model_state)


class CollisionCluster(_SelfLabeling):
  """EM pseudo-labels + collision cross-entropy (Zhang & Boykov)."""
  name = "collision_cluster"


class ShannonCluster(_SelfLabeling):
  """Shannon self-labeling: MM pseudo-labels + Shannon cross-entropy (strong fairness only)."""
  name = "shannon_cluster"
  cross_entropy = "shannon"

  def validate(self):
    super().validate()
    if self.options["fairness"] != "strong" or float(self.options["fairness_weight"]) <= 0:
      raise ValueError("`shannon_cluster` supports fairness='strong' with fairness_weight > 0 only "
                       f"(got {self.options['fairness']!r}, {self.options['fairness_weight']}).")

  def solve(self, probs, hparams, axis_name=None):
    o = self.options
    return collision_lib.shannon_pseudo_labels(
        probs, fairness_weight=hparams["fairness_weight"], tol=float(o["tol"]),
        max_iter=int(o["max_iter"]), axis_name=axis_name)

  def per_example(self, logits, targets):
    return losses.softmax_cross_entropy_with_targets(logits, targets)


class MutualInformationCluster(_Clustering):
  """``mean_i H(sigma_i) - marginal_weight * H(mean_i sigma_i)`` over the global batch."""
  name = "mi_cluster"
  defaults = {"marginal_weight": 1.0, "check_deadlock": True}

  def validate(self):
    if float(self.options["marginal_weight"]) < 0:
      raise ValueError(f"`mi_cluster.marginal_weight` must be >= 0, got "
                       f"{self.options['marginal_weight']}.")

  def loss(self, ctx: StepContext) -> LossOutput:
    outputs, model_state = ctx.apply(ctx.params, ctx.batch["input"])
    logits = outputs["logits"]
    loss = losses.mutual_information_loss(logits, marginal_weight=self.hp(ctx)["marginal_weight"],
                                          axis_name=ctx.axis_name)
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
    metrics = {"prediction_spread": self.spread(jax.lax.stop_gradient(probs))}
    return LossOutput(loss, metrics, model_state)
