"""Evaluators: functions of an :class:`EvalContext` returning ``{metric: float}``.

The trainer runs ``config.evaluators`` (default: the method's ``evaluators``) after training and every
``eval_every`` steps, and logs their metrics as ``eval/<name>``. ``ctx.predictions(split)`` gives the
model outputs and batch fields of every example of the split exactly once (padding removed).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional

import numpy as np

from labelwise.eval import metrics

EVALUATORS: Dict[str, Callable] = {}


def register_evaluator(name: str):
  def deco(fn):
    if name in EVALUATORS:
      raise ValueError(f"evaluator {name!r} is registered twice")
    EVALUATORS[name] = fn
    return fn
  return deco


def get_evaluator(name: str) -> Callable:
  if name not in EVALUATORS:
    raise ValueError(f"Unknown evaluator {name!r}; known evaluators: {sorted(EVALUATORS)}.")
  return EVALUATORS[name]


@dataclasses.dataclass
class EvalContext:
  """What an evaluator sees.

  Attributes:
    config: the run config.
    params, model_state, buffers: the trained state (host or device arrays, unreplicated).
    model: the Flax module; ``model.apply({"params": params, **model_state}, x, train=False)``.
    method: the :class:`~labelwise.train.methods.Method` object of the run.
    dataset: the :class:`~labelwise.data.Dataset` (``dataset.split(name)``, ``dataset.spec``, ...).
    eval_split: the split named by ``config.data.eval_split``.
    workdir: the run directory (evaluators may write pictures there), or None.
    predict_fn: ``split -> dict`` of numpy arrays (see :meth:`predictions`), provided by the trainer.
  """
  config: Any
  params: Any
  model_state: Any
  buffers: Any
  model: Any
  method: Any
  dataset: Any
  eval_split: str
  workdir: Optional[str]
  predict_fn: Callable[[str], Dict[str, np.ndarray]]
  _cache: Dict[str, Dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

  def predictions(self, split: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Outputs (``logits``, ``features``, heads) and batch fields for every example of ``split``."""
    split = split or self.eval_split
    if split not in self._cache:
      self._cache[split] = self.predict_fn(split)
    return self._cache[split]


@register_evaluator("classification")
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
