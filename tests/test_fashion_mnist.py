"""Fashion-MNIST from IDX files: tiny files written here (no Debian package needed), splits, long
tail, coarse groupings, the decoy variant, and the errors for missing, corrupt and wrong files."""

import contextlib
import gzip
import os

import numpy as np
import pytest

from labelwise.configs import common
from labelwise.data import make_dataset
from labelwise.data.builders import fashion_mnist as fm
from labelwise.data.builders import fashion_mnist_decoy as decoy
from labelwise.data.sources import SourceFileError, sha256_hex

TRAIN_PER_CLASS, TEST_PER_CLASS = 24, 6


def idx_bytes(array: np.ndarray, *, count=None) -> bytes:
  """An IDX file by hand: 0, 0, type 0x08, ndim, big-endian int32 sizes, uint8 data."""
  sizes = list(array.shape)
  if count is not None:
    sizes[0] = count
  header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in sizes)
  return header + np.asarray(array, np.uint8).tobytes()


def make_images(labels, first_id, rng):
  """Garment-like images: zero border of 6 px (corners empty), random interior, and a unique id
  written into pixels (13, 13) and (13, 14)."""
  n = len(labels)
  images = np.zeros((n, 28, 28), np.uint8)
  images[:, 6:22, 6:22] = rng.randint(1, 256, size=(n, 16, 16))
  ids = np.arange(first_id, first_id + n)
  images[:, 13, 13], images[:, 13, 14] = ids % 256, ids // 256
  return images


def image_ids(images):
  """The ids written by make_images, from uint8 or [0, 1]-scaled or standardized images."""
  return images[:, 13, 13].astype(int) + 256 * images[:, 13, 14].astype(int)


def write_files(folder, *, gz=True, arrays=None, counts=None):
  """Writes the four files into ``folder``; returns the arrays and the content sha256s."""
  rng = np.random.RandomState(0)
  if arrays is None:
    train_labels = rng.permutation(np.repeat(np.arange(10), TRAIN_PER_CLASS)).astype(np.uint8)
    test_labels = rng.permutation(np.repeat(np.arange(10), TEST_PER_CLASS)).astype(np.uint8)
    arrays = {"train_images": make_images(train_labels, 0, rng), "train_labels": train_labels,
              "test_images": make_images(test_labels, 1000, rng), "test_labels": test_labels}
  os.makedirs(folder, exist_ok=True)
  sha = {}
  for key, name in fm.FILES.items():
    data = idx_bytes(arrays[key], count=(counts or {}).get(key))
    sha[name] = sha256_hex(data)
    if gz:
      with gzip.open(os.path.join(folder, name + ".gz"), "wb") as f:
        f.write(data)
    else:
      with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
  return arrays, sha


@contextlib.contextmanager
def accepted(sha):
  """The checksums of the files written here stand in for the published ones."""
  with pytest.MonkeyPatch.context() as mp:
    for name, digest in sha.items():
      mp.setitem(fm.RAW_SHA256, name, digest)
    yield mp


@pytest.fixture
def no_debian(monkeypatch):
  """The Debian package's folder is not looked at (the tests must not depend on this machine)."""
  monkeypatch.setattr(fm, "debian_folder", lambda: None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """Tiny files and both datasets generated once from them (their checksums accepted while the
  datasets are generated; once generated, the files are not read again)."""
  root = tmp_path_factory.mktemp("fashion")
  out = {}
  arrays, sha = write_files(str(root / "files"))
  with accepted(sha) as mp:
    mp.setattr(fm, "debian_folder", lambda: None)
    for dataset in ("fashion_mnist", "fashion_mnist_decoy"):
      c = common.base_config(dataset=dataset, model="small_cnn")
      c.data.data_dir, c.data.manual_dir = str(root / "tfds"), str(root / "files")
      c.batch_size = 8
      out[dataset] = (c, make_dataset(c))
  return arrays, out


def test_splits_follow_the_files(tiny):
  arrays, datasets = tiny
  _, d = datasets["fashion_mnist"]
  x, y = arrays["train_images"], arrays["train_labels"]
  parts = {s: d.split(s).all() for s in ("train", "validation", "test")}
  # validation: 1/12 of each class (24 -> 2), train: the rest, test: all test images.
  assert [parts[s]["input"].shape[0] for s in ("train", "validation", "test")] == [220, 20, 60]
  np.testing.assert_array_equal(np.bincount(parts["validation"]["label"]), [2] * 10)
  np.testing.assert_array_equal(np.bincount(parts["train"]["label"]), [22] * 10)
  # Pixels and labels are the files', standardized with the published mean and std.
  for split, (images, labels, first) in {"train": (x, y, 0), "validation": (x, y, 0),
                                        "test": (arrays["test_images"], arrays["test_labels"],
                                                 1000)}.items():
    p = parts[split]
    raw = np.rint((p["input"][..., 0] * 0.3530 + 0.2860) * 255).astype(np.int64)
    ids = image_ids(raw) - first
    np.testing.assert_array_equal(raw, images[ids])
    np.testing.assert_array_equal(p["label"], labels[ids])
    assert p["input"].shape[1:] == (28, 28, 1) and p["input"].dtype == np.float32
    parts[split]["ids"] = ids
  train_ids, val_ids = parts["train"]["ids"], parts["validation"]["ids"]
  assert len(np.intersect1d(train_ids, val_ids)) == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([train_ids, val_ids])), np.arange(240))
  np.testing.assert_array_equal(np.sort(parts["test"]["ids"]), np.arange(60))


