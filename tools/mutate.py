"""Mutation testing of labelwise with cosmic-ray, module by module (``make mutate``; see docs/testing.md).

For each target module (``TARGETS``: the module and the test files that cover it):

1. The tracked files of the checkout are copied to a scratch tree ``<workdir>/src/labelwise`` (the
   repository root is the package, so the copy is importable as ``labelwise`` with
   ``PYTHONPATH=<workdir>/src``). Mutants are only ever applied there, never to the checkout.
2. Each test file of the module runs once under coverage (reused by every module it covers, until
   a source file changes), with JAX's caches cleared before every test (so a jitted function is
   traced, and its lines recorded, in every test that calls it). This is the baseline (it must
   pass) and gives, for every line of the module, the tests that execute it.
3. ``cosmic-ray init`` lists the mutants; operators outside ``OPERATORS`` are filtered out (one
   natural counterpart per site: ``+`` -> ``-``, ``<`` -> ``<=``, ``==`` -> ``!=``, ...), and with
   ``--sample F`` a stable pseudo-random fraction ``F`` of the rest is kept.
4. ``cosmic-ray exec`` applies each mutant in the scratch tree and runs this script's ``select``
   command as the test command: it finds the mutated line (diff against the pristine copy) and runs
   ``pytest -x`` on only the tests that execute it (none: the mutant survives as "not covered").
5. The results (``<workdir>/results/<module>.json``) are rendered as one report: per module the
   mutants, killed, survived, equivalent (listed in ``tools/mutate_equivalent.toml`` with a reason)
   and the score ``killed / (mutants - equivalent)``, and the diff of every other survivor.
   ``--docs docs/testing.md`` writes the report between the markers in that file.

A session is resumable: rerunning with the same source and options continues where it stopped; a
changed module (or ``--sample``) starts its session again, changed test files run its survivors
again (killed mutants stay killed).
Usage: ``python tools/mutate.py [--modules losses/ eval/fine_grain.py] [--sample 0.2]``.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

try:
  import tomllib
except ImportError:  # Python 3.10: cosmic-ray's own dependency reads TOML too
  import toml as tomllib
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent

# module -> the test files that cover it (the coverage map then picks, per line, the tests that run it)
TARGETS: Dict[str, List[str]] = {
    "losses/_checks.py": ["tests/test_losses_contracts.py", "tests/test_bad_inputs.py",
                          "tests/test_losses_simloss.py", "tests/test_losses_batch_dims.py"],
    "losses/classification.py": ["tests/test_losses_contracts.py", "tests/test_losses_simloss.py",
                                 "tests/test_losses_average_k.py",
                                 "tests/test_losses_batch_dims.py", "tests/test_bad_inputs.py"],
    "losses/host_checks.py": ["tests/test_losses_contracts.py", "tests/test_bad_inputs.py",
                              "tests/test_losses_simloss.py"],
    "losses/simloss.py": ["tests/test_losses_contracts.py", "tests/test_losses_simloss.py",
                          "tests/test_losses_batch_dims.py", "tests/test_bad_inputs.py"],
    "losses/collision.py": ["tests/test_losses_contracts.py", "tests/test_losses_collision.py",
                            "tests/test_losses_batch_dims.py", "tests/test_bad_inputs.py"],
    "losses/fierce.py": ["tests/test_losses_contracts.py", "tests/test_losses_fierce.py",
                         "tests/test_bad_inputs.py"],
    "losses/average_k.py": ["tests/test_losses_contracts.py", "tests/test_losses_average_k.py",
                            "tests/test_bad_inputs.py"],
    "losses/attribution.py": ["tests/test_losses_contracts.py", "tests/test_losses_attribution.py",
                              "tests/test_bad_inputs.py"],
    "train/step.py": ["tests/test_step_devices.py", "tests/test_device_feed.py"],
    "train/checkpoint.py": ["tests/test_checkpoint.py"],
    # The trainer's resume/parallel tests (test_reliability.py, test_parallel.py) are left out: each
    # takes minutes, and a mutant in those code paths would run them all.
    "train/trainer.py": ["tests/test_train_e2e.py", "tests/test_loop.py", "tests/test_errors.py",
                         "tests/test_trainer_contracts.py"],
    "data/pipeline.py": ["tests/test_data.py", "tests/test_device_feed.py",
                         "tests/test_validation_split.py"],
    "eval/evaluators.py": ["tests/test_evaluators.py", "tests/test_fierce_eval.py"],
    "eval/metrics.py": ["tests/test_metrics_contracts.py", "tests/test_evaluators.py",
                        "tests/test_average_k_metrics.py",
                        "tests/test_simloss_eval.py", "tests/test_collision_eval.py"],
    "eval/fine_grain.py": ["tests/test_fierce_eval.py"],
    "eval/average_k.py": ["tests/test_average_k_metrics.py", "tests/test_metrics_contracts.py"],
    "eval/clustering.py": ["tests/test_collision_eval.py", "tests/test_evaluators.py"],
    "eval/simloss.py": ["tests/test_simloss_eval.py", "tests/test_evaluators.py"],
    "eval/saliency.py": ["tests/test_attribution_saliency.py", "tests/test_evaluators.py"],
}

# cosmic-ray operators kept: the realistic slip at each site, not every operator for every operator.
OPERATORS = [
    "core/ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Mul|Mod_FloorDiv|Pow_Mul"
    "|BitAnd_BitOr|BitOr_BitAnd|BitXor_BitAnd|LShift_RShift|RShift_LShift)",
    "core/ReplaceComparisonOperator_(Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Eq_NotEq|NotEq_Eq|Is_IsNot"
    "|IsNot_Is|In_NotIn|NotIn_In)",
    "core/ReplaceUnaryOperator_Delete_(USub|Not|Invert)",
    "core/(NumberReplacer|AddNot|ReplaceAndWithOr|ReplaceOrWithAnd|ReplaceTrueWithFalse"
    "|ReplaceFalseWithTrue|ZeroIterationForLoop|RemoveDecorator|ExceptionReplacer"
    "|ReplaceBreakWithContinue|ReplaceContinueWithBreak)",
]
EQUIVALENT_FILE = REPO / "tools" / "mutate_equivalent.toml"
DOCS_START, DOCS_END = "<!-- mutate-report:start -->", "<!-- mutate-report:end -->"
NOT_COVERED = "mutate.py: no test executes this line"


def _slug(module: str) -> str:
  return module.replace("/", ".").removesuffix(".py")


def _python_env(src: Path) -> Dict[str, str]:
  env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
  env.pop("PYTEST_ADDOPTS", None)
  return env


# ------------------------------------------------------------------ scratch tree

def make_scratch(workdir: Path) -> Path:
  """Copies the checkout's tracked (and untracked, not ignored) files to ``workdir/src/labelwise``."""
  files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
  root = workdir / "src" / "labelwise"
  if root.exists():
    shutil.rmtree(root)
  for name in filter(None, files):
    if (REPO / name).is_file():
      (root / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(REPO / name, root / name)
  probe = subprocess.run([sys.executable, "-c", "import labelwise; print(labelwise.__file__)"],
                         cwd=root, env=_python_env(root.parent), capture_output=True, text=True)
  if Path(probe.stdout.strip()).resolve() != (root / "__init__.py").resolve():
    raise SystemExit(f"mutate.py: `import labelwise` does not resolve to the scratch copy {root} "
                     f"(got {probe.stdout.strip() or probe.stderr.strip()!r}); refusing to run.")
  return root


# ------------------------------------------------------------------ coverage map (runs in the scratch)

def _sha1(path: Path) -> str:
  return hashlib.sha1(path.read_bytes()).hexdigest()


def imported_sources(root: Path, modules) -> Dict[str, str]:
  """``{path relative to root: sha1}`` of the ``.py`` files under ``root`` among ``modules``
  (``sys.modules`` after a test file ran: every source it could have executed)."""
  root = root.resolve()
  out = {}
  for m in list(modules):
    f = getattr(m, "__file__", None)
    if not f or not f.endswith(".py"):
      continue
    path = Path(f).resolve()
    if (path.is_relative_to(root) and path.is_file()
        and not any(p.startswith(".") or p == "site-packages"
                    for p in path.relative_to(root).parts)):  # a virtualenv inside the checkout
      out[str(path.relative_to(root))] = _sha1(path)
  return dict(sorted(out.items()))


def map_is_current(data: dict, src: Path) -> bool:
  """Whether a stored coverage map still holds: every source its test file imported (``deps``,
  the test file itself and conftest included) has the same content in ``src`` now."""
  deps = data.get("deps")
  if not deps:
    return False
  return all((src / rel).is_file() and _sha1(src / rel) == sha for rel, sha in deps.items())


def coverage_map(test_file: str, out: str) -> int:
  """Runs ``test_file`` under coverage of every target module, one context per test; writes
  ``{"tests": [node ids in run order], "modules": {module: {line: [node ids]}}, "deps": {source:
  sha1}}`` (``deps``: the sources under the working directory it imported, for
  :func:`map_is_current`)."""
  import coverage
  import pytest

  cov = coverage.Coverage(data_file=None, include=[os.path.abspath(m) for m in TARGETS])
  order: List[str] = []

  class PerTestContext:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item):
      if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
      order.append(item.nodeid)
      cov.switch_context(item.nodeid)
      yield
      cov.switch_context("")

  sys.path.insert(0, os.getcwd())  # as `python -m pytest` does: `from tests.helpers import ...`
  cov.start()
  code = pytest.main(["-q", "-p", "no:cacheprovider", test_file], plugins=[PerTestContext()])
  cov.stop()
  data = cov.get_data()
  data.set_query_contexts(None)
  modules = {m: {str(k): sorted(c for c in v if c)
                 for k, v in data.contexts_by_lineno(os.path.abspath(m)).items()}
             for m in TARGETS}
  deps = imported_sources(Path.cwd(), [m for name, m in sys.modules.items()
                                       if name not in ("__main__", "__mp_main__")])  # this script
  deps[test_file] = _sha1(Path(test_file))
  Path(out).write_text(json.dumps({"tests": order, "modules": modules, "deps": deps}))
  return int(code)


