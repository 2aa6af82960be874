"""Method registry: ``get_method(config)`` builds ``config.method``.

The built-in methods are listed in :data:`BUILTIN_METHODS` (name -> ``"module:Class"``) and
imported when first looked up; importing this package imports none of them.
``@register_method(name)`` adds your own :class:`Method` subclass (and sets its ``name``).
"""

from __future__ import annotations

from labelwise._registry import Registry
from labelwise.train.methods.base import HostContext, LossOutput, Method, RunInfo, StepContext

_M = "labelwise.train.methods"
BUILTIN_METHODS = {
    "ce": f"{_M}.ce:CrossEntropy",
    "actdiff": f"{_M}.attribution:ActDiff",
    "gradmask": f"{_M}.attribution:GradMask",
    "rrr": f"{_M}.attribution:RightForTheRightReasons",
    "classify_masked": f"{_M}.attribution:ClassifyMasked",
    "adversarial": f"{_M}.attribution:Adversarial",
    "two_head": f"{_M}.average_k:TwoHead",
    "assume_negative": f"{_M}.average_k:AssumeNegative",
    "epr": f"{_M}.average_k:ExpectedPositive",
    "collision_soft": f"{_M}.collision:CollisionSoft",
    "shannon_soft": f"{_M}.collision:ShannonSoft",
    "collision_cluster": f"{_M}.collision:CollisionCluster",
    "shannon_cluster": f"{_M}.collision:ShannonCluster",
    "mi_cluster": f"{_M}.collision:MutualInformationCluster",
    "fierce": f"{_M}.fierce:Fierce",
    "simloss": f"{_M}.simloss:SimLoss",
    "label_smoothing": f"{_M}.simloss:LabelSmoothing",
    "sord": f"{_M}.simloss:SORD",
    "hierarchical_soft": f"{_M}.simloss:HierarchicalSoft",
}


def _check_name(name: str, cls) -> None:
  if cls.name != name:
    raise RuntimeError(f"BUILTIN_METHODS[{name!r}] is {cls.__name__}, whose name is {cls.name!r}")


#: name -> Method subclass (a read-only mapping; built-ins imported on lookup).
METHODS = Registry("method", BUILTIN_METHODS, on_load=_check_name)


def register_method(name: str):
  """Class decorator registering a :class:`Method` subclass under ``name`` (sets ``cls.name``)."""
  def deco(cls):
    METHODS.register(name, cls)
    cls.name = name
    return cls
  return deco


def get_method(config) -> Method:
  return METHODS.lookup(config.method)(config)


__all__ = ["BUILTIN_METHODS", "METHODS", "HostContext", "LossOutput", "Method", "RunInfo",
           "StepContext", "get_method", "register_method"]