def test_long_tail_counts_hand_numbers():
  # 5500 * rho^(-c/9): rho=100 -> 5500 * 10^(-2c/9); c=1: 5500 * 0.59948 = 3297.1
  np.testing.assert_array_equal(fm.long_tail_counts(5500, 100),
                                [5500, 3297, 1976, 1184, 710, 425, 255, 153, 91, 55])
  np.testing.assert_array_equal(fm.long_tail_counts(5500, 10),
                                [5500, 4258, 3297, 2552, 1976, 1530, 1184, 917, 710, 550])
  assert fm.long_tail_counts(22, 100)[-1] == 1  # 0.22 -> at least one example


def test_long_tailed_splits(tiny):
  _, datasets = tiny
  _, d = datasets["fashion_mnist"]
  ids = {}
  for split, counts in {"train_lt10": [22, 17, 13, 10, 7, 6, 4, 3, 2, 2],
                        "train_lt100": [22, 13, 7, 4, 2, 1, 1, 1, 1, 1]}.items():
    p = d.split(split).all()
    np.testing.assert_array_equal(np.bincount(p["label"], minlength=10), counts)
    raw = np.rint((p["input"][..., 0] * 0.3530 + 0.2860) * 255).astype(np.int64)
    ids[split] = image_ids(raw)
  train = image_ids(np.rint((d.split("train").all()["input"][..., 0] * 0.3530 + 0.2860) * 255))
  assert set(ids["train_lt100"]) <= set(ids["train_lt10"]) <= set(train)
  # Balanced evaluation splits stay as they are.
  np.testing.assert_array_equal(np.bincount(d.split("test").all()["label"]), [6] * 10)


def test_real_split_sizes_from_the_published_label_counts():
  labels = np.repeat(np.arange(10), 6000)
  s = fm.split_indices(np.random.RandomState(1).permutation(labels))
  assert {k: len(v) for k, v in s.items()} == {
      "train": 55000, "validation": 5000, "train_lt10": 22474, "train_lt100": 13646}


