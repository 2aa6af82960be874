"""Experiment configs: ``get_config(arg)`` per file; ``:runlocal`` shrinks any of them to a smoke run."""
