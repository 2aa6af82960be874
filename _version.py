"""The package version, in one place: setup.cfg reads it (``attr:``) and ``labelwise.__version__`` is it."""

__version__ = "0.1.0"