def module_map(module: str, src: Path, workdir: Path, log) -> tuple:
  """The coverage map of ``module`` over its test files; returns (map, baseline seconds).

  Each test file is run once under coverage (that run is the baseline), and its map is kept until
  one of the sources it imported changes (:func:`map_is_current`): a change to one test file or
  one module reruns only the test files that import it.
  """
  merged, seconds = {"tests": [], "lines": {}}, 0.0
  for test_file in TARGETS[module]:
    out = workdir / "coverage" / f"{_slug(test_file)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (out.exists() and map_is_current(json.loads(out.read_text()), src)):
      log(f"[{module}] baseline + coverage map: {test_file}")
      t0 = time.time()
      code = subprocess.run([sys.executable, str(src / "tools" / "mutate.py"), "map", test_file,
                             str(out) + ".tmp"], cwd=src, env=_python_env(src.parent)).returncode
      if code != 0:
        raise SystemExit(f"mutate.py: {test_file} fails without a mutant (exit {code}); fix it "
                         "first.")
      data = json.loads(Path(str(out) + ".tmp").read_text())
      data["seconds"] = time.time() - t0
      out.write_text(json.dumps(data))
      Path(str(out) + ".tmp").unlink()
    data = json.loads(out.read_text())
    seconds += data["seconds"]
    merged["tests"] += data["tests"]
    for line, tests in data["modules"][module].items():
      merged["lines"].setdefault(line, []).extend(tests)
  return merged, seconds


