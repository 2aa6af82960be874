"""Evaluators: functions of an :class:`EvalContext` returning ``{metric: float}``.

The trainer runs ``config.evaluators`` (default: the method's ``evaluators``) after training and every
``eval_every`` steps, and logs their metrics as ``eval/<name>``. ``ctx.predictions(split)`` gives the
model outputs and batch fields of every example of the split exactly once (padding removed).

The built-in evaluators are listed in :data:`BUILTIN_EVALUATORS` (name -> ``"module:function"``) and
imported when first looked up; ``@register_evaluator(name)`` adds your own.
"""

from __future__ import annotations

from typing import Callable, Dict

import numpy as np

from labelwise._registry import Registry
from labelwise.eval import metrics
from labelwise.eval.context import EvalContext

_E = "labelwise.eval"
BUILTIN_EVALUATORS = {
    "classification": f"{_E}.evaluators:classification",
    "average_k": f"{_E}.average_k:average_k_evaluator",
    "clustering": f"{_E}.clustering:clustering_evaluator",
    "kmeans_baseline": f"{_E}.clustering:kmeans_evaluator",
    "fine_grain": f"{_E}.fine_grain:fine_grain",
    "attribution": f"{_E}.saliency:attribution_evaluator",
    "ordinal": f"{_E}.simloss:ordinal",
    "superclass": f"{_E}.simloss:superclass",
    "hierarchy": f"{_E}.simloss:hierarchy",
    "confusion": f"{_E}.simloss:confusion",
}
#: name -> evaluator function (a read-only mapping; built-ins imported on lookup).
EVALUATORS = Registry("evaluator", BUILTIN_EVALUATORS)


def register_evaluator(name: str):
  """Function decorator registering ``fn(ctx: EvalContext) -> dict`` under ``name``."""
  def deco(fn):
    return EVALUATORS.register(name, fn)
  return deco


def get_evaluator(name: str) -> Callable[[EvalContext], Dict[str, float]]:
  return EVALUATORS.lookup(name)


def classification(ctx: EvalContext) -> Dict[str, float]:
  """accuracy, top-5 accuracy (when there are > 5 classes), loss and the example count."""
  p = ctx.predictions()
  logits, labels = p["logits"], p["label"]
  out = {"accuracy": float(np.mean(np.asarray(metrics.accuracy(logits, labels)))),
         "loss": float(np.mean(np.asarray(metrics.cross_entropy(logits, labels)))),
         "num_examples": float(len(labels))}
  if logits.shape[-1] > 5:
    out["top5_accuracy"] = float(np.mean(np.asarray(
        metrics.top_k_accuracy(logits, labels, k=5))))
  return out
