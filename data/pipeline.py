"""From a config to numpy batches: TFDS data sources, deterministic shuffling, padding, host slicing.

* Training batches are a pure function of ``(seed, step)``: the permutation of epoch ``e`` is drawn from
  ``(seed, e)``, so a resumed run sees exactly the batches an uninterrupted run sees. The remainder of
  each epoch is dropped. Each host (process) reads its own contiguous slice of every global batch.
* Eval batches visit every example of the split exactly once; the last batch is padded and carries
  ``valid = 0`` on the padding. Each host evaluates its own contiguous slice of the split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from typing import Dict, Iterator, Optional

import jax
import numpy as np

from labelwise.data import registry
from labelwise.data.registry import DatasetSpec
from labelwise.data.sources import SourceFileError

_READ_CHUNK = 2048


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR") or os.path.join(
      os.path.expanduser("~"), "tensorflow_datasets")


class DatasetNotPreparedError(RuntimeError):
  pass


class DataReadError(RuntimeError):
  """The prepared files of a split cannot be read (truncated or corrupted ArrayRecord files)."""


def _read_error(spec: DatasetSpec, split: str, data_dir: str, e: Exception) -> DataReadError:
  where = os.path.join(data_dir, spec.tfds_name)
  fix = ("it is regenerated on the next run" if spec.builder is not None else
         f"then run `python -m labelwise.data.prepare {spec.name} --data_dir={data_dir}`")
  return DataReadError(
      f"cannot read split {split!r} of dataset {spec.name!r} from its ArrayRecord files under "
      f"{where} ({type(e).__name__}: {e}). The files are probably truncated or corrupted: delete "
      f"{where} and {fix}.")


@contextlib.contextmanager
def quiet_generation():
  """TFDS's download wording ("Downloading and preparing dataset Unknown size ...") and progress bars
  off while an offline builder generates its files: nothing is downloaded, so they only mislead."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.utils import tqdm_utils
  was_active = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints its wording to stdout
      yield
  finally:
    tfds.display_progress_bar(was_active)


def _is_prepared(builder) -> bool:
  """``builder.is_prepared()``, without TFDS's warning "Variant folder ... has no
  dataset_info.json" when the version folder does not exist yet (the first run on a machine)."""
  return os.path.isdir(builder.data_dir) and builder.is_prepared()