def _statement_range(tree: ast.AST, line: int):
  """(first, last) line of the innermost statement containing ``line`` (decorators included)."""
  best = None
  for node in ast.walk(tree):
    if isinstance(node, ast.stmt):
      first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
      if first <= line <= node.end_lineno and (best is None or first >= best[0]):
        best = (first, node.end_lineno, node)
  return best


def tests_for_lines(source: str, lines, cmap) -> List[str]:
  """The tests (in run order) that execute the statement(s) of ``lines`` of ``source``."""
  tree = ast.parse(source)
  chosen = set()
  for line in lines:
    hit = _statement_range(tree, line)
    if hit is None:
      continue
    first, last, node = hit
    # A def/class header (defaults, decorators) runs at import: its tests are those of its body.
    span = range(first, (last if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                    ast.ClassDef)) else line) + 1)
    found = set().union(*(cmap["lines"].get(str(n), []) for n in span))
    if not found and any(str(n) in cmap["lines"] for n in span):
      found = set(cmap["tests"])  # module level, runs at import: every test depends on it
    chosen |= found
  return [t for t in cmap["tests"] if t in chosen]


def select_and_run(module: str, pristine: str, cmap_path: str) -> int:
  """The cosmic-ray test command: pytest on the tests that execute the mutated line(s)."""
  before = Path(pristine).read_text().splitlines()
  after = Path(module).read_text().splitlines()
  changed = set()
  for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
    if tag != "equal":
      changed.update(range(i1 + 1, max(i2, i1 + 1) + 1))
  tests = tests_for_lines("\n".join(before), sorted(changed), json.loads(Path(cmap_path).read_text()))
  if not tests:
    print(f"{NOT_COVERED} ({module}:{sorted(changed)})")
    return 0
  sys.stdout.flush()
  os.execv(sys.executable, [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            *tests])
  return 1  # not reached


