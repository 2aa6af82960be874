"""``python -m labelwise.train`` runs :mod:`labelwise.train.main`."""

from labelwise.train.main import run

run()
