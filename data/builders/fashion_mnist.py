"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017) read offline from its four IDX files.

The four files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``; gzip-compressed or not) are looked for

1. in ``--config.data.manual_dir`` (default: TFDS's manual folder ``<data_dir>/downloads/manual``),
2. else where the Debian package ``dataset-fashion-mnist`` installed them (asked from
   ``dpkg -L dataset-fashion-mnist`` at run time).

Each file's decompressed content must have the sha256 of the published file (:data:`RAW_SHA256`); a
``.gz`` file is checked after decompression because repackaged archives differ in their gzip header
only (Debian's have no file name in it, so their sha256 differs from the publisher's
:data:`GZ_SHA256`, the checksums TFDS ships). A missing, corrupt or wrong file raises
:class:`~labelwise.data.sources.SourceFileError` naming the file (and, when missing, both ways to get
it). Nothing is downloaded.

Dataset ``fashion_mnist`` (builder :class:`FashionMnistIdx`: TFDS's own catalog builder is called
``fashion_mnist``): features as the catalog's (uint8 image ``[28, 28, 1]``, stored as a Tensor, no
PNG; ``label`` with the ten class names), splits

- ``train``: the original training set minus ``validation`` (55,000 on the real files),
- ``validation``: a fixed stratified ``1/12`` of each class of the original training set (5,000:
  500 a class; on other files the sizes follow the data),
- ``test``: the original test set (10,000, balanced),
- ``train_lt10``, ``train_lt100``: long-tailed subsets of ``train`` (CIFAR-LT protocol, Cao et al.
  2019): class ``c`` keeps ``n_c = floor(n_max * rho^(-c/9))`` examples, ``n_max`` = the smallest
  class of ``train`` (5,500), at least 1; 22,474 and 13,646 examples. The kept examples are the
  first ``n_c`` of a fixed per-class order, so ``train_lt100`` is a subset of ``train_lt10``.
  Validation and test stay balanced.

Coarse labels (``--config.data.coarse=...``): ``hcnn6`` (the 6 groups of the H-CNN hierarchy, Seo
and Shin 2019; also ``coarse=dataset``) and ``clothes_goods`` (its 2-group level). The decoy variant
for attribution studies is ``fashion_mnist_decoy`` (``fashion_mnist_decoy.py``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from typing import Dict, Optional

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.builders.digits import stratified_split
from labelwise.data.idx import read_idx
from labelwise.data.registry import DatasetSpec, register_dataset
from labelwise.data.sources import SourceFileError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot")
IMAGE_SHAPE = (28, 28)
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
# sha256 of the decompressed published files (the content the publisher's gzip MD5s certify).
RAW_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# sha256 of the publisher's .gz archives (tensorflow_datasets/url_checksums/fashion_mnist.txt);
# for the docs: the check is on the decompressed content, which any faithful repackaging keeps.
GZ_SHA256 = {
    "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DOWNLOAD_PAGE = "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)"

VALIDATION_FRACTION = 1 / 12   # 500 of each class's 6,000 training images
SPLIT_SEED = 0
LONG_TAIL_RHOS = (10, 100)
MEAN, STD = 0.2860, 0.3530     # of the 60,000 training images scaled to [0, 1]

# Fine -> coarse maps, in class order (T-shirt, Trouser, Pullover, Dress, Coat, Sandal, Shirt,
# Sneaker, Bag, Ankle boot).
HCNN6_GROUPS = ("tops", "bottoms", "dresses", "outers", "accessories", "shoes")
HCNN6 = (0, 1, 0, 2, 3, 5, 0, 5, 4, 5)
CLOTHES_GOODS_GROUPS = ("clothes", "goods")
CLOTHES_GOODS = (0, 0, 0, 0, 0, 1, 0, 1, 1, 1)
COARSE = {"hcnn6": HCNN6, "clothes_goods": CLOTHES_GOODS}

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Get the four Fashion-MNIST files {', '.join(f + '.gz' for f in FILES.values())} in one of "
    f"two ways: (1) install the Debian package (`apt-get install {DEBIAN_PACKAGE}`; they are read "
    f"from where `dpkg -L {DEBIAN_PACKAGE}` lists them), or (2) download them from {DOWNLOAD_PAGE} "
    f"into a folder and pass it as --config.data.manual_dir=FOLDER.")


