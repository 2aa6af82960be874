"""labelwise: classification losses that use more than a one-hot label, as pure JAX functions.

``from labelwise import losses`` needs only jax and numpy (``pip install labelwise``); the trainer,
data pipeline and evaluators (``labelwise.train``, ``labelwise.data``, ``labelwise.eval``) need the
``labelwise[train]`` extra. Importing this package imports neither.
"""

from labelwise._version import __version__

__all__ = ["__version__"]
