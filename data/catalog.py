"""TFDS catalog datasets, read from ArrayRecord once prepared (``python -m labelwise.data.prepare NAME``)."""

from __future__ import annotations

import numpy as np

from labelwise.data.registry import DatasetSpec, register_dataset

# The standard CIFAR-100 fine -> coarse (20 superclasses) map, in fine-label order.
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13)
assert sorted(np.bincount(CIFAR100_FINE_TO_COARSE).tolist()) == [5] * 20

_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def _rgb(x):
  return (np.asarray(x, np.float32) / 255.0 - _MEAN) / _STD


def _gray(x):
  return (np.asarray(x, np.float32) / 255.0 - 0.1307) / 0.3081


for _spec in (
    DatasetSpec(name="mnist", tfds_name="mnist", num_classes=10, preprocess=_gray, image=True,
                description="MNIST 28x28 (catalog)"),
    DatasetSpec(name="cifar10", tfds_name="cifar10", num_classes=10, preprocess=_rgb, image=True,
                description="CIFAR-10 32x32 (catalog)"),
    DatasetSpec(name="cifar100", tfds_name="cifar100", num_classes=100, preprocess=_rgb,
                fields=("coarse_label",), fine_to_coarse=CIFAR100_FINE_TO_COARSE, image=True,
                description="CIFAR-100 with 20 coarse labels (catalog)"),
    # CIFAR-10H: the CIFAR-10 *test* images with human label distributions (10k, split "test").
    DatasetSpec(name="cifar10_h", tfds_name="cifar10_h", num_classes=10, preprocess=_rgb,
                fields=("soft_label",), splits=("test",), image=True,
                description="CIFAR-10H human soft labels on the CIFAR-10 test images (catalog)"),
    DatasetSpec(name="stl10", tfds_name="stl10", num_classes=10, preprocess=_rgb, image=True,
                splits=("train", "test", "unlabelled"), description="STL-10 96x96 (catalog)"),
):
  register_dataset(_spec)
