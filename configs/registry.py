"""Shipped configs found by name: ``digits_ce``, ``labelwise.configs.digits_ce`` or a file path.

A shipped config is a module of this package with a top-level ``get_config``; its description is the
first line of its docstring. Nothing here imports a config module (listing them is fast and cannot
fail on one config's imports).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
from typing import Dict, Tuple

_PACKAGE = "labelwise.configs"


class ConfigNotFoundError(ValueError):
  """``--config`` names no file, no importable module and no shipped config."""


def _package_dir() -> str:
  return os.path.dirname(os.path.abspath(__file__))


def _module_info(path: str) -> Tuple[bool, str]:
  """(defines a top-level ``get_config``, first docstring line) of the Python file ``path``."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  has_get_config = any(isinstance(node, ast.FunctionDef) and node.name == "get_config"
                       for node in tree.body)
  doc = (ast.get_docstring(tree) or "").strip().splitlines()
  return has_get_config, (doc[0].strip() if doc else "")


def shipped_configs() -> Dict[str, str]:
  """Short name -> one-line description of every config shipped in ``labelwise.configs``, sorted."""
  out = {}
  for module in pkgutil.iter_modules([_package_dir()]):
    if module.ispkg or module.name.startswith("_"):
      continue
    is_config, description = _module_info(os.path.join(_package_dir(), module.name + ".py"))
    if is_config:
      out[module.name] = description
  return dict(sorted(out.items()))


def format_config_list() -> str:
  """The ``--list-configs`` text: one ``name  description`` line per shipped config."""
  configs = shipped_configs()
  width = max(len(name) for name in configs)
  lines = [f"{name.ljust(width)}  {description}" for name, description in configs.items()]
  return "\n".join(lines + ["", "Use one with --config=NAME[:ARGS] (ARGS as its docstring shows, e.g. "
                                ":runlocal); --config=NAME --show_config prints its keys."])


def split_arg(spec: str) -> Tuple[str, str]:
  """``"digits_ce:runlocal,seed=3"`` -> ``("digits_ce", "runlocal,seed=3")``; no ``:`` -> ``""``."""
  name, sep, arg = spec.partition(":")
  return name, arg if sep else ""


def _module_file(module: str) -> str:
  try:
    spec = importlib.util.find_spec(module)
  except (ImportError, ValueError):
    return ""
  origin = getattr(spec, "origin", None) if spec is not None else None
  return origin if origin and origin.endswith(".py") and os.path.isfile(origin) else ""


def resolve(spec: str) -> str:
  """The config file of ``spec`` (``path``, ``package.module`` or shipped ``name``, each ``[:args]``),
  returned as ``file[:args]`` for ``ml_collections.config_flags``.

  Raises:
    ConfigNotFoundError: naming what was tried and the shipped names.
  """
  name, arg = split_arg(spec)
  suffix = f":{arg}" if arg else ""
  if not name:
    raise ConfigNotFoundError("--config is empty: give a shipped config name (see --list-configs), "
                              "a module (labelwise.configs.digits_ce) or a file path.")
  if os.path.isfile(name):
    return name + suffix
  if name in shipped_configs():
    return os.path.join(_package_dir(), name + ".py") + suffix
  looks_like_path = name.endswith(".py") or os.sep in name or "/" in name
  if not looks_like_path:
    path = _module_file(name)
    if path:
      return path + suffix
  short = os.path.splitext(os.path.basename(name))[0]
  hint = (f" The shipped config of that name is found by name: --config={short}{suffix}."
          if short in shipped_configs() else " Shipped configs: python -m labelwise.train --list-configs.")
  what = "no such file" if looks_like_path else "not a file, an importable module or a shipped config"
  raise ConfigNotFoundError(f"--config={spec}: {what} (from {os.getcwd()}).{hint}")
