"""MNIST-1D (Greydanus 2020), generated procedurally with ``mnist1d.data.make_dataset``."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from labelwise.data.registry import DatasetSpec, register_dataset

NUM_SAMPLES = 5000   # the reference size: 4000 train / 1000 test
SEED = 42


class Mnist1d(tfds.core.GeneratorBasedBuilder):
  """40-sample 1-D signals of the ten digit templates; generated offline (never downloaded)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="MNIST-1D generated with mnist1d.data.make_dataset (seed 42, 5000 samples)",
        features=tfds.features.FeaturesDict({
            "signal": tfds.features.Tensor(shape=(40,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("signal", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.seed = NUM_SAMPLES, SEED
    d = make_dataset(args)  # make_dataset only: get_dataset would try to download
    return {"train": self._generate_examples(d["x"], d["y"]),
            "test": self._generate_examples(d["x_test"], d["y_test"])}

  def _generate_examples(self, x, y):
    for i, (signal, label) in enumerate(zip(x, y)):
      yield i, {"signal": np.asarray(signal, np.float32), "label": int(label)}


register_dataset(DatasetSpec(
    name="mnist1d", tfds_name="mnist1d", num_classes=10, input_key="signal", builder=Mnist1d,
    preprocess=lambda x: np.asarray(x, np.float32),
    description="MNIST-1D, 4000 train / 1000 test, generated offline"))
