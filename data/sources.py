"""Source files of offline datasets: the error for a missing or wrong one, and content checksums.

An offline builder that reads files the user supplies (IDX files, image folders) raises
:class:`SourceFileError` when a file is missing, corrupt or not what it should be. The input pipeline
passes it through unchanged (it is not an ArrayRecord read error), so the message that names the file
and the fix reaches the user as written.
"""

from __future__ import annotations

import hashlib


class SourceFileError(ValueError):
  """A source file of an offline dataset is missing, corrupt or has the wrong content."""


def sha256_hex(data: bytes) -> str:
  """The sha256 of ``data`` as 64 lowercase hex digits."""
  return hashlib.sha256(data).hexdigest()
