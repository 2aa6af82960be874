"""Reading IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or not, with checks.

IDX layout (big-endian): two zero bytes, a type byte (``0x08`` = uint8), the number of dimensions
``d``, then ``d`` int32 sizes, then the ``prod(sizes)`` values in C order. Every problem raises
:class:`~labelwise.data.sources.SourceFileError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Optional, Sequence

import numpy as np

from labelwise.data.sources import SourceFileError, sha256_hex

_UBYTE = 0x08


def read_bytes(path: str) -> bytes:
  """The content of ``path``, decompressed when its name ends in ``.gz``."""
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
    raise SourceFileError(f"cannot read {path} ({type(e).__name__}: {e}): the file is truncated "
                          f"or corrupted; replace it.") from e


def parse_idx(data: bytes, path: str, *, ndim: int,
              item_shape: Optional[Sequence[int]] = None) -> np.ndarray:
  """Parses the uint8 IDX ``data`` read from ``path`` into an array ``[n, *item_shape]``.

  Checks the magic number, the number of dimensions ``ndim``, the item shape, and that the header's
  sizes agree with the number of bytes that follow it.
  """
  name = os.path.basename(path)
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise SourceFileError(f"{path} is not an IDX file (the first bytes are {data[:4]!r}, expected "
                          f"two zero bytes, a type byte and the number of dimensions).")
  if data[2] != _UBYTE or data[3] != ndim:
    raise SourceFileError(f"{path}: IDX header says type 0x{data[2]:02x} with {data[3]} "
                          f"dimensions, expected uint8 (0x08) with {ndim} for {name}.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise SourceFileError(f"{path}: truncated IDX header ({len(data)} bytes).")
  sizes = tuple(int(s) for s in np.frombuffer(data, ">i4", count=ndim, offset=4))
  if item_shape is not None and sizes[1:] != tuple(item_shape):
    raise SourceFileError(f"{path}: IDX header says items of shape {sizes[1:]}, expected "
                          f"{tuple(item_shape)}.")
  expected = int(np.prod(sizes))
  if len(data) - header != expected:
    raise SourceFileError(
        f"{path}: the IDX header says {sizes} ({expected} bytes of data) but {len(data) - header} "
        f"bytes follow it: the file is truncated or its header is wrong.")
  return np.frombuffer(data, np.uint8, offset=header).reshape(sizes)


def read_idx(path: str, *, ndim: int, item_shape: Optional[Sequence[int]] = None,
             sha256: Optional[str] = None) -> np.ndarray:
  """Reads the IDX file ``path``; with ``sha256``, the decompressed content must have that sha256."""
  data = read_bytes(path)
  if sha256 is not None:
    got = sha256_hex(data)
    if got != sha256:
      raise SourceFileError(
          f"{path} has the wrong content: sha256 of its (decompressed) bytes is {got}, the "
          f"published file's is {sha256}. The file is corrupted or is another file; replace it.")
  return parse_idx(data, path, ndim=ndim, item_shape=item_shape)
