"""Shared parts of the FIERCE configs: the arms (fierce, ce, label smoothing) and their arguments.

Config arguments (after ``:``, comma separated): ``method=fierce|ce|label_smoothing``,
``lam=L`` (FIERCE lambda, or the convex weight a), ``tau=T``, ``form=difference|convex``,
``estimator=codes|koleo``, ``similarity=cosine|dot|bins``, ``scale=S`` (logit scale),
``codes=K``, ``alpha=A`` (label smoothing), ``coarse=halves|parity|pairs|dataset``,
``train_on=coarse|fine`` (fine = the upper bound), ``seed=N``, ``runlocal``.
"""

from __future__ import annotations

import ml_collections

from labelwise.configs import common

ARMS = ("fierce", "ce", "label_smoothing")
# The ``:arg`` tokens read by ``apply_arm`` (``common.RUN_ARGS`` included).
ARGS = common.RUN_ARGS + ("method", "coarse", "train_on", "similarity", "lam", "form", "tau",
                          "scale", "codes", "estimator", "alpha")


def apply_arm(c: ml_collections.ConfigDict, args: dict, *, default_coarse: str,
              code_init: str = "uniform", code_scale: float = 0.01,
              similarity: str = "cosine") -> ml_collections.ConfigDict:
  method = args.get("method", "fierce")
  if method not in ARMS:
    raise ValueError(f"`method` must be one of {ARMS}, got {method!r}.")
  c.method = method
  c.data.coarse = args.get("coarse", default_coarse)
  train_on = args.get("train_on", "coarse")
  if train_on not in ("coarse", "fine"):
    raise ValueError(f"`train_on` must be 'coarse' or 'fine', got {train_on!r}.")
  c.data.train_on = "coarse_label" if train_on == "coarse" else "label"
  c.evaluators = ("classification", "fine_grain")
  c.fine_grain_eval = ml_collections.ConfigDict(dict(k=5, l2=1e-3, max_train=0, train_split=""))
  if method == "fierce":
    sim = args.get("similarity", similarity)
    c.fierce = ml_collections.ConfigDict({
        "lambda": float(args.get("lam", 1.0)), "form": args.get("form", "difference"),
        "temperature": float(args.get("tau", 1.0)), "similarity": sim,
        "logit_scale": float(args.get("scale", 1.0)), "num_codes": int(args.get("codes", 100)),
        "code_init": "bins" if sim == "bins" else code_init, "code_scale": code_scale,
        "estimator": args.get("estimator", "codes")})
  elif method == "label_smoothing":
    c.label_smoothing = ml_collections.ConfigDict({"alpha": float(args.get("alpha", 0.1))})
  if "seed" in args:
    c.seed = int(args["seed"])
  return c
