"""Optimizers and learning-rate schedules from ``config.optimizer``.

``learning_rate`` and ``weight_decay`` may be (traced) arrays: the step builds its optimizer from the
state's hyperparameters (``state.hparams["optimizer"]``), so a sweep trains every replica with its
own values in one compiled program. The optimizer state's structure depends on the config only.
"""

from __future__ import annotations

import jax
import optax

_KNOWN = ("sgd", "adam", "adamw")


def make_schedule(opt, total_steps: int, learning_rate=None) -> optax.Schedule:
  """The schedule of ``config.optimizer``; ``learning_rate`` (maybe traced) replaces its peak."""
  lr = float(opt.learning_rate) if learning_rate is None else learning_rate
  warmup = int(opt.get("warmup_steps", 0))
  kind = opt.get("schedule", "constant")
  decay_steps = max(1, total_steps - warmup)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=float(opt.get("final_fraction", 0.0)))
  elif kind == "step":
    bounds = [int(b * decay_steps) if b < 1 else int(b) for b in opt.get("boundaries", (0.5, 0.75))]
    factor = float(opt.get("decay_factor", 0.1))
    main = optax.piecewise_constant_schedule(lr, {b: factor for b in bounds})
  else:
    raise ValueError(f"`optimizer.schedule` must be one of ['constant', 'cosine', 'step'], "
                     f"got {kind!r}.")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def decay_mask(params, exclude: str):
  """True for parameters that get weight decay. ``exclude="bias_and_norm"`` skips 1-D leaves
  (biases, norm scales and offsets)."""
  if exclude in ("", "none", None):
    return jax.tree_util.tree_map(lambda _: True, params)
  if exclude != "bias_and_norm":
    raise ValueError(f"`optimizer.exclude_from_weight_decay` must be 'bias_and_norm' or 'none', "
                     f"got {exclude!r}.")
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def make_optimizer(opt, total_steps: int, hparams=None, *,
                   decay_always: bool = False) -> optax.GradientTransformation:
  """sgd (momentum, nesterov), adam or adamw, with a schedule, weight decay and gradient clipping.

  Args:
    opt: ``config.optimizer``.
    total_steps: the schedule's length.
    hparams: optional ``{"learning_rate", "weight_decay"}`` arrays (maybe traced) that replace the
      config's values.
    decay_always: keep the weight-decay transformation even when ``opt.weight_decay`` is 0 (a
      sweep that varies it needs one optimizer-state structure for every replica).
  """
  name = opt.name
  if name not in _KNOWN:
    raise ValueError(f"Unknown optimizer {name!r}; known optimizers: {list(_KNOWN)}.")
  hparams = hparams or {}
  schedule = make_schedule(opt, total_steps, hparams.get("learning_rate"))
  wd = hparams.get("weight_decay", float(opt.get("weight_decay", 0.0)))
  use_decay = decay_always or float(opt.get("weight_decay", 0.0)) != 0.0
  exclude = opt.get("exclude_from_weight_decay", "bias_and_norm")
  mask = lambda p: decay_mask(p, exclude)
  chain = []
  if opt.get("grad_clip_norm", 0.0):
    chain.append(optax.clip_by_global_norm(float(opt.grad_clip_norm)))
  if name == "adamw":
    chain.append(optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999),
                             weight_decay=wd, mask=mask))
  else:
    if use_decay:  # L2 regularization added to the gradient (classic SGD / Adam weight decay)
      chain.append(optax.add_decayed_weights(wd, mask=mask))
    if name == "sgd":
      momentum = float(opt.get("momentum", 0.9))
      chain.append(optax.sgd(schedule, momentum=momentum or None,
                             nesterov=bool(opt.get("nesterov", False))))
    else:
      chain.append(optax.adam(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999)))
  return optax.chain(*chain)
