"""Training batches gathered on the devices (``data.device_cache``) are the host pipeline's batches.

The device feed exists for speed (benchmarks/pipeline.py); these tests pin what it must not change:
the batches (fields, values, order, relabelling, epoch boundaries), the trained parameters and
logged metrics (bit for bit), and when it is used (with a reason when it is not).
"""

import jax
import numpy as np
import pytest

from labelwise.data import feed as feed_lib
from labelwise.train import trainer
from labelwise.train.writers import read_metrics
from tests.helpers import load_config


def _cfg(**kw):
  kw = {"total_steps": 12, "log_every": 1, "progress_bar": False, "tensorboard": False,
        "checkpoint_every": -1, "batch_size": 128, **kw}
  return load_config("digits_ce", "runlocal", **kw)


@pytest.mark.parametrize("overrides", [{}, {"data__coarse": "parity",
                                            "data__train_on": "coarse_label"}])
def test_device_batches_equal_host_batches(tmp_path, overrides):
  t = trainer.Trainer(_cfg(**overrides), str(tmp_path))
  assert t.device_cache and t.device_cache_reason == "on"
  per_epoch = t.dataset.steps_per_epoch
  steps = [0, 1, per_epoch - 1, per_epoch, per_epoch + 1]  # across an epoch boundary
  feed = t.batch_feed(0, per_epoch + 2)
  got = {}
  for _ in range(per_epoch + 2):
    s, _ = feed.next()
    got[s] = feed.gathered(s)
  with pytest.raises(StopIteration):
    feed.next()
  for s in steps:
    host = t.host_batch(s)
    dev = jax.device_get(got[s])
    assert set(dev) == set(host), s
    for k in host:  # (under pmap the device batch is [devices, per-device batch, ...])
      assert dev[k].dtype == host[k].dtype, (s, k)
      np.testing.assert_array_equal(dev[k].reshape(host[k].shape), host[k],
                                    err_msg=f"step {s} field {k}")
  if overrides:
    assert "fine_label" in got[0]
  # One compiled gather for every step.
  assert t._device_split.gather._cache_size() == 1


@pytest.mark.parametrize("parallel,devices,block,sweep", [
    ("pmap", 2, 64, ""), ("shard_map", 2, 64, ""), ("jit", 1, 64, ""),
    ("pmap", 2, 5, ""), ("shard_map", 1, 5, "seed=0,1"), ("jit", 2, 5, "seed=3,1")])
def test_device_feed_trains_bit_identically_to_the_host_feed(tmp_path, monkeypatch, parallel,
                                                             devices, block, sweep):
  """The step gathers its batch from the device-resident split (several steps per call, the
  indices of ``block`` steps placed at once: 12 steps are one padded block, or 3 blocks with a
  padded last one), in all three modes (pmap: one process, see ``Parallel.pmap_through_jit``),
  single runs and sweeps, against host batches fed one step per call."""
  monkeypatch.setattr(feed_lib, "BLOCK_STEPS", block)
  runs = {}
  for mode in ("on", "off"):
    t = trainer.Trainer(_cfg(data__device_cache=mode, parallel=parallel, num_devices=devices,
                             sweep=sweep), str(tmp_path / mode))
    assert t.device_cache == (mode == "on")
    assert (t.train_step_on_data is not None) == (mode == "on")
    results = t.run()
    logged = [{k: v for k, v in m.items() if k != "train/examples_per_sec"}
              for m in read_metrics(str(tmp_path / mode))]
    runs[mode] = (jax.tree_util.tree_leaves(t.host_state.params), results, logged)
    if t.train_step_on_data is not None:  # compiled once for all steps (and calls)
      assert t.steps_per_call == 16  # auto: several steps per call, one looped program
      assert t.train_steps_on_data._cache_size() == 1 and t.train_step_on_data._cache_size() == 0
  for a, b in zip(runs["on"][0], runs["off"][0]):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert runs["on"][1] == runs["off"][1] and runs["on"][2] == runs["off"][2]


def test_when_the_device_feed_is_used(tmp_path):
  t = trainer.Trainer(_cfg(data__cache_limit=0), str(tmp_path / "b"))
  assert not t.device_cache and "not cached" in t.device_cache_reason
  t = trainer.Trainer(_cfg(data__device_cache="off"), str(tmp_path / "c"))
  assert not t.device_cache and t.device_cache_reason == "off in the config"
  with pytest.raises(ValueError, match=r"config.data.device_cache='on' is not possible here: "
                                       r"augmentation runs on the host"):
    trainer.Trainer(_cfg(data__augment=True, data__device_cache="on"), str(tmp_path / "d"))
  with pytest.raises(ValueError, match="config.data.device_cache must be 'auto', 'on' or 'off', "
                                       "got 'yes'"):
    trainer.Trainer(_cfg(data__device_cache="yes"), str(tmp_path / "e"))
  # On 2 devices the gathered batch is laid out and sharded like the host one.
  for parallel in ("shard_map", "pmap", "jit"):
    t = trainer.Trainer(_cfg(parallel=parallel, num_devices=2), str(tmp_path / parallel))
    assert t.device_cache, parallel
    batch = t.batch_feed(0, 1).gathered(0)
    ref = t.parallel.put_batch(t.host_batch(0))
    for k in ref:
      assert batch[k].sharding.is_equivalent_to(ref[k].sharding, batch[k].ndim), (parallel, k)
      np.testing.assert_array_equal(jax.device_get(batch[k]), jax.device_get(ref[k]))
