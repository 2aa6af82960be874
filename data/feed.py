"""Feeding training batches to the compiled step: the device-resident split or a prefetching thread.

Two feeds give the same batches (the host pipeline's: same permutation, same fields) with
``next() -> (step, batch)`` and ``close()``:

* :class:`DeviceFeed` (``config.data.device_cache``, see :func:`device_cache_choice`): the cached
  training split is placed once on every device (:class:`DeviceSplit`) and each step's batch is
  gathered there. A step's batch is just its indices (:class:`Indices`) and the compiled step
  gathers the examples itself (``Parallel.gathers_in_step``); only under multi-process pmap the
  split's jitted gather builds the ``[devices, per-device batch, ...]`` batch first.
* :class:`Prefetcher`: host batches read and placed on a background thread, a few steps ahead.

``parallel`` below is a :class:`labelwise.train.step.Parallel` (its ``mode``, meshes and shardings).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Dict, Tuple

import jax
import numpy as np

#: ``device_cache="auto"`` places a cached split on the devices up to this size.
DEVICE_CACHE_MAX_BYTES = 512 * 2**20
DEVICE_CACHE_MODES = ("auto", "on", "off", True, False)


def device_cache_choice(mode, dataset) -> Tuple[bool, str]:
  """``(on, why)``: whether the training batches of ``dataset`` are gathered on the devices.

  Args:
    mode: ``config.data.device_cache``: ``"auto"``, ``"on"`` (an error if not possible) or ``"off"``.
    dataset: a :class:`labelwise.data.pipeline.Dataset`.
  """
  if mode not in DEVICE_CACHE_MODES:
    raise ValueError(f"config.data.device_cache must be 'auto', 'on' or 'off', got {mode!r}")
  if mode in ("off", False):
    return False, "off in the config"
  why_not = None
  if not dataset.train.cached:
    why_not = (f"the training split ({dataset.train.num_examples} examples) is not cached in "
               f"memory (data.cache_limit {dataset.train.cache_limit})")
  elif dataset.augment and dataset.spec.image:
    why_not = "augmentation runs on the host (data.augment)"
  elif jax.process_count() > 1:
    why_not = "several processes (each host reads its own slice)"
  elif dataset.train.cached_bytes() > DEVICE_CACHE_MAX_BYTES and mode == "auto":
    why_not = (f"the cached split is {dataset.train.cached_bytes() / 2**20:.0f} MiB "
               f"(> {DEVICE_CACHE_MAX_BYTES / 2**20:.0f} MiB for 'auto')")
  if why_not is None:
    return True, "on"
  if mode in ("on", True):
    raise ValueError(f"config.data.device_cache='on' is not possible here: {why_not}.")
  return False, why_not


class Prefetcher:
  """Reads and places the batches of steps ``start..stop-1`` on a background thread.

  ``make_batch(step)`` runs on the thread; at most ``depth`` finished batches wait in the queue. An
  exception in ``make_batch`` is raised by the ``next()`` that would have returned its batch.
  """

  def __init__(self, make_batch: Callable[[int], object], start: int, stop: int, depth: int = 2):
    self._q: "queue.Queue" = queue.Queue(maxsize=depth)
    self._stop = threading.Event()

    def work():
      try:
        for s in range(start, stop):
          if self._stop.is_set():
            return
          self._q.put((s, make_batch(s)))
      except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
        self._q.put((None, e))

    self._thread = threading.Thread(target=work, daemon=True)
    self._thread.start()

  def next(self, max_steps: int = 1):  # noqa: ARG002 - one host batch is one step
    """``(step, batch)``: one step's placed batch (``max_steps`` is ignored)."""
    step, batch = self._q.get()
    if step is None:
      raise batch
    return step, batch

  def close(self):
    self._stop.set()
    while not self._q.empty():
      self._q.get_nowait()


#: :class:`DeviceFeed` places the example indices of this many consecutive steps at once.
BLOCK_STEPS = 64


class Indices:
  """The batches of one call as example indices, for a step that gathers its batch itself.

  ``block``: the placed indices of the consecutive steps from ``start`` (a placed int32 scalar) that
  include this call's (:func:`labelwise.train.step.gather_batch` reads the row of ``state.step``);
  ``step``: the call's first step (its row is ``step - start``); ``steps``: how many consecutive
  steps the call runs (all inside the block), ``count`` the same as a placed int32 scalar (for
  ``Parallel.compile_train_step(..., loop=True)``).
  """

  def __init__(self, block, start, step: int, steps: int = 1, count=None):
    self.block, self.start, self.step, self.steps, self.count = block, start, step, steps, count


