"""Input pipeline: offline builders, determinism, eval coverage, catalog loaders under mock data."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from labelwise.data import make_dataset, registry
from labelwise.data.builders.digits import stratified_split
from labelwise.data.pipeline import DatasetNotPreparedError
from tests.helpers import load_config


def test_digits_split_is_stratified_and_disjoint():
  labels = np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
  train, test = stratified_split(labels, 0.2, 0)
  assert len(np.intersect1d(train, test)) == 0
  assert len(train) + len(test) == len(labels)
  for c in range(10):  # every class is split 80/20 (rounded)
    assert np.sum(labels[test] == c) == round(0.2 * np.sum(labels == c))


def test_offline_datasets_shapes():
  c = load_config("digits_ce", "runlocal")
  d = make_dataset(c)
  assert d.train.num_examples + d.split("test").num_examples == 1797
  b = d.train_batch(0)
  assert b["input"].shape == (c.batch_size, 8, 8, 1) and b["input"].dtype == np.float32
  assert 0.0 <= b["input"].min() and b["input"].max() <= 1.0
  assert b["label"].dtype == np.int32
  m = make_dataset(load_config("mnist1d_ce", "runlocal"))
  assert (m.train.num_examples, m.split("test").num_examples) == (4000, 1000)
  assert m.train_batch(0)["input"].shape == (32, 40)


def test_train_batches_depend_only_on_seed_and_step():
  c = load_config("digits_ce", "runlocal")
  d1, d2 = make_dataset(c), make_dataset(c)
  for step in (0, 7, 100):  # 100 is in a later epoch
    np.testing.assert_array_equal(d1.train_batch(step)["index"], d2.train_batch(step)["index"])
  # An epoch visits distinct examples; different steps give different batches.
  epoch = np.concatenate([d1.train_batch(s)["index"] for s in range(d1.steps_per_epoch)])
  assert len(np.unique(epoch)) == len(epoch) == d1.steps_per_epoch * c.batch_size
  c.seed = 1
  assert not np.array_equal(make_dataset(c).train_batch(0)["index"], d1.train_batch(0)["index"])


def test_each_epoch_has_its_own_order():
  """The permutation of epoch ``e`` is drawn from ``(seed, e)``: every epoch visits each example
  once, in an order of its own, and revisiting an earlier epoch gives its order back.

  Checked: with ``np.random.default_rng([self.seed, epoch])`` replaced by
  ``np.random.default_rng(self.seed)`` in ``data/pipeline.py`` the three epochs are equal and the
  test fails; the code as it is passes.
  """
  d = make_dataset(load_config("digits_ce", "runlocal"))
  n, per_epoch = d.steps_per_epoch, d.steps_per_epoch * d.global_batch_size
  def epoch(e):
    return np.concatenate([d.train_batch(e * n + s)["index"] for s in range(n)])
  orders = [epoch(e) for e in range(3)]
  for order in orders:
    assert len(np.unique(order)) == len(order) == per_epoch
  for a in range(3):
    for b in range(a + 1, 3):
      assert not np.array_equal(orders[a], orders[b]), (a, b)
  np.testing.assert_array_equal(epoch(0), orders[0])  # back to epoch 0 after the cached epoch 2


def test_eval_batches_cover_every_example_once():
  d = make_dataset(load_config("digits_ce", "runlocal"))
  n = d.split("test").num_examples
  assert n % 64  # the point of the test: not a multiple of the batch
  batches = list(d.eval_batches("test", 64))
  assert all(b["input"].shape[0] == 64 for b in batches)
  seen = np.concatenate([b["index"][b["valid"] > 0] for b in batches])
  np.testing.assert_array_equal(np.sort(seen), np.arange(n))
  assert sum(b["valid"].sum() for b in batches) == n


def test_host_slices_partition_each_global_batch():
  c = load_config("digits_ce", "runlocal")
  full = make_dataset(c).train_batch(5)["index"]
  parts = [make_dataset(c, process_index=i, process_count=2).train_batch(5)["index"]
           for i in range(2)]
  np.testing.assert_array_equal(np.concatenate(parts), full)
  evals = [np.concatenate([b["index"][b["valid"] > 0] for b in
                           make_dataset(c, process_index=i, process_count=2).eval_batches("test", 16)])
           for i in range(2)]
  np.testing.assert_array_equal(np.sort(np.concatenate(evals)), np.arange(359))


def test_coarse_maps():
  c = load_config("digits_ce", "runlocal")
  c.data.coarse = "parity"
  b = make_dataset(c).train_batch(0)
  np.testing.assert_array_equal(b["coarse_label"], b["label"] % 2)
  c.data.coarse = "nonsense"
  with pytest.raises(ValueError, match="data.coarse"):
    make_dataset(c)


def _mock_config(name):
  c = load_config("digits_ce", "runlocal")
  c.dataset = name
  c.batch_size = 4
  return c


def test_cifar100_mock_yields_coarse_label():
  with tfds.testing.mock_data(num_examples=12):
    d = make_dataset(_mock_config("cifar100"))
    b = d.train_batch(0)
  assert b["input"].shape == (4, 32, 32, 3) and b["input"].dtype == np.float32
  assert b["coarse_label"].shape == (4,)
  assert d.num_coarse_classes is not None
  assert b["coarse_label"].max() < 20 and b["label"].max() < 100


def test_cifar10_h_mock_yields_soft_label():
  c = _mock_config("cifar10_h")
  c.data.train_split = "test"  # CIFAR-10H has only the test images
  with tfds.testing.mock_data(num_examples=8):
    b = make_dataset(c).train_batch(0)
  assert b["soft_label"].shape == (4, 10) and b["soft_label"].dtype == np.float32


def test_catalog_not_prepared_names_the_prepare_command(tmp_path):
  c = _mock_config("cifar10")
  c.data.data_dir = str(tmp_path)
  with pytest.raises(DatasetNotPreparedError, match="python -m labelwise.data.prepare cifar10"):
    make_dataset(c)


def test_unknown_dataset_lists_known_ones():
  with pytest.raises(ValueError, match="known datasets: .*digits"):
    registry.get_dataset_spec("imagenet-1m")


def test_corrupted_array_record_names_the_files_and_the_fix(tmp_path):
  import glob
  import shutil
  from labelwise.data.pipeline import DataReadError, default_data_dir
  c = load_config("digits_ce", "runlocal")
  make_dataset(c)  # generated (or already cached) in the shared test data dir
  src = os.path.join(default_data_dir(), "digits")
  shutil.copytree(src, tmp_path / "digits")
  for f in glob.glob(str(tmp_path / "digits" / "*" / "*array_record*")):
    with open(f, "r+b") as fh:   # keep the size, destroy the content
      n = os.path.getsize(f)
      fh.write(b"\x00garbage" * (n // 8))
  c.data.data_dir = str(tmp_path)
  with pytest.raises(DataReadError, match=r"cannot read split 'train' of dataset 'digits' .*"
                                          r"delete .*digits and it is regenerated"):
    make_dataset(c)


def test_unreadable_image_file_names_the_file(tmp_path):
  from labelwise.data.images import UnreadableImageError, open_image
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"not a png at all")
  with pytest.raises(UnreadableImageError, match=r"cannot read image file .*broken.png.*Remove or "
                                                 r"replace the file"):
    with open_image(str(bad)):
      pass


def _shifted_and_flipped(image, augmented, pad=4):
  """The (dy, dx, flip) that turn ``image`` into ``augmented`` (zero padding ``pad``), or None."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  for dy in range(2 * pad + 1):
    for dx in range(2 * pad + 1):
      crop = padded[dy:dy + h, dx:dx + w]
      for flip in (False, True):
        if np.array_equal(crop[:, ::-1] if flip else crop, augmented):
          return dy, dx, flip
  return None