def test_coarse_groupings(tiny):
  _, datasets = tiny
  c = datasets["fashion_mnist"][0].copy_and_resolve_references()
  names = fm.CLASS_NAMES
  groups = {"hcnn6": [{"T-shirt/top", "Pullover", "Shirt"}, {"Trouser"}, {"Dress"}, {"Coat"},
                      {"Bag"}, {"Sandal", "Sneaker", "Ankle boot"}],
            "clothes_goods": [{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Shirt"},
                              {"Sandal", "Sneaker", "Bag", "Ankle boot"}]}
  for coarse in ("hcnn6", "clothes_goods", "dataset"):
    c.data.coarse = coarse
    d = make_dataset(c)
    b = d.split("train").all()
    expected = [next(g for g, members in enumerate(groups[coarse if coarse != "dataset" else
                                                          "hcnn6"]) if names[y] in members)
                for y in b["label"]]
    np.testing.assert_array_equal(b["coarse_label"], expected)
    assert d.num_coarse_classes == (2 if coarse == "clothes_goods" else 6)
  # The groupings are Fashion-MNIST's own: another dataset refuses them.
  other = common.base_config(dataset="digits", model="mlp")
  other.data.coarse = "hcnn6"
  with pytest.raises(ValueError, match="data.coarse.*'halves'"):
    make_dataset(other)


def test_add_decoy_by_hand():
  img = np.full((1, 28, 28), 7, np.uint8)       # a garment reaching every corner
  out, mask, corners, shade_labels = decoy.add_decoy(img, np.array([3]), shade_from="label", seed=0)
  rows, cols = decoy.corner_slices(int(corners[0]))
  patch = np.zeros((28, 28), bool)
  patch[rows, cols] = True
  assert patch.sum() == 16 and (patch[:4, :4].all() or patch[:4, 24:].all() or
                                patch[24:, :4].all() or patch[24:, 24:].all())
  np.testing.assert_array_equal(out[0][patch], 255 - 25 * 3)
  np.testing.assert_array_equal(out[0][~patch], 7)
  np.testing.assert_array_equal(mask[0], ~patch)   # the silhouette minus the patch
  assert shade_labels[0] == 3
  with pytest.raises(ValueError, match="shade_from"):
    decoy.add_decoy(img, np.array([3]), shade_from="label_noise", seed=0)


def test_decoy_dataset(tiny):
  arrays, datasets = tiny
  _, d = datasets["fashion_mnist_decoy"]
  corners = [decoy.corner_slices(k) for k in range(4)]
  for split, source, shade_from in (("train", "train", "label"), ("valid_shift", "train", "random"),
                                    ("test_id", "test", "label"), ("test_shift", "test", "random"),
                                    ("test_nodistractor", "test", None)):
    p = d.split(split).all()
    raw = np.rint(p["input"][..., 0] * 255).astype(np.int64)
    originals = arrays[f"{source}_images"][image_ids(raw) - (1000 if source == "test" else 0)]
    shades = []
    for i in range(len(raw)):
      changed = raw[i] != originals[i]
      if shade_from is None:
        assert not changed.any()
      else:   # exactly one 4x4 corner differs from the original (whose corners are empty)
        hits = [k for k, (r, c) in enumerate(corners) if changed[r, c].all()]
        assert len(hits) == 1 and changed.sum() == 16
        r, c = corners[hits[0]]
        assert len(np.unique(raw[i][r, c])) == 1
        shades.append(int(raw[i][r, c][0, 0]))
      np.testing.assert_array_equal(p["mask"][i], (originals[i] > 0) & ~changed)
    if shade_from == "label":
      np.testing.assert_array_equal(shades, 255 - 25 * p["label"])
    elif shade_from == "random":
      assert set(shades) <= set(255 - 25 * np.arange(10))
      assert np.mean(np.array(shades) == 255 - 25 * p["label"]) < 0.5
  assert d.split("valid_id").num_examples == 20 and d.split("test_shift").num_examples == 60


# ------------------------------------------------------------------------------------- errors


def test_missing_file_names_it_and_both_ways(tmp_path, no_debian):
  files = tmp_path / "files"
  write_files(str(files))
  os.remove(files / "t10k-labels-idx1-ubyte.gz")
  c = common.base_config(dataset="fashion_mnist", model="small_cnn")
  c.data.data_dir, c.data.manual_dir = str(tmp_path / "tfds"), str(files)
  with pytest.raises(SourceFileError, match=r"t10k-labels-idx1-ubyte.gz missing in the manual "
                                            r"folder .*apt-get install dataset-fashion-mnist.*"
                                            r"--config.data.manual_dir"):
    make_dataset(c)   # passes through the pipeline unchanged (not a DataReadError)
  with pytest.raises(SourceFileError, match=r"train-images-idx3-ubyte.gz .* not found; looked in "
                                            r"the manual folder \(none: not set.*dpkg -L"):
    fm.load_arrays(None)


def test_corrupt_file_is_refused_naming_it(tmp_path, no_debian):
  files = str(tmp_path / "files")
  write_files(files, gz=False)                      # published checksums: these files differ
  with pytest.raises(SourceFileError, match=r"train-images-idx3-ubyte has the wrong content: "
                                            r"sha256 .* published file's is c59f468a"):
    fm.load_arrays(files)
  _, sha = write_files(files, gz=False)
  with accepted(sha):
    fm.load_arrays(files)                           # accepted as written
    path = os.path.join(files, "t10k-images-idx3-ubyte")
    data = bytearray(open(path, "rb").read())
    data[5000] ^= 0xFF                              # one byte flipped
    open(path, "wb").write(bytes(data))
    with pytest.raises(SourceFileError, match=r"t10k-images-idx3-ubyte has the wrong content"):
      fm.load_arrays(files)


def test_truncated_gzip_is_refused_naming_it(tmp_path, no_debian):
  files = str(tmp_path / "files")
  write_files(files)
  path = os.path.join(files, "train-images-idx3-ubyte.gz")   # the first file read
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])
  with pytest.raises(SourceFileError, match=r"cannot read .*train-images-idx3-ubyte.gz.*truncated"):
    fm.load_arrays(files)