def debian_folder() -> Optional[str]:
  """The folder where the Debian package installed the files (asks dpkg), or None."""
  try:
    out = subprocess.run(["dpkg", "-L", DEBIAN_PACKAGE], capture_output=True, text=True,
                         timeout=60, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  if out.returncode != 0:
    return None
  for line in out.stdout.splitlines():
    if os.path.basename(line.strip()) in (FILES["train_images"], FILES["train_images"] + ".gz"):
      return os.path.dirname(line.strip())
  return None


def _file_in(folder: str, name: str) -> Optional[str]:
  for candidate in (name + ".gz", name):
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  return None


def locate_files(manual_dir: Optional[str]) -> Dict[str, str]:
  """Paths of the four files: from ``manual_dir`` if it holds any of them, else from the Debian
  package's folder. A folder that holds some but not all of them is an error naming the missing."""
  places = [("the manual folder", manual_dir),
            (f"the Debian package {DEBIAN_PACKAGE}'s folder", debian_folder())]
  for what, folder in places:
    if not folder or not os.path.isdir(folder):
      continue
    found = {key: _file_in(folder, name) for key, name in FILES.items()}
    if not any(found.values()):
      continue
    missing = [FILES[k] + ".gz" for k, v in found.items() if v is None]
    if missing:
      raise SourceFileError(f"Fashion-MNIST file(s) {', '.join(missing)} missing in {what} "
                            f"{folder} (the other files are there). {MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return found
  looked = "; ".join(f"{what} {folder or '(none: not set, missing or empty)'}"
                     for what, folder in places)
  raise SourceFileError(f"Fashion-MNIST file {FILES['train_images']}.gz (and the other three) not "
                        f"found; looked in {looked}. {MANUAL_DOWNLOAD_INSTRUCTIONS}")


@dataclasses.dataclass(frozen=True)
class FashionMnistArrays:
  """The four files' content: uint8 images ``[n, 28, 28]`` and uint8 labels ``[n]``."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


def load_arrays(manual_dir: Optional[str]) -> FashionMnistArrays:
  """Locates, checks (sha256, IDX header, labels in 0..9, as many labels as images) and reads the
  four files."""
  paths = locate_files(manual_dir)
  out = {}
  for key, path in paths.items():
    name = FILES[key]
    images = key.endswith("images")
    out[key] = read_idx(path, ndim=3 if images else 1, item_shape=IMAGE_SHAPE if images else (),
                        sha256=RAW_SHA256[name])
  for part in ("train", "test"):
    n_img, n_lab = len(out[f"{part}_images"]), len(out[f"{part}_labels"])
    if n_img != n_lab:
      raise SourceFileError(f"{paths[part + '_images']} holds {n_img} images but "
                            f"{paths[part + '_labels']} holds {n_lab} labels.")
    labels = out[f"{part}_labels"]
    if len(labels) and labels.max() >= len(CLASS_NAMES):
      raise SourceFileError(f"{paths[part + '_labels']} holds label {int(labels.max())}, expected "
                            f"0..{len(CLASS_NAMES) - 1}.")
  return FashionMnistArrays(**out)


def long_tail_counts(n_max: int, rho: float, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
  """``n_c = floor(n_max * rho^(-c / (C - 1)))`` for ``c = 0..C-1``, at least 1 (CIFAR-LT)."""
  c = np.arange(num_classes)
  counts = np.floor(n_max * float(rho) ** (-c / (num_classes - 1)) + 1e-9).astype(np.int64)
  return np.maximum(counts, 1)


def long_tail_subset(labels: np.ndarray, indices: np.ndarray, rho: float, seed: int) -> np.ndarray:
  """The sorted long-tailed subset of ``indices``: the first ``n_c`` of a fixed order of each class
  (the order depends on ``seed`` and the class only, so a larger ``rho`` gives a subset)."""
  classes = len(CLASS_NAMES)
  per_class = [indices[labels[indices] == c] for c in range(classes)]
  counts = long_tail_counts(min(len(p) for p in per_class), rho, classes)
  kept = [np.random.RandomState([seed, c]).permutation(p)[:n] for c, (p, n) in
          enumerate(zip(per_class, counts))]
  return np.sort(np.concatenate(kept))


def split_indices(train_labels: np.ndarray) -> Dict[str, np.ndarray]:
  """Indices into the original training set of ``train``, ``validation`` and the long-tailed
  training splits."""
  train, validation = stratified_split(train_labels, VALIDATION_FRACTION, SPLIT_SEED)
  out = {"train": train, "validation": validation}
  for rho in LONG_TAIL_RHOS:
    out[f"train_lt{rho}"] = long_tail_subset(train_labels, train, rho, SPLIT_SEED)
  return out


def manual_dir_of(dl_manager) -> Optional[str]:
  """TFDS's manual folder (``--config.data.manual_dir`` or ``<data_dir>/downloads/manual``), or
  None when it does not exist or is empty."""
  try:
    return os.fspath(dl_manager.manual_dir)
  except AssertionError:  # TFDS: "Manual directory ... does not exist or is empty"
    return None


def image_features(**extra) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=IMAGE_SHAPE + (1,), dtype=np.uint8),
      **extra,
      "label": tfds.features.ClassLabel(names=CLASS_NAMES),
  })


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST from its four IDX files (see the module docstring); never downloads."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, features=image_features(),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist")

  def _split_generators(self, dl_manager):
    d = load_arrays(manual_dir_of(dl_manager))
    splits = {name: self._generate_examples(d.train_images, d.train_labels, idx)
              for name, idx in split_indices(d.train_labels).items()}
    splits["test"] = self._generate_examples(d.test_images, d.test_labels,
                                             np.arange(len(d.test_labels)))
    return splits

  def _generate_examples(self, images, labels, indices):
    for i in indices:   # key: the index in the original file
      yield int(i), {"image": images[i][..., None], "label": int(labels[i])}


SPLITS = ("train", "validation", "test") + tuple(f"train_lt{r}" for r in LONG_TAIL_RHOS)

register_dataset(DatasetSpec(
    name="fashion_mnist", tfds_name="fashion_mnist_idx", num_classes=len(CLASS_NAMES),
    input_key="image", splits=SPLITS, builder=FashionMnistIdx,
    preprocess=lambda x: (np.asarray(x, np.float32) / 255.0 - MEAN) / STD,
    fine_to_coarse=HCNN6, coarse_maps=COARSE, image=True,
    description="Fashion-MNIST from its IDX files (Debian dataset-fashion-mnist or manual_dir), "
                "55,000 train / 5,000 validation / 10,000 test, long-tailed train_lt10/100"))
