"""Shared parts of the collision cross-entropy configs (soft targets and self-labeled clustering).

Config args (``--config=configs/<file>.py:arg1=v,arg2``): ``method=...``, ``seed=N``,
``lam=<fairness weight>`` (default 3: with 1, collision clustering collapsed to a single cluster in
the offline study), ``fairness=strong|classic``, ``pseudo=batch|dataset``, ``runlocal``.
"""

from __future__ import annotations

from labelwise.configs import common

CLUSTER_METHODS = ("collision_cluster", "shannon_cluster", "mi_cluster")
SOFT_METHODS = ("collision_soft", "shannon_soft")
# The ``:arg`` tokens read here (``common.RUN_ARGS`` included), for ``common.parse_arg(known=...)``.
CLUSTER_ARGS = common.RUN_ARGS + ("method", "lam", "fairness", "max_iter", "pseudo",
                                  "update_every", "marginal_weight")
SOFT_ARGS = common.RUN_ARGS + ("method", "targets", "level", "noise_seed")


def method_options(method: str, args: dict) -> dict:
  """The method's own config dict from the config args."""
  if method in ("collision_cluster", "shannon_cluster"):
    opts = dict(fairness_weight=float(args.get("lam", 3.0)),
                fairness=args.get("fairness", "strong"),
                tol=1e-5, max_iter=int(args.get("max_iter", 200)),
                pseudo_labels=args.get("pseudo", "batch"),
                update_every=int(args.get("update_every", 50)))
    return opts
  if method == "mi_cluster":
    return dict(marginal_weight=float(args.get("marginal_weight", 1.0)))
  if method in SOFT_METHODS:
    return dict(targets=args.get("targets", "mix"), noise_level=float(args.get("level", 0.0)),
                noise_seed=int(args.get("noise_seed", args.get("seed", 0))))
  raise ValueError(f"unknown collision/cluster method {method!r}; expected one of "
                   f"{CLUSTER_METHODS + SOFT_METHODS}.")


def cluster_config(args: dict, *, dataset: str, model: str, default_method="collision_cluster"):
  """A clustering run: no labels in the loss, ``clustering`` evaluator (ACC/NMI/ARI)."""
  method = args.get("method", default_method)
  if method not in CLUSTER_METHODS:
    raise ValueError(f"`method` must be one of {CLUSTER_METHODS}, got {method!r}.")
  c = common.base_config(dataset=dataset, model=model, method=method)
  c[method] = method_options(method, args)
  c.evaluators = ("clustering",)
  if "seed" in args:
    c.seed = int(args["seed"])
  return c


def soft_config(args: dict, *, dataset: str, model: str, default_method="collision_soft"):
  method = args.get("method", default_method)
  if method not in SOFT_METHODS:
    raise ValueError(f"`method` must be one of {SOFT_METHODS}, got {method!r}.")
  c = common.base_config(dataset=dataset, model=model, method=method)
  if "seed" in args:
    c.seed = int(args["seed"])
  c[method] = method_options(method, args)
  return c


def catalog_cluster_config(args: dict, *, dataset: str, model: str = "resnet18",
                           augment: bool = True):
  """Clustering on a prepared catalog dataset (train+test, as in the paper): ResNet-18 with
  cross-device BatchNorm (or ``model="small_cnn"``), Adam with cosine decay; ``runlocal`` shrinks it."""
  c = cluster_config(args, dataset=dataset, model=model)
  if model == "resnet18":
    c.model_kwargs.norm = "batch"
  else:
    c.model_kwargs.channels = (32, 64)
    c.model_kwargs.dense = 128
  c.data.train_split = "train+test"
  c.data.eval_split = "train+test"
  c.data.augment = augment
  c.batch_size = 256
  c.total_steps = 20_000
  c.log_every = 100
  c.checkpoint_every = 2000
  c.optimizer = common.optimizer("adam", 1e-3, weight_decay=1e-4, schedule="cosine",
                                 warmup_steps=500)
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.eval_batch_size = 8
    if model == "resnet18":
      c.model_kwargs.width = 8
  return c
