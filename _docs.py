"""``python -m labelwise._docs OUTDIR`` (``make docs``): the API reference as HTML, built by pdoc.

Documents ``labelwise``, ``labelwise.losses`` and ``labelwise.eval`` (Google-style docstrings); every
warning pdoc emits is an error, so the build is warning-free or fails.
"""

from __future__ import annotations

import pathlib
import sys
import warnings

MODULES = ("labelwise", "labelwise.losses", "labelwise.eval", "!labelwise.losses._checks")


def build(output_dir: str) -> None:
  import pdoc  # the `docs` extra
  pdoc.render.configure(docformat="google", search=True)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    warnings.simplefilter("ignore", DeprecationWarning)  # third-party import-time deprecations
    pdoc.pdoc(*MODULES, output_directory=pathlib.Path(output_dir))


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit("usage: python -m labelwise._docs OUTDIR")
  build(sys.argv[1])
  print(f"API reference written to {sys.argv[1]}/index.html")
