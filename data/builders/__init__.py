"""Offline datasets as TFDS builders (Tensor features, ArrayRecord), generated on first use.

Each module registers its :class:`~labelwise.data.registry.DatasetSpec`. One import line per module.
"""

from labelwise.data.builders import digits
from labelwise.data.builders import mnist1d
from labelwise.data.builders import fashion_mnist
from labelwise.data.builders import fashion_mnist_decoy
# Method-specific builders (one line each):
from labelwise.data.builders import crosses
from labelwise.data.builders import masked_folder
from labelwise.data.builders import ambiguous_gaussians
from labelwise.data.builders import plantnet
from labelwise.data.builders import simloss_ordinal
from labelwise.data.builders import hierarchy_gaussians
