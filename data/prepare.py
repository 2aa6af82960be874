"""Prepares a TFDS catalog dataset as ArrayRecord so that training reads it without TensorFlow.

    python -m labelwise.data.prepare cifar100 [--data_dir=DIR]

Needs network and the ``prepare`` extra (``pip install 'labelwise[prepare]'``: TensorFlow decodes the
source archives). Offline datasets (digits, mnist1d, synthetic sets) need no preparation: they are
generated on first use. Offline datasets built from files the user supplies (``fashion_mnist``) can
be generated ahead of time here: ``python -m labelwise.data.prepare fashion_mnist
[--manual_dir=FOLDER]``.
"""

from __future__ import annotations

from absl import app, flags

from labelwise.data import registry
from labelwise.data.pipeline import default_data_dir

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: $TFDS_DATA_DIR).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder of the source files of datasets "
                                  "built from them (fashion_mnist).")


def prepare(name: str, data_dir=None, manual_dir=None) -> None:
  import tensorflow_datasets as tfds
  spec = registry.get_dataset_spec(name)
  data_dir = data_dir or default_data_dir()
  if spec.catalog:
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir, file_format="array_record")
  else:
    builder = spec.builder(data_dir=data_dir, file_format="array_record")
  config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
  builder.download_and_prepare(download_config=config)
  print(f"prepared {name} in {builder.data_dir}")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(f"usage: python -m labelwise.data.prepare NAME; NAME in "
                         f"{sorted(registry.DATASETS)}")
  prepare(argv[1], _DATA_DIR.value, _MANUAL_DIR.value)


if __name__ == "__main__":
  app.run(main)
