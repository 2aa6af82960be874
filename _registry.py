"""Name -> object tables whose built-in entries are imported on lookup, not at import time.

A :class:`Registry` is a read-only mapping: the built-in entries are ``"module:attribute"`` strings
(the module is imported the first time the name is looked up), and :meth:`Registry.register` adds
a user's own objects (e.g. from a decorator). So importing a package registers nothing and a
module that defines an entry never has to import the registry that lists it.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Iterator, Mapping, Optional


class Registry(Mapping):
  """``kind``: what the entries are, for messages (``"method"``, ``"evaluator"``).

  ``on_load(name, obj)`` runs once per built-in entry when it is first looked up.
  """

  def __init__(self, kind: str, builtin: Mapping[str, str],
               on_load: Optional[Callable[[str, Any], None]] = None):
    for name, target in builtin.items():
      if target.count(":") != 1:
        raise ValueError(f"built-in {kind} {name!r}: expected 'module:attribute', got {target!r}")
    self.kind = kind
    self.builtin = dict(builtin)
    self._on_load = on_load
    self._registered: Dict[str, Any] = {}
    self._loaded: Dict[str, Any] = {}

  def register(self, name: str, obj: Any) -> Any:
    if name in self:
      raise ValueError(f"{self.kind} {name!r} is registered twice")
    self._registered[name] = obj
    return obj

  def __getitem__(self, name: str) -> Any:
    if name in self._registered:
      return self._registered[name]
    if name not in self.builtin:
      raise KeyError(name)
    if name not in self._loaded:
      module, attribute = self.builtin[name].split(":")
      obj = getattr(importlib.import_module(module), attribute)
      if self._on_load is not None:
        self._on_load(name, obj)
      self._loaded[name] = obj
    return self._loaded[name]

  def __contains__(self, name: object) -> bool:
    return name in self._registered or name in self.builtin

  def __iter__(self) -> Iterator[str]:
    return iter(sorted({**self.builtin, **self._registered}))

  def __len__(self) -> int:
    return len(set(self.builtin) | set(self._registered))

  def lookup(self, name: str) -> Any:
    """``self[name]``, or a ValueError that lists the known names."""
    if name not in self:
      raise ValueError(f"Unknown {self.kind} {name!r}; known {self.kind}s: {sorted(self)}.")
    return self[name]
