"""Provenance of a results table: config, seeds, package versions, devices and git commit.

Every study script calls this once next to the table it writes, so that a number in a table can be
traced to the exact code and environment that produced it::

    from labelwise.experiments import provenance
    ...
    record = provenance.collect(configs={"ce": cfg_ce, ...}, seeds=[0, 1, 2])  # before training
    ...                                                                       # train, evaluate
    table = os.path.join(out, "results.md")
    provenance.write(table, record=record, extra={"seconds": 312})
    with open(table, "w") as f:
      f.write(table_markdown)
      f.write(provenance.footer(record, table))   # a one-line summary under the table

Collecting before training records the git state of the code that ran (editing files while a long
study runs does not change it). ``write`` saves ``results.provenance.json`` beside ``results.md``
(same stem) and returns the record; a study that only re-renders its table from saved numbers uses
:func:`load` to keep the record of the run that produced them.
The record holds: the UTC time, the command line, the seeds, every config (as plain dicts), the git
commit with a dirty flag and the list of modified files, the Python/platform/JAX devices, the
versions of the packages that change numbers, and the XLA/JAX environment variables.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from typing import Any, Dict, Iterable, Mapping, Optional

PACKAGES = ("labelwise", "jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint",
            "tensorflow-datasets", "array-record", "numpy", "scipy", "scikit-learn",
            "ml-collections", "mnist1d", "tensorflow")
ENV_VARS = ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION",
            "TFDS_DATA_DIR", "CUDA_VISIBLE_DEVICES")
# The checkout with links resolved (a worktree imported through a link, ``.pp/labelwise -> ..``,
# records its real paths), and the path it was imported as.
_REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_REPO_AS_IMPORTED = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_versions(packages: Iterable[str] = PACKAGES) -> Dict[str, Optional[str]]:
  """``{distribution: version}`` (None when not installed)."""
  from importlib import metadata
  out = {}
  for name in packages:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def _git(*args: str, strip: bool = True) -> Optional[str]:
  try:
    res = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=20)
  except (OSError, subprocess.SubprocessError):
    return None
  if res.returncode != 0:
    return None
  return res.stdout.strip() if strip else res.stdout


def git_info() -> Dict[str, Any]:
  """Commit, branch, and whether tracked files differ from it (``dirty``, ``modified`` files)."""
  commit = _git("rev-parse", "HEAD")
  if commit is None:
    return {"commit": None, "note": "not a git checkout (or git is not installed)"}
  # Porcelain lines are "XY path": the leading status column may be a space, so no strip().
  status = _git("status", "--porcelain", "--untracked-files=no", strip=False) or ""
  modified = sorted(line[3:] for line in status.splitlines() if line.strip())
  return {"commit": commit, "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
          "dirty": bool(modified), "modified": modified}


def _plain(value):
  """ConfigDicts, tuples, numpy scalars -> JSON-friendly values."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if hasattr(value, "item") and callable(value.item):  # numpy scalar
    try:
      return value.item()
    except (TypeError, ValueError):
      pass
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return repr(value)


def devices() -> Dict[str, Any]:
  try:
    import jax
    devs = jax.devices()
    return {"backend": jax.default_backend(), "count": len(devs),
            "kinds": sorted({d.device_kind for d in devs}), "process_count": jax.process_count()}
  except Exception as e:  # noqa: BLE001 - provenance must never break a study
    return {"error": f"{type(e).__name__}: {e}"}


def portable(text: str) -> str:
  """Machine paths in ``text`` made portable: the repository -> ``<repo>``, home -> ``~``, the
  temporary directory -> ``<tmp>``.

  Records are committed next to tables, so they must not carry this machine's absolute paths.
  """
  for repo in sorted({_REPO, _REPO_AS_IMPORTED}, key=len, reverse=True):
    text = text.replace(repo, "<repo>")
  home = os.path.expanduser("~")
  if home and home != "/":
    text = text.replace(home, "~")
  tmp = tempfile.gettempdir()
  if tmp and tmp != "/":
    text = text.replace(tmp.rstrip("/") + "/", "<tmp>/")
  return text