def test_augmentation_is_a_random_crop_and_flip_of_each_image():
  """Each augmented image is its original shifted by at most 4 pixels (zero padding) and maybe
  mirrored; shifts and flips vary over the batch; the same (seed, step) gives the same images."""
  c = load_config("digits_ce", "runlocal")
  plain = make_dataset(c)
  c.data.augment = True
  aug, again = make_dataset(c), make_dataset(c)
  b0, b1 = plain.train_batch(3), aug.train_batch(3)
  np.testing.assert_array_equal(b0["index"], b1["index"])
  np.testing.assert_array_equal(again.train_batch(3)["input"], b1["input"])
  found = [_shifted_and_flipped(x, y) for x, y in zip(b0["input"], b1["input"])]
  assert all(f is not None for f in found)
  assert len({f[:2] for f in found}) > 5 and {f[2] for f in found} == {False, True}
  assert not np.array_equal(aug.train_batch(4)["input"], plain.train_batch(4)["input"])


def test_uncached_split_reads_the_same_examples_in_chunks(monkeypatch):
  """``cache_limit`` below the split size reads from the files on every call (in chunks of
  ``_READ_CHUNK`` records): the same batches as the cached split."""
  from labelwise.data import pipeline
  c = load_config("digits_ce", "runlocal")
  cached = make_dataset(c)
  c.data.cache_limit = 10
  monkeypatch.setattr(pipeline, "_READ_CHUNK", 7)
  uncached = make_dataset(c)
  assert cached.train.cached and not uncached.train.cached
  assert uncached.train.cached_bytes() == 0
  assert cached.train.cached_bytes() == sum(v.nbytes for v in cached.train.all().values())
  for step in (0, 30):
    a, b = cached.train_batch(step), uncached.train_batch(step)
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
      assert a[k].dtype == b[k].dtype