# ------------------------------------------------------------------ one module

def _mutant_key(module: str, operator: str, line_text: str, nth: int) -> str:
  return hashlib.sha1(f"{module}|{operator}|{line_text.strip()}|{nth}".encode()).hexdigest()


def _sample_filter(db_path: Path, module_source: str, module: str, fraction: float) -> None:
  """Marks as skipped the pending mutants outside a stable pseudo-random ``fraction``."""
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import WorkResult, WorkerOutcome
  lines = module_source.splitlines()
  seen: Dict[tuple, int] = {}
  with use_db(str(db_path), WorkDB.Mode.open) as db:
    for item in list(db.pending_work_items):
      m = item.mutations[0]
      text = lines[m.start_pos[0] - 1]
      nth = seen[(m.operator_name, text)] = seen.get((m.operator_name, text), -1) + 1
      h = int(_mutant_key(module, m.operator_name, text, nth)[:8], 16) / 0xFFFFFFFF
      if h >= fraction:
        db.set_result(item.job_id, WorkResult(output="not in the sample",
                                              worker_outcome=WorkerOutcome.SKIPPED))


def _forget_survivors(db_path: Path) -> None:
  """Makes the surviving mutants of a session pending again (for ``cosmic-ray exec``)."""
  from cosmic_ray.work_db import WorkDB, WorkResultStorage, use_db
  from cosmic_ray.work_item import TestOutcome
  with use_db(str(db_path), WorkDB.Mode.open) as db:
    with db._session_maker.begin() as session:  # pylint: disable=protected-access
      session.query(WorkResultStorage).filter(
          WorkResultStorage.test_outcome == TestOutcome.SURVIVED).delete()


def _cosmic_ray(*args, cwd: Path, env) -> None:
  exe = Path(sys.executable).with_name("cosmic-ray")
  cmd = [str(exe) if exe.exists() else "cosmic-ray", *args]
  subprocess.run(cmd, cwd=cwd, env=env, check=True)


