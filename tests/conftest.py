"""pytest setup: 4 fake CPU devices, set before jax is imported anywhere."""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags = (_flags + " --xla_force_host_platform_device_count=4").strip()
# XLA:CPU aborts the process when a collective's 4 device threads do not all arrive within 40 s,
# which a heavily loaded machine can exceed: wait up to 10 minutes instead.
if "xla_cpu_collective_call_terminate_timeout_seconds" not in _flags:
  _flags += (" --xla_cpu_collective_timeout_seconds=600"
             " --xla_cpu_collective_call_terminate_timeout_seconds=600")
os.environ["XLA_FLAGS"] = _flags
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Offline: never let TFDS reach for the network or GCS.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")
# Offline builders are generated once into a shared cache (reused across runs and xdist workers).
import tempfile  # noqa: E402

os.environ.setdefault("TFDS_DATA_DIR", os.path.join(tempfile.gettempdir(), "labelwise-tests-tfds"))

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
  """Tiny Fashion-MNIST IDX files written once per test module (no Debian package needed):
  ``(arrays, sha, data_dir, files)`` = the arrays written, their checksums, an empty TFDS data
  folder and the folder of the files (the studies' Fashion-MNIST part tests)."""
  from tests.test_fashion_mnist import write_files
  root = tmp_path_factory.mktemp("fm_tiny")
  arrays, sha = write_files(str(root / "files"))
  return arrays, sha, str(root / "tfds"), str(root / "files")
