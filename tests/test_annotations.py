"""Every public loss and metric is typed: ``jax.typing.ArrayLike`` (or a plain type) in, a type out."""

import inspect
import typing

import pytest
from jax.typing import ArrayLike

from labelwise import losses
from labelwise.eval import metrics


def _public(module):
  return [(module.__name__, n) for n in sorted(dir(module)) if not n.startswith("_")
          and inspect.isfunction(getattr(module, n))
          and getattr(module, n).__module__.startswith("labelwise")]


FUNCTIONS = _public(losses) + _public(metrics)


@pytest.mark.parametrize("module, name", FUNCTIONS)
def test_signature_is_annotated(module, name):
  fn = getattr(losses if module == losses.__name__ else metrics, name)
  hints = typing.get_type_hints(fn)  # every annotation resolves
  sig = inspect.signature(fn)
  missing = [p for p, v in sig.parameters.items()
             if v.kind != v.VAR_KEYWORD and p not in hints]
  assert not missing, f"{name}: parameters without annotation {missing}"
  assert "return" in hints, f"{name}: no return annotation"


def test_the_array_arguments_are_array_like():
  for fn in (losses.softmax_cross_entropy, losses.simloss, losses.collision_cross_entropy,
             losses.fierce_loss, losses.two_head_loss, losses.gradmask_penalty, metrics.accuracy):
    hints = typing.get_type_hints(fn)
    first = next(iter(inspect.signature(fn).parameters))
    assert hints[first] is ArrayLike, fn.__name__
  assert len(FUNCTIONS) >= 80
