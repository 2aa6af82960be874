"""Training: the trainer (``train_and_evaluate``), the pure step, state, checkpoints, writers, methods."""

from labelwise._extras import require_train

require_train("labelwise.train")
