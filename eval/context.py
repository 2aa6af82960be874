"""``EvalContext``: what an evaluator sees (defined apart from the evaluators so that topic modules
can name it without importing ``labelwise.eval.evaluators``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional

import numpy as np


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
