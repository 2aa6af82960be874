"""Flax Linen models, looked up by name: ``get_model("mlp", num_classes=10)``.

Every model maps ``(x, train)`` to a dict with ``logits [B, C]``, ``features [B, D]`` (the penultimate
representation) and one ``[B, dim]`` entry per extra head named in ``extra_heads``.
"""

from labelwise._extras import require_train

require_train("labelwise.models")

from labelwise.models.registry import MODELS, get_model, register_model
from labelwise.models.mlp import MLP
from labelwise.models.cnn import SmallCNN
from labelwise.models.resnet import ResNet18
