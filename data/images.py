"""Reading image files for the image-folder builders, with errors that name the file."""

from __future__ import annotations

import contextlib


class UnreadableImageError(ValueError):
  """An image file of an image-folder dataset cannot be decoded."""


@contextlib.contextmanager
def open_image(path: str):
  """``PIL.Image.open(path)``; a missing, truncated or non-image file raises
  :class:`UnreadableImageError` naming the file and what to do."""
  from PIL import Image
  try:
    im = Image.open(path)
    im.load()
  except (OSError, ValueError, SyntaxError) as e:  # PIL raises UnidentifiedImageError (OSError) etc.
    raise UnreadableImageError(
        f"cannot read image file {path} ({type(e).__name__}: {e}). Remove or replace the file, "
        f"then run again (the dataset is regenerated from the folder).") from e
  try:
    yield im
  finally:
    im.close()
