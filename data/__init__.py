"""Input pipelines: every dataset is read through TFDS (offline builders or prepared catalog data)."""

from labelwise._extras import require_train

require_train("labelwise.data")

from labelwise.data.registry import DATASETS, DatasetSpec, get_dataset_spec, register_dataset
from labelwise.data import builders as _builders  # registers the offline datasets
from labelwise.data import catalog as _catalog    # registers the catalog datasets
from labelwise.data.pipeline import Dataset, make_dataset