def run_module(module: str, src: Path, workdir: Path, sample: float, log) -> dict:
  slug = _slug(module)
  work = (workdir / "sessions" / slug).resolve()
  work.mkdir(parents=True, exist_ok=True)
  source = (src / module).read_text()
  stamp = hashlib.sha1((source + json.dumps([TARGETS[module], OPERATORS, sample])).encode()
                       ).hexdigest()
  db, cfg, cmap = work / "session.sqlite", work / "cosmic-ray.toml", work / "lines.json"
  env = _python_env(src.parent)
  fresh = not (work / "stamp").exists() or (work / "stamp").read_text() != stamp
  if fresh:
    for f in (db, work / "stamp"):
      f.unlink(missing_ok=True)
    (work / "pristine.py").write_text(source)
  lines, baseline = module_map(module, src, workdir, log)
  cmap.write_text(json.dumps(lines))
  from cosmic_ray.plugins import operator_names
  keep = re.compile("|".join(f"(?:{o})" for o in OPERATORS))
  excluded = sorted(re.escape(n) + "$" for n in operator_names() if not keep.fullmatch(n))
  select = (f"{sys.executable} {src / 'tools' / 'mutate.py'} select {module} "
            f"{work / 'pristine.py'} {cmap}")
  cfg.write_text("[cosmic-ray]\n"
                 f"module-path = {json.dumps(module)}\n"
                 f"timeout = {max(120.0, 3.0 * baseline):.0f}\n"
                 "excluded-modules = []\n"
                 f"test-command = {json.dumps(select)}\n"
                 "[cosmic-ray.distributor]\nname = \"local\"\n"
                 "[cosmic-ray.filters.operators-filter]\n"
                 f"exclude-operators = {json.dumps(excluded)}\n")
  tests_stamp = hashlib.sha1(b"".join((src / t).read_bytes() for t in TARGETS[module] + [
      "tests/conftest.py", "tests/helpers.py"] if (src / t).exists())).hexdigest()
  if not fresh and (work / "tests_stamp").exists() and (
      (work / "tests_stamp").read_text() != tests_stamp):
    log(f"[{module}] its tests changed: the survivors run again (killed mutants stay killed)")
    _forget_survivors(db)
  if fresh:
    _cosmic_ray("init", str(cfg), str(db), cwd=src, env=env)
    exe = Path(sys.executable).with_name("cr-filter-operators")
    subprocess.run([str(exe) if exe.exists() else "cr-filter-operators", str(db), str(cfg)],
                   cwd=src, env=env, check=True)
    if sample < 1.0:
      _sample_filter(db, source, module, sample)
    (work / "stamp").write_text(stamp)
  (work / "tests_stamp").write_text(tests_stamp)
  (work / "session.json").write_text(json.dumps({"module": module, "sample": sample,
                                                 "baseline": baseline}))
  t0 = time.time()
  log(f"[{module}] running mutants (baseline {baseline:.0f} s)")
  _cosmic_ray("exec", str(cfg), str(db), cwd=src, env=env)
  result = collect(module, db, source, sample, baseline)
  result["exec_seconds"] = round(time.time() - t0, 1)
  if (src / module).read_text() != source:
    raise SystemExit(f"mutate.py: {src / module} was left mutated; the results may be wrong.")
  return result


# ------------------------------------------------------------------ results and report

def load_equivalents() -> List[dict]:
  if not EQUIVALENT_FILE.exists():
    return []
  return tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])


