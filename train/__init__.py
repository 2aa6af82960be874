"""Training: the trainer (``train_and_evaluate``), the pure step, state, checkpoints, writers, methods."""
