"""Which optional extra a subpackage needs, and a clear error when it is not installed.

``pip install labelwise`` installs what ``labelwise.losses`` needs (jax, numpy). The trainer, data
pipeline, models, configs and evaluators need ``labelwise[train]``; their ``__init__`` calls
:func:`require_train` so that a missing package is reported once, with the install command, instead
of an ``ImportError`` deep inside flax or TFDS.
"""

from __future__ import annotations

import importlib.util

# import name -> distribution name, for the packages of the `train` extra (setup.cfg).
TRAIN_MODULES = {
    "flax": "flax", "optax": "optax", "orbax.checkpoint": "orbax-checkpoint",
    "tensorflow_datasets": "tensorflow-datasets", "array_record": "array-record", "absl": "absl-py",
    "ml_collections": "ml-collections", "tqdm": "tqdm", "scipy": "scipy", "sklearn": "scikit-learn",
}


def _importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ImportError:  # a parent package is missing (or an import hook refuses it)
    return False


def missing(modules: dict) -> list:
  """Distribution names of ``modules`` (import name -> distribution) that cannot be imported."""
  return [dist for module, dist in modules.items() if not _importable(module)]


def require_train(what: str) -> None:
  """Raises ImportError naming ``labelwise[train]`` unless every package of that extra is importable."""
  absent = missing(TRAIN_MODULES)
  if absent:
    raise ImportError(
        f"{what} needs the training extra, which is not installed (missing: {', '.join(absent)}). "
        "Install it with: pip install 'labelwise[train]'  (from a checkout: pip install '.[train]'). "
        "The losses alone (`from labelwise import losses`) need only jax and numpy.")