def _changed_lines(diff: str):
  """The removed and the added lines of a mutant's diff, stripped, blank ones left out (cosmic-ray
  also rewrites a file's last blank line: it is not part of the mutant), joined by " / "."""
  minus = [l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
  plus = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
  return " / ".join(filter(None, minus)), " / ".join(filter(None, plus))


def _equivalent_reason(module: str, operator: str, diff: str, equivalents) -> str | None:
  before, after = _changed_lines(diff)
  for e in equivalents:
    if (e["module"] == module and e["operator"] == operator and e["line"].strip() == before
        and e.get("mutant", after).strip() == after):
      return e["reason"]
  return None


def collect(module: str, db_path: Path, source: str, sample: float, baseline: float) -> dict:
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import TestOutcome, WorkerOutcome
  equivalents = load_equivalents()
  counts = {"mutants": 0, "killed": 0, "survived": 0, "equivalent": 0, "not_covered": 0,
            "pending": 0}
  survivors, equivalent = [], []
  with use_db(str(db_path), WorkDB.Mode.open) as db:
    done = {item.job_id for item, _ in db.completed_work_items}
    counts["pending"] = sum(1 for item in db.work_items if item.job_id not in done)
    for item, result in db.completed_work_items:
      if result.worker_outcome in (WorkerOutcome.SKIPPED, WorkerOutcome.NO_TEST):
        continue
      m = item.mutations[0]
      counts["mutants"] += 1
      if result.test_outcome != TestOutcome.SURVIVED:
        counts["killed"] += 1
        continue
      entry = {"operator": m.operator_name, "line": m.start_pos[0], "diff": result.diff or "",
               "not_covered": NOT_COVERED in (result.output or "")}
      reason = _equivalent_reason(module, m.operator_name, entry["diff"], equivalents)
      if reason:
        counts["equivalent"] += 1
        equivalent.append({**entry, "reason": reason})
      else:
        counts["survived"] += 1
        counts["not_covered"] += entry["not_covered"]
        survivors.append(entry)
  return {"module": module, "sample": sample, "baseline_seconds": baseline,
          "source_sha1": hashlib.sha1(source.encode()).hexdigest()[:12], **counts,
          "survivors": sorted(survivors, key=lambda e: e["line"]),
          "equivalents": sorted(equivalent, key=lambda e: e["line"])}


def _score(r) -> str:
  n = r["mutants"] + r.get("pending", 0) - r["equivalent"]  # pending: not (yet) killed
  return f"{100.0 * r['killed'] / n:.1f}%" if n else "-"


def _interval(r) -> str:
  """95% Wilson interval of the score (a sample of the mutants estimates the full pass's score)."""
  n = r["mutants"] + r.get("pending", 0) - r["equivalent"]
  if not n:
    return "-"
  p, z = r["killed"] / n, 1.96
  mid, half = p + z * z / (2 * n), z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
  lo, hi = (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)
  return f"{100 * lo:.0f}-{100 * hi:.0f}%"


def render(results: List[dict]) -> str:
  out = ["| module | sample | mutants | killed | survived (not covered) | equivalent | score "
         "| 95% interval |", "|---|---|---|---|---|---|---|---|"]
  groups: Dict[str, dict] = {}
  for r in results:
    out.append(f"| `{r['module']}` | {r['sample']:g} | {r['mutants']} | {r['killed']} | "
               f"{r['survived']} ({r['not_covered']}) | {r['equivalent']} | {_score(r)} | "
               f"{_interval(r)} |"
               + (f" {r['pending']} pending" if r.get("pending") else ""))
    g = groups.setdefault(r["module"].split("/")[0] + "/", {k: 0 for k in (
        "mutants", "killed", "survived", "equivalent", "not_covered", "pending")})
    for k in g:
      g[k] += r.get(k, 0)
  for name, g in sorted(groups.items()):
    out.append(f"| **{name}** (all run) | | {g['mutants']} | {g['killed']} | {g['survived']} "
               f"({g['not_covered']}) | {g['equivalent']} | **{_score(g)}** | {_interval(g)} |")
  out += ["", "Score = killed / (mutants - equivalent), a mutant still pending counted as not "
          "killed; the interval is the 95% Wilson interval "
          "of the score of all mutants, estimated from the sample. Sources measured: " + ", ".join(
      f"`{r['module']}`@{r['source_sha1']}" for r in results) + "."]
  eq = [(r["module"], e) for r in results for e in r["equivalents"]]
  out += ["", f"### Equivalent mutants ({len(eq)})", ""]
  out += [f"- `{m}:{e['line']}` {e['operator']}: `{_changed_lines(e['diff'])[0]}` -> "
          f"`{_changed_lines(e['diff'])[1]}`: {e['reason']}" for m, e in eq] or ["none"]
  sv = [(r["module"], e) for r in results for e in r["survivors"]]
  out += ["", f"### Surviving mutants ({len(sv)})", ""]
  for m, e in sv:
    note = " (no test executes this line)" if e["not_covered"] else ""
    out += [f"`{m}:{e['line']}` {e['operator']}{note}", "```diff",
            "\n".join(l for l in e["diff"].splitlines() if not l.startswith(("---", "+++"))),
            "```"]
  if not sv:
    out.append("none")
  return "\n".join(out) + "\n"


def write_docs(path: Path, report: str) -> None:
  text = path.read_text()
  if DOCS_START not in text or DOCS_END not in text:
    raise SystemExit(f"mutate.py: {path} has no {DOCS_START} ... {DOCS_END} markers.")
  head, rest = text.split(DOCS_START, 1)
  path.write_text(head + DOCS_START + "\n" + report + DOCS_END + rest.split(DOCS_END, 1)[1])


def stored_result(workdirs: List[Path], module: str):
  """The result of ``module`` from the first workdir that has a session (or a result) for it;
  a session still running is read as it stands (its pending mutants counted)."""
  for workdir in workdirs:
    work = workdir / "sessions" / _slug(module)
    if (work / "session.sqlite").exists() and (work / "session.json").exists():
      info = json.loads((work / "session.json").read_text())
      return collect(module, work / "session.sqlite", (work / "pristine.py").read_text(),
                     info["sample"], info["baseline"])
    if (workdir / "results" / f"{_slug(module)}.json").exists():
      return json.loads((workdir / "results" / f"{_slug(module)}.json").read_text())
  return None


# ------------------------------------------------------------------ command line

def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ["map"]:
    return coverage_map(argv[1], argv[2])
  if argv[:1] == ["select"]:
    return select_and_run(*argv[1:4])
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--modules", nargs="*", default=[],
                 help="modules or folder prefixes to run (default: all of TARGETS)")
  p.add_argument("--sample", type=float, default=1.0,
                 help="fraction of the mutants to run (stable pseudo-random choice), in (0, 1]")
  p.add_argument("--workdir", default=str(REPO / "runs" / "mutate"))
  p.add_argument("--docs", default=None, help="also write the report into this markdown file")
  p.add_argument("--report-only", action="store_true",
                 help="render the stored results (sessions still running: so far) without running")
  p.add_argument("--also", nargs="*", default=[],
                 help="further workdirs whose results join the report")
  args = p.parse_args(argv)
  if not 0.0 < args.sample <= 1.0:
    p.error(f"--sample must be in (0, 1], got {args.sample}")
  unknown = [m for m in args.modules if not any(t.startswith(m) for t in TARGETS)]
  if unknown:
    p.error(f"--modules: {unknown} match no target; targets: {sorted(TARGETS)}")
  chosen = [t for t in TARGETS if not args.modules or any(t.startswith(m) for m in args.modules)]
  workdir = Path(args.workdir).resolve()
  results_dir = workdir / "results"
  results_dir.mkdir(parents=True, exist_ok=True)
  log = lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)  # noqa: E731
  if not args.report_only:
    src = make_scratch(workdir)
    for module in chosen:
      result = run_module(module, src, workdir, args.sample, log)
      (results_dir / f"{_slug(module)}.json").write_text(json.dumps(result, indent=1))
      log(f"[{module}] {result['mutants']} mutants, {result['killed']} killed, "
          f"{result['survived']} survived, {result['equivalent']} equivalent: {_score(result)}")
  results = [r for r in (stored_result([workdir] + [Path(d).resolve() for d in args.also], m)
                         for m in TARGETS) if r is not None]
  equivalents = load_equivalents()
  for r in results:  # equivalents listed after the run count as such in the report too
    still = []
    for e in r["survivors"]:
      reason = _equivalent_reason(r["module"], e["operator"], e["diff"], equivalents)
      if reason:
        r["equivalents"].append({**e, "reason": reason})
        r["equivalent"] += 1
        r["survived"] -= 1
        r["not_covered"] -= e["not_covered"]
      else:
        still.append(e)
    r["survivors"] = still
  report = render(results)
  (workdir / "report.md").write_text(report)
  print(report)
  if args.docs:
    write_docs(Path(args.docs), report)
  return 0


if __name__ == "__main__":
  sys.exit(main())
