"""Experiment configs: ``get_config(arg)`` per file; ``:runlocal`` shrinks any of them to a smoke run."""

from labelwise._extras import require_train

require_train("labelwise.configs")