def test_eval_padding_repeats_the_last_example_with_valid_zero():
  d = make_dataset(load_config("digits_ce", "runlocal"))
  n = d.split("test").num_examples
  last = list(d.eval_batches("test", 64))[-1]
  count = n % 64
  np.testing.assert_array_equal(last["valid"], (np.arange(64) < count).astype(np.float32))
  assert last["valid"].dtype == np.float32
  np.testing.assert_array_equal(last["index"][count:], np.full(64 - count, n - 1))
  np.testing.assert_array_equal(last["input"][count:], np.repeat(last["input"][count - 1:count],
                                                                  64 - count, axis=0))
  # Two hosts, a batch larger than each slice: one padded batch each, every example once.
  hosts = [list(make_dataset(load_config("digits_ce", "runlocal"), process_index=i,
                             process_count=2).eval_batches("test", 512)) for i in range(2)]
  assert [len(h) for h in hosts] == [1, 1]
  assert sum(float(b["valid"].sum()) for h in hosts for b in h) == n


def test_batch_size_errors_name_the_argument():
  c = load_config("digits_ce", "runlocal")
  c.batch_size = 33
  with pytest.raises(ValueError, match=r"`batch_size` \(33\) must be divisible by the number of "
                                       r"processes \(2\)"):
    make_dataset(c, process_index=0, process_count=2)
  c.batch_size = 4096
  with pytest.raises(ValueError, match=r"`batch_size` \(4096\) is larger than the training split"):
    make_dataset(c)
  c.batch_size = 1438  # exactly the training split: one step per epoch
  assert make_dataset(c).steps_per_epoch == 1


def test_augmentation_covers_every_shift_and_both_flips():
  """On dense random images (each crop is then unique): every shift 0..2*pad in both directions
  occurs, and about half of the images are mirrored."""
  from labelwise.data import pipeline
  rng = np.random.default_rng(0)
  images = (rng.random((300, 5, 5, 2)) + 0.5).astype(np.float32)
  out = pipeline._augment(images, np.random.default_rng(1), pad=2)
  found = [_shifted_and_flipped(x, y, pad=2) for x, y in zip(images, out)]
  assert all(f is not None for f in found)
  assert {f[0] for f in found} == set(range(5)) and {f[1] for f in found} == set(range(5))
  assert 0.4 < np.mean([f[2] for f in found]) < 0.6


def test_default_data_dir_is_tfds_data_dir_else_home(monkeypatch, tmp_path):
  from labelwise.data.pipeline import default_data_dir
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  assert default_data_dir() == str(tmp_path)
  monkeypatch.delenv("TFDS_DATA_DIR")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert default_data_dir() == str(tmp_path / "home" / "tensorflow_datasets")


def test_input_shape_is_one_example_without_the_batch_axis():
  assert make_dataset(load_config("digits_ce", "runlocal")).input_shape() == (8, 8, 1)
  assert make_dataset(load_config("mnist1d_ce", "runlocal")).input_shape() == (40,)