def collect(*, configs: Any = None, seeds: Optional[Iterable[int]] = None,
            extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
  """The provenance record (a JSON-serialisable dict).

  Args:
    configs: one config (ConfigDict or dict) or a mapping ``{name: config}`` of every config the
      study ran.
    seeds: the seeds the table aggregates over.
    extra: anything else worth keeping (e.g. ``{"smoke": True, "seconds": 312}``).
  """
  return {
      "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": ([portable(os.path.relpath(os.path.realpath(sys.argv[0]), _REPO)
                            if os.path.realpath(sys.argv[0]).startswith(_REPO + os.sep)
                            else os.path.basename(sys.argv[0]))]
                  + [portable(a) for a in sys.argv[1:]]) if sys.argv else [],
      "seeds": None if seeds is None else [int(s) for s in seeds],
      "configs": json.loads(portable(json.dumps(_plain(configs)))),
      "git": git_info(),
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "devices": devices(),
      "packages": package_versions(),
      "env": {k: portable(os.environ[k]) for k in ENV_VARS if k in os.environ},
      "extra": _plain(dict(extra or {})),
  }


def path_for(table_path: str) -> str:
  """``out/results.md`` -> ``out/results.provenance.json``."""
  return os.path.splitext(table_path)[0] + ".provenance.json"


def write(table_path: str, *, configs: Any = None, seeds: Optional[Iterable[int]] = None,
          extra: Optional[Mapping[str, Any]] = None,
          record: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
  """Writes the record next to ``table_path`` (see :func:`path_for`) and returns it.

  With ``record`` (from :func:`collect` at the start of the study) that record is written, with
  ``extra`` merged into its ``extra`` and the finishing time added; otherwise a record is collected
  now from ``configs``, ``seeds`` and ``extra``.
  """
  if record is None:
    record = collect(configs=configs, seeds=seeds, extra=extra)
  else:
    if configs is not None or seeds is not None:
      raise ValueError("write: pass either record= or configs=/seeds=, not both")
    record = dict(record)
    record["extra"] = {**record.get("extra", {}), **_plain(dict(extra or {}))}
    record["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
  with open(path_for(table_path), "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
    f.write("\n")
  return record


def load(table_path: str) -> Optional[Dict[str, Any]]:
  """The record saved next to ``table_path``, or None when there is none."""
  path = path_for(table_path)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


MISSING = ("\n\n_Provenance: none recorded (this table was produced before the study recorded its "
           "provenance)._\n")


def modified_code(git: Mapping[str, Any]):
  """The modified tracked files that can change numbers: all but the studies' own outputs.

  Studies run one after another in one checkout rewrite their tables (``experiments/**/*.md``,
  ``.json``, ``.png``); those edits do not make a later study's code differ from the commit.
  """
  return [f for f in git.get("modified", [])
          if not (f.startswith("experiments/") and f.endswith((".md", ".json", ".png")))]


def footer(record: Optional[Mapping[str, Any]], table_path: Optional[str] = None) -> str:
  """A short markdown summary of ``record`` to put under a table (:data:`MISSING` for None)."""
  if record is None:
    return MISSING
  git = record.get("git", {})
  commit = (git.get("commit") or "unknown")[:12] + (
      " (modified tree)" if git.get("dirty") and modified_code(git) else "")
  pk = record.get("packages", {})
  versions = ", ".join(f"{k} {pk[k]}" for k in ("jax", "flax", "optax", "numpy") if pk.get(k))
  dev = record.get("devices", {})
  where = f"{dev.get('count', '?')} x {'/'.join(dev.get('kinds', []) or ['?'])}"
  seeds = record.get("seeds")
  src = os.path.basename(path_for(table_path)) if table_path else "the provenance JSON"
  return (f"\n\n_Provenance: commit {commit}; {versions}; {where}; seeds {seeds}; "
          f"{record.get('created_utc', '')}. Configs and all versions: `{src}`._\n")
