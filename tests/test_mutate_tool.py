"""tools/mutate.py (``make mutate``): which tests a mutant runs, equivalent mutants, the report."""

import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                     "mutate.py")
_spec = importlib.util.spec_from_file_location("labelwise_mutate_tool", _PATH)
mutate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutate)

_SOURCE = """\
import math

SCALE = 2.0


@staticmethod
def f(x, eps=1e-6):
  y = (x +
       eps)
  return y * SCALE


def g(x):
  return -x
"""
# line -> tests that executed it (module level lines ran at import, in no test)
_MAP = {"tests": ["t::a", "t::b", "t::c"],
        "lines": {"1": [], "3": [], "6": [], "7": [], "8": ["t::a", "t::b"], "10": ["t::b"],
                  "13": [], "14": ["t::c"]}}


@pytest.mark.parametrize("line, expect", [
    (8, ["t::a", "t::b"]),   # a statement in a body: the tests that ran it
    (9, ["t::a", "t::b"]),   # continuation line of that statement
    (10, ["t::b"]),
    (7, ["t::a", "t::b"]),   # default argument in the header: the tests of the body
    (6, ["t::a", "t::b"]),   # decorator: the same
    (3, ["t::a", "t::b", "t::c"]),  # module level constant: every test
    (14, ["t::c"]),
    (12, []),                # a blank line belongs to no statement
])
def test_tests_for_lines(line, expect):
  assert mutate.tests_for_lines(_SOURCE, [line], _MAP) == expect


def test_tests_for_lines_not_executed_is_empty_and_union_keeps_run_order():
  cmap = {"tests": ["t::a", "t::b"], "lines": {"8": ["t::b"], "14": ["t::a"]}}
  assert mutate.tests_for_lines(_SOURCE, [14, 8], cmap) == ["t::a", "t::b"]
  assert mutate.tests_for_lines(_SOURCE, [10], {"tests": ["t::a"], "lines": {}}) == []


_DIFF = """--- mutation diff ---
--- alosses/x.py
+++ blosses/x.py
@@ -1,3 +1,3 @@
 a = 1
-  eps = 1e-12
+  eps = 1.000000000001
 b = 2
"""


def test_equivalent_mutants_match_module_operator_and_lines():
  eq = [{"module": "losses/x.py", "operator": "core/NumberReplacer", "line": "eps = 1e-12",
         "mutant": "eps = 1.000000000001", "reason": "r"}]
  assert mutate._equivalent_reason("losses/x.py", "core/NumberReplacer", _DIFF, eq) == "r"
  assert mutate._equivalent_reason("losses/y.py", "core/NumberReplacer", _DIFF, eq) is None
  assert mutate._equivalent_reason("losses/x.py", "core/AddNot", _DIFF, eq) is None
  other = [{**eq[0], "mutant": "eps = -0.999999999999"}]
  assert mutate._equivalent_reason("losses/x.py", "core/NumberReplacer", _DIFF, other) is None
  no_mutant = [{k: v for k, v in eq[0].items() if k != "mutant"}]
  assert mutate._equivalent_reason("losses/x.py", "core/NumberReplacer", _DIFF, no_mutant) == "r"


def test_a_rewritten_last_blank_line_is_not_part_of_the_mutant():
  """cosmic-ray rewrites the blank line at the end of a file along with a mutant of its last
  statement; the entry matches the statement alone."""
  diff = "@@ -1,2 +1,2 @@\n-  return f(x, axis=-1)\n-\n+  return f(x, axis=1)\n+\n"
  assert mutate._changed_lines(diff) == ("return f(x, axis=-1)", "return f(x, axis=1)")
  eq = [{"module": "losses/x.py", "operator": "core/ReplaceUnaryOperator_Delete_USub",
         "line": "return f(x, axis=-1)", "mutant": "return f(x, axis=1)", "reason": "r"}]
  assert mutate._equivalent_reason("losses/x.py", "core/ReplaceUnaryOperator_Delete_USub", diff,
                                   eq) == "r"
  two = "-a = 1\n-b = 2\n+a = 2\n+b = 2\n"
  assert mutate._changed_lines(two) == ("a = 1 / b = 2", "a = 2 / b = 2")


def test_committed_equivalents_parse_and_have_reasons():
  for e in mutate.load_equivalents():
    assert {"module", "operator", "line", "reason"} <= set(e), e
    assert e["module"] in mutate.TARGETS and e["reason"].strip(), e