def test_wrong_size_header_is_refused_naming_it(tmp_path, no_debian):
  files = str(tmp_path / "files")
  arrays, _ = write_files(files)
  # The header claims one image more than the file holds (checksums accepted: the header check
  # itself must catch it).
  _, sha = write_files(files, arrays=arrays, counts={"train_images": 241})
  with accepted(sha):
    with pytest.raises(SourceFileError, match=r"train-images-idx3-ubyte.gz: the IDX header says "
                                              r"\(241, 28, 28\) \(188944 bytes of data\) but "
                                              r"188160 bytes follow"):
      fm.load_arrays(files)
  # Consistent headers, but fewer labels than images.
  short = dict(arrays, test_labels=arrays["test_labels"][:-1])
  _, sha = write_files(files, arrays=short)
  with accepted(sha):
    with pytest.raises(SourceFileError, match=r"t10k-images-idx3-ubyte.gz holds 60 images but "
                                              r".*t10k-labels-idx1-ubyte.gz holds 59 labels"):
      fm.load_arrays(files)
  # Images of another size.
  small = dict(arrays, train_images=arrays["train_images"][:, :27, :27])
  _, sha = write_files(files, arrays=small)
  with accepted(sha):
    with pytest.raises(SourceFileError, match=r"train-images-idx3-ubyte.gz: IDX header says items "
                                              r"of shape \(27, 27\), expected \(28, 28\)"):
      fm.load_arrays(files)


@pytest.mark.skipif(fm.debian_folder() is None, reason="Debian package dataset-fashion-mnist "
                    "not installed")
def test_debian_files_pass_the_published_checksums():
  d = fm.load_arrays(None)
  assert d.train_images.shape == (60000, 28, 28) and d.test_images.shape == (10000, 28, 28)
  np.testing.assert_array_equal(np.bincount(d.train_labels), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(d.test_labels), [1000] * 10)
  assert abs(d.train_images.mean() / 255 - fm.MEAN) < 1e-4
  assert abs(d.train_images.std() / 255 - fm.STD) < 1e-4


@pytest.mark.slow  # ~15 CPU-s (compiling the 2-conv CNN); the data path is covered above
def test_ce_config_trains_on_the_files(tiny, tmp_path):
  from labelwise.train import trainer
  from tests.helpers import load_config
  prepared = tiny[1]["fashion_mnist"][0].data.data_dir
  c = load_config("fashion_mnist_ce", "runlocal", total_steps=8, log_every=4, checkpoint_every=-1,
                  data__data_dir=prepared)
  results = trainer.train_and_evaluate(c, str(tmp_path))
  assert results["step"] == 8 and np.isfinite(results["train/loss"])
  assert results["eval/num_examples"] == 60   # the test split of the tiny files


def test_debian_folder_is_asked_from_dpkg(tmp_path, monkeypatch):
  import subprocess
  files = str(tmp_path / "pkg" / "fashion")
  _, sha = write_files(files)
  listing = "\n".join(["/.", "/usr", os.path.dirname(files), files] +
                      [os.path.join(files, n + ".gz") for n in fm.FILES.values()] +
                      ["/usr/share/doc/dataset-fashion-mnist/README.md.gz"])
  calls = []

  def fake_run(cmd, **kw):
    calls.append(cmd)
    return subprocess.CompletedProcess(cmd, 0, stdout=listing + "\n", stderr="")
  monkeypatch.setattr(fm.subprocess, "run", fake_run)
  assert fm.debian_folder() == files
  assert calls == [["dpkg", "-L", "dataset-fashion-mnist"]]
  with accepted(sha):
    assert fm.load_arrays(None).train_images.shape == (240, 28, 28)   # no manual_dir: dpkg's
  # dpkg without the package (exit status 1) or without dpkg at all: no folder.
  monkeypatch.setattr(fm.subprocess, "run",
                      lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "not installed"))
  assert fm.debian_folder() is None

  def no_dpkg(cmd, **kw):
    raise FileNotFoundError("dpkg")
  monkeypatch.setattr(fm.subprocess, "run", no_dpkg)
  assert fm.debian_folder() is None
