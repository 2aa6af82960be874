"""Dataset specs looked up by name.

A spec says how to read one dataset through TFDS: which builder (an offline builder class in
``labelwise.data.builders``, generated on first use, or a catalog name prepared with
``python -m labelwise.data.prepare NAME``), the input feature, the label, the extra per-example fields
passed into batches, and how raw inputs become float32.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to read one dataset.

  Attributes:
    name: registry name used in configs (``config.dataset``).
    tfds_name: the TFDS name read with ``tfds.data_source``.
    num_classes: number of (fine) classes of ``label``.
    input_key: the feature that becomes ``batch["input"]`` (``image``, ``signal``, ...).
    label_key: the feature that becomes ``batch["label"]``.
    fields: extra features copied into batches under their own names (``coarse_label``, ...).
    splits: the split names the dataset has (``train``, ``test``, ...).
    builder: an offline ``tfds.core.GeneratorBasedBuilder`` subclass, or None for catalog data.
    preprocess: numpy function raw input batch -> float32 batch.
    fine_to_coarse: the dataset's own fine -> coarse map, if it has one (``data.coarse="dataset"``).
    coarse_maps: named fine -> coarse maps of this dataset only (``data.coarse=<name>``), next to the
      generic :data:`COARSE_MAPS`; a name here wins.
    image: whether inputs are images ``[H, W, C]`` (augmentation applies).
    description: one line for error messages and docs.
  """
  name: str
  tfds_name: str
  num_classes: int
  input_key: str = "image"
  label_key: str = "label"
  fields: Tuple[str, ...] = ()
  splits: Tuple[str, ...] = ("train", "test")
  builder: Optional[type] = None
  preprocess: Optional[Callable[[np.ndarray], np.ndarray]] = None
  fine_to_coarse: Optional[Tuple[int, ...]] = None
  coarse_maps: Mapping[str, Tuple[int, ...]] = dataclasses.field(default_factory=dict)
  image: bool = False
  description: str = ""

  @property
  def catalog(self) -> bool:
    return self.builder is None


DATASETS: Dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
  if spec.name in DATASETS:
    raise ValueError(f"dataset {spec.name!r} is registered twice")
  DATASETS[spec.name] = spec
  return spec


def get_dataset_spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; known datasets: {sorted(DATASETS)}.")
  return DATASETS[name]


# Named fine -> coarse maps for 10-class datasets (digits, mnist1d, mnist, cifar10).
COARSE_MAPS: Mapping[str, Sequence[int]] = {
    "halves": (0, 0, 0, 0, 0, 1, 1, 1, 1, 1),   # {0-4} vs {5-9}
    "parity": (0, 1, 0, 1, 0, 1, 0, 1, 0, 1),   # even vs odd
    "pairs": (0, 0, 1, 1, 2, 2, 3, 3, 4, 4),    # {0,1} {2,3} ... {8,9}
}


def fine_to_coarse_map(spec: DatasetSpec, coarse) -> Optional[np.ndarray]:
  """Resolves ``config.data.coarse`` (None, "dataset", a name of ``spec.coarse_maps`` or
  COARSE_MAPS, or a list) to an array."""
  if coarse is None or coarse == "":
    return None
  named = {**COARSE_MAPS, **spec.coarse_maps}
  if isinstance(coarse, str):
    if coarse == "dataset":
      if spec.fine_to_coarse is None:
        raise ValueError(f"dataset {spec.name!r} has no fine-to-coarse map of its own; "
                         f"use one of {sorted(named)} or a list.")
      mapping = spec.fine_to_coarse
    elif coarse in named:
      mapping = named[coarse]
    else:
      raise ValueError(f"`data.coarse` must be None, 'dataset', one of {sorted(named)} "
                       f"or a list of {spec.num_classes} ints, got {coarse!r}.")
  else:
    mapping = tuple(int(c) for c in coarse)
  mapping = np.asarray(mapping, np.int32)
  if mapping.shape != (spec.num_classes,) or mapping.min() < 0:
    raise ValueError(f"`data.coarse` must map each of the {spec.num_classes} classes of "
                     f"{spec.name!r} to a coarse index >= 0, got {mapping.tolist()}.")
  return mapping