def test_train_indices_are_one_global_batch_per_step():
  c = load_config("digits_ce", "runlocal")
  d = make_dataset(c)
  steps = [d.train_indices(s) for s in range(d.steps_per_epoch)]
  assert all(len(i) == c.batch_size for i in steps)
  epoch = np.concatenate(steps)
  assert len(np.unique(epoch)) == len(epoch)


# --- found by mutation testing (docs/testing.md, third pass) -----------------------------------
def test_check_labels_finds_negative_and_too_large_labels_and_names_the_row():
  from labelwise.data.pipeline import LabelRangeError, check_labels
  check_labels(np.array([0, 2, 1]), 3, "split 'x'")  # in range: nothing
  with pytest.raises(LabelRangeError, match=r"split 'x' has 1 label outside \[0, 3\) \(e.g. "
                                            r"example 1: label -1\)"):
    check_labels(np.array([0, -1, 2]), 3, "split 'x'")
  with pytest.raises(LabelRangeError, match=r"has 1 label outside \[0, 3\) \(e.g. example 2: "
                                            r"label 3\)"):
    check_labels(np.array([0, 1, 3]), 3, "split 'x'")
  # with ``indices`` (a chunk of a split) the message names the example's row in the split
  with pytest.raises(LabelRangeError, match=r"has 2 labels outside \[0, 3\) \(e.g. example 11: "
                                            r"label -2\)"):
    check_labels(np.array([1, -2, 5]), 3, "split 'x'", indices=np.array([10, 11, 12]))


def test_dataset_check_labels_reads_each_named_split():
  d = make_dataset(load_config("digits_ce", "runlocal"))
  read, real = [], d.split
  d.split = lambda name: read.append(name) or real(name)
  d.check_labels("test", "", None, "train")
  assert read == ["test", "train"]  # empty names (an unset eval split) are skipped


def test_the_permutation_cache_is_bounded_at_1024_seeds():
  """A sweep keeps one epoch order per seed; past 1024 seeds the cache starts again. Orders are
  those of ``default_rng([seed, epoch])`` whatever the cache holds."""
  d = make_dataset(load_config("digits_ce", "runlocal"))
  n = d.train.num_examples
  for seed in range(1024):
    d._permutation(0, seed)
  assert len(d._perm_cache) == 1024
  np.testing.assert_array_equal(d._permutation(0, 1024),
                                np.random.default_rng([1024, 0]).permutation(n))
  assert list(d._perm_cache) == [1024]
  np.testing.assert_array_equal(d._permutation(1, 5), np.random.default_rng([5, 1]).permutation(n))


def test_a_dataset_does_not_augment_unless_asked():
  from labelwise.data.pipeline import Dataset
  c = load_config("digits_ce", "runlocal")
  plain = Dataset(registry.get_dataset_spec(c.dataset), train_split="train",
                  global_batch_size=c.batch_size, seed=c.seed)
  b = plain.train_batch(2)
  np.testing.assert_array_equal(b["input"], plain.train.get(b["index"])["input"])


def test_an_offline_dataset_is_generated_in_an_empty_data_dir(tmp_path):
  c = load_config("digits_ce", "runlocal")
  shared = make_dataset(c)
  c.data.data_dir = str(tmp_path / "fresh")
  fresh = make_dataset(c)
  assert os.listdir(tmp_path / "fresh")
  np.testing.assert_array_equal(fresh.train_batch(1)["input"], shared.train_batch(1)["input"])


def test_first_generation_logs_no_tfds_variant_warning(tmp_path, monkeypatch):
  """A fresh data dir: the offline builder is generated without TFDS's misleading "Variant folder
  ... has no dataset_info.json" warning (TFDS's is_prepared() logs it for a folder that does not
  exist yet); a prepared one is reused."""
  from tensorflow_datasets.core.utils import file_utils
  warnings = []
  monkeypatch.setattr(file_utils.logging, "warning", lambda msg, *a, **k: warnings.append(msg % a))
  c = load_config("digits_ce", "runlocal")
  c.data.data_dir = str(tmp_path)
  ds = make_dataset(c)
  assert ds.split("train").num_examples > 0
  assert not [w for w in warnings if "dataset_info.json" in w], warnings
  assert os.path.isfile(os.path.join(str(tmp_path), "digits", "1.0.0", "dataset_info.json"))
