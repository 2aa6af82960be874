"""Methods and evaluators are looked up in explicit tables (imported on lookup), not registered as an
import side effect; the eval modules import each other without a circle."""

import ast
import os
import subprocess
import sys

import pytest

from labelwise.eval import evaluators as evaluators_lib
from labelwise.train import methods as methods_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_builtin_entry_resolves_to_its_object():
  for name in methods_lib.BUILTIN_METHODS:
    cls = methods_lib.METHODS[name]
    assert issubclass(cls, methods_lib.Method) and cls.name == name, name
  for name in evaluators_lib.BUILTIN_EVALUATORS:
    assert callable(evaluators_lib.get_evaluator(name)), name
  assert set(methods_lib.BUILTIN_METHODS) <= set(methods_lib.METHODS)


def test_importing_the_packages_imports_no_method_or_evaluator_module():
  code = ("import sys; import labelwise.train.methods, labelwise.eval.evaluators; "
          "print(sorted(m for m in sys.modules if m.startswith('labelwise.train.methods.') "
          "or m in ('labelwise.eval.evaluators',)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.stdout.strip() == "['labelwise.eval.evaluators', 'labelwise.train.methods.base']"


def _module_imports(path, package):
  """The ``labelwise.<package>.*`` modules that ``path`` imports at its top level."""
  found = set()
  for node in ast.parse(open(path).read()).body:
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
      if node.module == package:
        found.update(f"{package}.{a.name}" for a in node.names)
      else:
        found.add(node.module)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith(package + "."))
  return found


def test_eval_modules_import_each_other_without_a_circle():
  folder = os.path.join(REPO, "eval")
  graph = {f"labelwise.eval.{f[:-3]}": _module_imports(os.path.join(folder, f), "labelwise.eval")
           for f in os.listdir(folder) if f.endswith(".py") and f != "__init__.py"}

  def visit(node, path):
    if node in path:
      pytest.fail("import circle: " + " -> ".join(path[path.index(node):] + [node]))
    for nxt in graph.get(node, ()):
      visit(nxt, path + [node])

  for module in graph:
    visit(module, [])
  assert "labelwise.eval.clustering" in graph["labelwise.eval.metrics"]  # the graph was read
  assert graph["labelwise.eval.clustering"] == {"labelwise.eval.context"}


def test_registration_errors_name_what_is_known():
  with pytest.raises(ValueError, match="method 'ce' is registered twice"):
    methods_lib.register_method("ce")(type("Again", (methods_lib.Method,), {}))
  with pytest.raises(ValueError, match="evaluator 'clustering' is registered twice"):
    evaluators_lib.register_evaluator("clustering")(lambda ctx: {})
  with pytest.raises(ValueError, match=r"Unknown method 'nope'; known methods: \[.*'ce'.*\]"):
    methods_lib.METHODS.lookup("nope")
  with pytest.raises(ValueError, match=r"Unknown evaluator 'nope'; known evaluators: \[.*'fine_grain"):
    evaluators_lib.get_evaluator("nope")
