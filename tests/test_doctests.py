"""Every docstring example of ``labelwise.losses`` and ``labelwise.eval`` runs and prints what it shows.

This is ``pytest --doctest-modules`` over ``losses/`` and ``eval/``, done with the standard library's
doctest on the modules imported by their package names: pytest's own doctest collector cannot be
pointed at these folders, since the repository root is itself the package (it would import them a
second time under the checkout folder's name and register every evaluator twice).
"""

import doctest
import importlib
import pkgutil

import pytest

import labelwise.eval
import labelwise.losses


def _modules(package):
  return [package.__name__] + [f"{package.__name__}.{m.name}"
                               for m in pkgutil.iter_modules(package.__path__)]


MODULES = _modules(labelwise.losses) + _modules(labelwise.eval)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
  module = importlib.import_module(name)
  finder = doctest.DocTestFinder(exclude_empty=True)
  runner = doctest.DocTestRunner(optionflags=FLAGS)
  for test in finder.find(module, name, globs=dict(vars(module))):
    runner.run(test)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_examples_exist():
  finder = doctest.DocTestFinder(exclude_empty=True)
  count = sum(len(t.examples) for name in MODULES
              for t in finder.find(importlib.import_module(name), name))
  assert count >= 40, count