class DeviceSplit:
  """A (relabelled) cached training split, placed once on every device, and its batch gather.

  ``gather(data, idx)`` builds a step's batch on the devices with the layout the step takes
  (``[devices, per-device batch, ...]`` on the local devices under pmap, the batch sharding
  otherwise); ``index_sharding`` is where the step's indices go for it.

  Args:
    data: ``{field: [num_examples, ...]}`` numpy arrays of the whole split.
    parallel: the run's ``Parallel``.
    local_batch_size: this host's batch (divisible by its devices under pmap).
  """

  def __init__(self, data: Dict[str, np.ndarray], parallel, local_batch_size: int):
    if parallel.mode == "pmap":  # pmap takes [devices, per-device batch, ...] on the local devices
      n = len(parallel.local_devices)
      if local_batch_size % n:
        raise ValueError(f"the per-host batch ({local_batch_size}) must be divisible by the "
                         f"number of local devices ({n}).")
      place = jax.sharding.NamedSharding(parallel.local_mesh, jax.sharding.PartitionSpec())
      out, self.index_sharding = parallel.stacked, place
      take = lambda v, idx: parallel.split_for_pmap(v[idx])  # noqa: E731
    else:
      place, out = parallel.replicated, parallel.batch_sharding
      self.index_sharding = parallel.batch_sharding
      take = lambda v, idx: v[idx]  # noqa: E731
    self.data = jax.device_put(data, place)
    self.place = place  # of the whole split (and of a block's start step)
    self.gather = jax.jit(lambda data, idx: jax.tree_util.tree_map(lambda v: take(v, idx), data),
                          out_shardings=out)


class DeviceFeed:
  """Training batches gathered on the devices from the cached training split (:class:`DeviceSplit`).

  A step's ``batch`` is its indices (:class:`Indices`): the indices of :data:`BLOCK_STEPS`
  consecutive steps are placed at once and the compiled step picks its own row and gathers the
  examples itself (``Parallel.compile_train_step(..., on_data=True)``): one dispatch per call (of
  up to ``max_steps`` steps of one block, see :meth:`next`), one transfer per block, no thread. Under
  multi-process pmap (``not parallel.gathers_in_step``) the split's jitted gather builds the
  ``[devices, per-device batch, ...]`` batch on the devices first. Either way the batches are the
  host pipeline's batches exactly (``gathered`` returns one for inspection).

  Args:
    dataset: the run's ``Dataset`` (``local_train_indices(step)``: this host's example indices).
    parallel: the run's ``Parallel``.
    split: the placed split.
    start, stop: the steps ``start..stop-1``.
    replicas: the run's ``train.sweep`` replicas (``batch(fn, step)``: one index row per replica).
  """

  def __init__(self, dataset, parallel, split: DeviceSplit, start: int, stop: int, replicas):
    self._dataset, self._parallel, self._split = dataset, parallel, split
    self._step, self._stop, self._replicas = start, stop, replicas
    self._block = None  # (placed block, placed start, start) of the steps being fed
    self._counts: Dict[int, object] = {}  # call length -> the placed int32 scalar

  def _indices(self, step: int) -> np.ndarray:
    """This step's example indices: ``[B]``, or ``[R, B]`` (each replica's seed) in a sweep."""
    return self._replicas.batch(
        lambda s, seed: self._dataset.local_train_indices(s, seed).astype(np.int32), step)

  def gathered(self, step: int):
    """The device batch of ``step`` (what the step sees), as the pmap path builds it."""
    idx = jax.device_put(self._indices(step), self._split.index_sharding)
    return self._split.gather(self._split.data, idx)

  def _place_block(self, start: int) -> None:
    """Places the indices of steps ``start..start + BLOCK_STEPS - 1`` (rows past the last step
    repeat it: every block has one shape, so the step compiles once)."""
    par = self._parallel
    rows = [self._indices(s) for s in range(start, min(start + BLOCK_STEPS, self._stop))]
    rows += [rows[-1]] * (BLOCK_STEPS - len(rows))
    if par.mode == "pmap":  # [devices, steps, per-device batch] ([devices, steps, R, ...] in a sweep)
      block = np.stack([np.asarray(par.split_for_pmap(r)) for r in rows], axis=1)
      block = jax.device_put(block, par.stacked)
    else:  # [steps, batch] ([steps, R, batch]) sharded over the mesh on the batch axis
      block = jax.device_put(np.stack(rows), par.block_sharding)
    self._block = (block, jax.device_put(np.int32(start), self._split.place), start)

  def next(self, max_steps: int = 1):
    """``(step, batch)`` of the next call: ``batch.steps`` consecutive steps from ``step``, at most
    ``max_steps``, never past the current index block or ``stop`` (a gathered batch of one step
    under multi-process pmap)."""
    if self._step >= self._stop:
      raise StopIteration
    step = self._step
    if not self._parallel.gathers_in_step:  # multi-process pmap: gather first, then the step
      self._step += 1
      return step, self.gathered(step)
    if self._block is None or step >= self._block[2] + BLOCK_STEPS:
      self._place_block(step)
    block, start, first = self._block
    n = max(1, min(int(max_steps), first + BLOCK_STEPS - step, self._stop - step))
    self._step += n
    if n not in self._counts:
      self._counts[n] = jax.device_put(np.int32(n), self._split.place)
    return step, Indices(block, start, step, n, self._counts[n])

  def close(self):
    pass