def _open_source(spec: DatasetSpec, split: str, data_dir: str, manual_dir: Optional[str] = None):
  """A random-access TFDS data source; offline builders are generated on first use (from the
  files in ``manual_dir`` for builders that read user-supplied files)."""
  import tensorflow_datasets as tfds
  if spec.builder is not None:
    builder = spec.builder(data_dir=data_dir, file_format="array_record")
    if not _is_prepared(builder):
      # Several processes (pytest workers, hosts of a pod) may generate at once: take a file lock.
      import fcntl
      os.makedirs(data_dir, exist_ok=True)
      with open(os.path.join(data_dir, f".{spec.tfds_name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = spec.builder(data_dir=data_dir, file_format="array_record")
        if not _is_prepared(builder):
          config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
          with quiet_generation():
            builder.download_and_prepare(download_config=config)
    return builder.as_data_source(split=split)
  try:
    return tfds.data_source(spec.tfds_name, split=split, data_dir=data_dir,
                            try_gcs=False, download=False)
  except Exception as e:  # TFDS raises several types for "not prepared here".
    raise DatasetNotPreparedError(
        f"catalog dataset {spec.name!r} (split {split!r}) is not prepared in {data_dir}: "
        f"run `python -m labelwise.data.prepare {spec.name} --data_dir={data_dir}` once "
        f"(needs network and `pip install 'labelwise[prepare]'`). ({type(e).__name__}: {e})"
    ) from e


class LabelRangeError(ValueError):
  """A dataset holds integer labels outside ``[0, num_classes)``."""


def check_labels(labels: np.ndarray, num_classes: int, where: str, indices=None) -> None:
  """Raises ``LabelRangeError`` unless every label is in ``[0, num_classes)`` (numpy, on the host).

  The jitted losses do not check values (``losses.softmax_cross_entropy`` would score a label of
  -1 as the last class and give NaN for a label of ``num_classes``), so the data is checked once,
  when it is read: a cached split when the dataset is built, other splits as they are read.
  """
  labels = np.asarray(labels)
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    i = int(bad[0])
    at = int(indices[i]) if indices is not None else i
    raise LabelRangeError(
        f"{where} has {bad.size} label{'s' if bad.size > 1 else ''} outside [0, {num_classes}) "
        f"(e.g. example {at}: label {int(labels[i])}). The losses would silently train on them "
        f"(under jit a label of -1 scores the last class, a label of {num_classes} gives NaN): fix "
        f"the data or the dataset's num_classes.")


@dataclasses.dataclass
class SplitData:
  """One split: random access to examples as numpy dicts (``input``, ``label``, fields, ``index``)."""
  spec: DatasetSpec
  split: str
  data_dir: str
  coarse_map: Optional[np.ndarray] = None
  cache_limit: int = 200_000
  manual_dir: Optional[str] = None

  def __post_init__(self):
    try:
      self._source = _open_source(self.spec, self.split, self.data_dir, self.manual_dir)
      self.num_examples = len(self._source)
    except (DatasetNotPreparedError, SourceFileError):  # their messages name the fix
      raise
    except Exception as e:  # noqa: BLE001 - any failure to open prepared files
      raise _read_error(self.spec, self.split, self.data_dir, e) from e
    self._cache = None
    if self.num_examples <= self.cache_limit:
      self._cache = self._read(np.arange(self.num_examples))

  def _read(self, indices: np.ndarray) -> Dict[str, np.ndarray]:
    out = {}
    for lo in range(0, len(indices), _READ_CHUNK):
      chunk = [int(i) for i in indices[lo:lo + _READ_CHUNK]]
      try:
        try:
          records = self._source.__getitems__(chunk)
        except TypeError:  # tfds.testing.mock_data's source only supports __getitem__
          records = [self._source[i] for i in chunk]
      except Exception as e:  # noqa: BLE001 - a corrupted record or file
        raise _read_error(self.spec, self.split, self.data_dir, e) from e
      cols = {"input": np.stack([r[self.spec.input_key] for r in records]),
              "label": np.asarray([r[self.spec.label_key] for r in records], np.int32)}
      for f in self.spec.fields:
        cols[f] = np.stack([np.asarray(r[f]) for r in records])
      for k, v in cols.items():
        out.setdefault(k, []).append(v)
    out = {k: np.concatenate(v) for k, v in out.items()}
    check_labels(out["label"], self.spec.num_classes, f"split {self.split!r} of dataset "
                 f"{self.spec.name!r}", np.asarray(indices))
    pre = self.spec.preprocess or (lambda x: np.asarray(x, np.float32))
    out["input"] = pre(out["input"]).astype(np.float32)
    for f in ("coarse_label",):
      if f in out:
        out[f] = out[f].astype(np.int32)
    if "soft_label" in out:
      out["soft_label"] = out["soft_label"].astype(np.float32)
    if self.coarse_map is not None and "coarse_label" not in self.spec.fields:
      out["coarse_label"] = self.coarse_map[out["label"]]
    out["index"] = np.asarray(indices, np.int32)
    return out

  def get(self, indices) -> Dict[str, np.ndarray]:
    indices = np.asarray(indices)
    if self._cache is not None:
      return {k: v[indices] for k, v in self._cache.items()}
    return self._read(indices)

  def all(self) -> Dict[str, np.ndarray]:
    return self.get(np.arange(self.num_examples))

  @property
  def cached(self) -> bool:
    return self._cache is not None

  def cached_bytes(self) -> int:
    return sum(v.nbytes for v in self._cache.values()) if self._cache is not None else 0


#: the fixed seed of the stratified validation carve-out (the same for every run and replica)
VALIDATION_SEED = 20260
FIT_SUFFIX, VALIDATION_SUFFIX = "|fit", "|validation"


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int = VALIDATION_SEED):
  """Splits ``range(len(labels))`` into (fit rows, held-out rows), stratified by label.

  Class ``c`` gives ``round(fraction * n_c)`` of its ``n_c`` examples, chosen by a permutation drawn
  from ``(seed, c)``: fixed for a dataset whatever the run's seed. Both parts are sorted.
  """
  if not 0.0 < float(fraction) < 1.0:
    raise ValueError(f"`data.validation_fraction` must be in (0, 1), got {fraction}.")
  labels = np.asarray(labels)
  held = []
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    k = int(round(float(fraction) * len(rows)))
    held.append(rows[np.random.default_rng([int(seed), int(c)]).permutation(len(rows))[:k]])
  held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
  fit = np.setdiff1d(np.arange(len(labels)), held)
  if len(held) == 0 or len(fit) == 0:
    raise ValueError(f"`data.validation_fraction`={fraction} leaves "
                     f"{len(fit)} training and {len(held)} validation examples; both must be > 0.")
  return fit, held


class SubsetSplit:
  """Rows ``rows`` of a :class:`SplitData`, renumbered: ``index`` is the position in the subset."""

  def __init__(self, parent: SplitData, rows: np.ndarray, name: str):
    self.parent, self.rows, self.split = parent, np.asarray(rows, np.int64), name
    self.spec = parent.spec
    self.num_examples = len(self.rows)
    self.cache_limit = parent.cache_limit

  def get(self, indices) -> Dict[str, np.ndarray]:
    indices = np.asarray(indices)
    out = self.parent.get(self.rows[indices])
    out["index"] = indices.astype(np.int32)
    return out

  def all(self) -> Dict[str, np.ndarray]:
    return self.get(np.arange(self.num_examples))

  @property
  def cached(self) -> bool:
    return self.parent.cached

  def cached_bytes(self) -> int:
    return self.parent.cached_bytes() * self.num_examples // max(1, self.parent.num_examples)


def _augment(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
  """Random crop (zero padding ``pad``) and horizontal flip, per image, [B, H, W, C]."""
  b, h, w = images.shape[:3]
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dy = rng.integers(0, 2 * pad + 1, size=b)
  dx = rng.integers(0, 2 * pad + 1, size=b)
  flip = rng.random(b) < 0.5
  out = np.empty_like(images)
  for i in range(b):
    crop = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    out[i] = crop[:, ::-1] if flip[i] else crop
  return out


class Dataset:
  """The data of one run: a training split and any number of eval splits, sliced for this host."""

  def __init__(self, spec: DatasetSpec, *, train_split: str, global_batch_size: int, seed: int,
               data_dir: Optional[str] = None, coarse=None, augment: bool = False,
               process_index: Optional[int] = None, process_count: Optional[int] = None,
               cache_limit: int = 200_000, manual_dir: Optional[str] = None,
               validation_fraction: float = 0.0):
    self.spec = spec
    self.data_dir = data_dir or default_data_dir()
    self.manual_dir = manual_dir or None
    self.coarse_map = registry.fine_to_coarse_map(spec, coarse)
    if self.coarse_map is None and "coarse_label" in spec.fields and spec.fine_to_coarse:
      self.coarse_map = np.asarray(spec.fine_to_coarse, np.int32)
    self.seed = int(seed)
    self.augment = bool(augment)
    self.cache_limit = cache_limit
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % self.process_count:
      raise ValueError(f"`batch_size` ({global_batch_size}) must be divisible by the number of "
                       f"processes ({self.process_count}).")
    self.global_batch_size = int(global_batch_size)
    self.local_batch_size = self.global_batch_size // self.process_count
    self._splits: Dict[str, SplitData] = {}
    self._perm_cache: Dict[int, tuple] = {}  # seed -> (epoch, permutation) of its last epoch
    self.train = self.split(train_split)
    self.validation: Optional[SubsetSplit] = None
    if validation_fraction:  # carve a fixed, stratified validation split out of the training split
      full = self.train
      fit, held = stratified_holdout(full.get(np.arange(full.num_examples))["label"],
                                     validation_fraction)
      self.train = SubsetSplit(full, fit, train_split + FIT_SUFFIX)
      self.validation = SubsetSplit(full, held, train_split + VALIDATION_SUFFIX)
      self._splits[self.train.split] = self.train
      self._splits[self.validation.split] = self.validation
    self.steps_per_epoch = self.train.num_examples // self.global_batch_size
    if self.steps_per_epoch < 1:
      raise ValueError(f"`batch_size` ({global_batch_size}) is larger than the training split "
                       f"{train_split!r} of {spec.name!r} ({self.train.num_examples} examples).")

  @property
  def num_classes(self) -> int:
    return self.spec.num_classes

  @property
  def num_coarse_classes(self) -> Optional[int]:
    return None if self.coarse_map is None else int(self.coarse_map.max()) + 1

  def check_labels(self, *splits: str) -> None:
    """Reads (and caches) ``splits`` now, so that a label outside ``[0, num_classes)`` is an error
    when the run starts rather than at its evaluation; the training split was read when built."""
    for name in splits:
      if name:
        self.split(name)

  def split(self, name: str) -> SplitData:
    if name not in self._splits:
      self._splits[name] = SplitData(self.spec, name, self.data_dir, self.coarse_map,
                                     self.cache_limit, self.manual_dir)
    return self._splits[name]

  def input_shape(self):
    return self.train.get(np.arange(1))["input"].shape[1:]

  def train_indices(self, step: int, seed: Optional[int] = None) -> np.ndarray:
    """Global example indices of training step ``step`` (all hosts).

    ``seed`` (default: the run's) gives the order of the run with that seed (a sweep's replicas).
    """
    epoch, pos = divmod(int(step), self.steps_per_epoch)
    perm = self._permutation(epoch, self.seed if seed is None else int(seed))
    return perm[pos * self.global_batch_size:(pos + 1) * self.global_batch_size]

  def _permutation(self, epoch: int, seed: int) -> np.ndarray:
    """The example order of ``epoch`` (a function of (seed, epoch); the last one per seed is kept)."""
    cache = self._perm_cache
    cached = cache.get(seed)
    if cached is None or cached[0] != epoch:
      cached = (epoch, np.random.default_rng([seed, epoch]).permutation(self.train.num_examples))
      if len(cache) >= 1024:  # a sweep has one entry per seed; bound it anyway
        cache.clear()
      cache[seed] = cached
    return cached[1]

  def local_train_indices(self, step: int, seed: Optional[int] = None) -> np.ndarray:
    """This host's slice of :meth:`train_indices`."""
    lo = self.process_index * self.local_batch_size
    return self.train_indices(step, seed)[lo:lo + self.local_batch_size]

  def train_batch(self, step: int, seed: Optional[int] = None) -> Dict[str, np.ndarray]:
    """This host's slice of the global training batch of ``step`` (of the run with ``seed``)."""
    seed = self.seed if seed is None else int(seed)
    batch = self.train.get(self.local_train_indices(step, seed))
    if self.augment and self.spec.image:
      rng = np.random.default_rng([seed, int(step), self.process_index, 1])
      batch["input"] = _augment(batch["input"], rng)
    return batch

  def eval_batches(self, split: str, batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """This host's slice of ``split`` in batches of ``batch_size``; the last one padded (valid=0)."""
    data = self.split(split)
    n = data.num_examples
    per_host = -(-n // self.process_count)
    lo, hi = self.process_index * per_host, min(n, (self.process_index + 1) * per_host)
    num_batches = max(1, -(-per_host // batch_size))  # same count on every host
    for b in range(num_batches):
      start = lo + b * batch_size
      idx = np.arange(start, min(hi, start + batch_size))
      batch = data.get(idx) if len(idx) else data.get(np.zeros(1, np.int64))
      count = len(idx)
      pad = batch_size - count
      batch = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) if pad else v
               for k, v in batch.items()}
      batch["valid"] = (np.arange(batch_size) < count).astype(np.float32)
      yield batch


def make_dataset(config, *, process_index=None, process_count=None) -> Dataset:
  """Builds the :class:`Dataset` of ``config`` (``config.dataset``, ``config.data``)."""
  spec = registry.get_dataset_spec(config.dataset)
  data = config.get("data", {})
  train_split = data.get("train_split", "train")
  return Dataset(spec, train_split=train_split, global_batch_size=config.batch_size,
                 seed=config.seed, data_dir=data.get("data_dir") or None,
                 coarse=data.get("coarse"), augment=data.get("augment", False),
                 process_index=process_index, process_count=process_count,
                 cache_limit=data.get("cache_limit", 200_000),
                 manual_dir=data.get("manual_dir") or None,
                 validation_fraction=float(data.get("validation_fraction", 0.0) or 0.0))