def test_report_scores_and_groups(tmp_path):
  r1 = {"module": "losses/x.py", "sample": 1.0, "source_sha1": "abc", "mutants": 10, "killed": 8,
        "survived": 1, "equivalent": 1, "not_covered": 1, "pending": 0, "equivalents": [
            {"operator": "core/NumberReplacer", "line": 2, "diff": _DIFF, "reason": "why"}],
        "survivors": [{"operator": "core/AddNot", "line": 5, "diff": _DIFF, "not_covered": True}]}
  r2 = {**r1, "module": "losses/y.py", "mutants": 4, "killed": 4, "survived": 0, "equivalent": 0,
        "not_covered": 0, "equivalents": [], "survivors": []}
  text = mutate.render([r1, r2])
  # 8 / (10 - 1); Wilson interval of 8 of 9: 56.497% to 98.0%
  assert "| `losses/x.py` | 1 | 10 | 8 | 1 (1) | 1 | 88.9% | 56-98% |" in text
  # 12 / 13: 66.69% to 98.63%
  assert "| **losses/** (all run) | | 14 | 12 | 1 (1) | 1 | **92.3%** | 67-99% |" in text
  assert "`losses/x.py:2` core/NumberReplacer: `eps = 1e-12` -> `eps = 1.000000000001`: why" in text
  assert "`losses/x.py:5` core/AddNot (no test executes this line)" in text
  doc = tmp_path / "t.md"
  doc.write_text(f"head\n{mutate.DOCS_START}\nold\n{mutate.DOCS_END}\ntail\n")
  mutate.write_docs(doc, text)
  assert doc.read_text() == f"head\n{mutate.DOCS_START}\n{text}{mutate.DOCS_END}\ntail\n"
  (tmp_path / "none.md").write_text("no markers\n")
  with pytest.raises(SystemExit, match="markers"):
    mutate.write_docs(tmp_path / "none.md", text)


def test_targets_exist():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for module, tests in mutate.TARGETS.items():
    assert os.path.isfile(os.path.join(root, module)), module
    assert tests and all(os.path.isfile(os.path.join(root, t)) for t in tests), (module, tests)


def test_coverage_maps_are_kept_until_an_imported_source_changes(tmp_path):
  """A test file's coverage map records the sources it imported (under the scratch root, with
  their sha1); it is reused while they are unchanged and rerun when one changes or vanishes, or
  when the map predates ``deps``. Files outside the root, in a virtualenv inside it and non-Python modules are not deps."""
  import hashlib
  import types
  root = tmp_path / "src"
  (root / "pkg").mkdir(parents=True)
  (root / "pkg" / "a.py").write_text("x = 1\n")
  (root / "tests").mkdir()
  (root / "tests" / "test_a.py").write_text("def test(): pass\n")
  (tmp_path / "outside.py").write_text("y = 2\n")
  (root / "pkg" / "ext.so").write_bytes(b"\0")
  (root / ".venv" / "lib" / "site-packages").mkdir(parents=True)
  (root / ".venv" / "lib" / "site-packages" / "dep.py").write_text("z = 3\n")
  mods = [types.SimpleNamespace(__file__=str(root / "pkg" / "a.py")),
          types.SimpleNamespace(__file__=str(root / "tests" / "test_a.py")),
          types.SimpleNamespace(__file__=str(tmp_path / "outside.py")),
          types.SimpleNamespace(__file__=str(root / "pkg" / "ext.so")),
          types.SimpleNamespace(__file__=str(root / ".venv" / "lib" / "site-packages" / "dep.py")),
          types.SimpleNamespace(__file__=None), types.SimpleNamespace()]
  deps = mutate.imported_sources(root, mods)
  assert deps == {"pkg/a.py": hashlib.sha1(b"x = 1\n").hexdigest(),
                  "tests/test_a.py": hashlib.sha1(b"def test(): pass\n").hexdigest()}
  data = {"tests": [], "modules": {}, "deps": deps}
  assert mutate.map_is_current(data, root)
  (root / "tests" / "test_a.py").write_text("def test(): assert True\n")
  assert not mutate.map_is_current(data, root)          # the test file changed
  data["deps"] = mutate.imported_sources(root, mods)
  assert mutate.map_is_current(data, root)
  (root / "pkg" / "a.py").unlink()
  assert not mutate.map_is_current(data, root)          # an imported source is gone
  assert not mutate.map_is_current({"tests": [], "modules": {}}, root)   # a map without deps
