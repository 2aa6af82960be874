"""``make docs``: the API reference builds without warnings and shows every public loss and metric."""

import inspect
import os
import subprocess
import sys

import pytest

from labelwise import losses
from labelwise.eval import metrics

pytest.importorskip("pdoc")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _public_functions(module):
  return sorted(n for n in dir(module) if not n.startswith("_") and inspect.isfunction(getattr(module, n)))


def test_api_reference_builds_without_warnings_and_lists_everything(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "labelwise._docs", str(tmp_path)],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "Warning" not in proc.stderr, proc.stderr
  html = ""
  for folder, _, files in os.walk(tmp_path):
    html += "".join(open(os.path.join(folder, f)).read() for f in files if f.endswith(".html"))
  missing_losses = [n for n in _public_functions(losses) if f'id="{n}"' not in html]
  assert not missing_losses, missing_losses
  metric_names = [n for n in _public_functions(metrics) if getattr(metrics, n).__module__.startswith("labelwise")]
  missing_metrics = [n for n in metric_names if f'id="{n}"' not in html]
  assert not missing_metrics, missing_metrics
  assert not os.path.exists(os.path.join(tmp_path, "labelwise", "losses", "_checks.html"))


def test_make_targets_build_docs_and_run_the_docstring_examples():
  with open(os.path.join(_ROOT, "Makefile")) as f:
    makefile = f.read()
  assert "docs:" in makefile and "labelwise._docs" in makefile
  test_target = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
  assert "doctest" in test_target  # make test runs make doctest
  doctest_target = makefile.split("\ndoctest:", 1)[1].split("\n\n", 1)[0]
  assert "--doctest-modules" in doctest_target
  assert "labelwise/losses" in doctest_target and "labelwise/eval" in doctest_target
