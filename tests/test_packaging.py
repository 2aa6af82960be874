"""The package as users install it: the built wheel's metadata, the base install, the installed CLI."""

import configparser
import email.parser
import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

import labelwise

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BASE = {"jax", "numpy"}  # the base install: what labelwise.losses needs


def _requirement_name(req: str) -> str:
  return re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _copy_source(dest: str) -> None:
  """The files setup.cfg packages (its package folders, the root modules) into ``dest``."""
  cfg = configparser.ConfigParser()
  cfg.read(os.path.join(_ROOT, "setup.cfg"))
  folders = [p.split(".", 1)[1].replace(".", os.sep) for p in cfg["options"]["packages"].split()
             if "." in p]
  for name in os.listdir(_ROOT):
    if os.path.isfile(os.path.join(_ROOT, name)) and not name.startswith("."):
      shutil.copy(os.path.join(_ROOT, name), dest)
  for folder in folders:
    src = os.path.join(_ROOT, folder)
    os.makedirs(os.path.join(dest, folder), exist_ok=True)
    for name in os.listdir(src):
      if os.path.isfile(os.path.join(src, name)) and not name.endswith(".pyc"):
        shutil.copy(os.path.join(src, name), os.path.join(dest, folder))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """Builds the wheel from a copy of the packaged files (no network: the venv's setuptools)."""
  src = tmp_path_factory.mktemp("src")
  out = tmp_path_factory.mktemp("wheel")
  _copy_source(str(src))
  proc = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
       "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  (path,) = glob.glob(os.path.join(out, "labelwise-*.whl"))
  return path


def _metadata(wheel_path):
  with zipfile.ZipFile(wheel_path) as z:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    return email.parser.Parser().parsestr(z.read(name).decode()), z.namelist()


def test_wheel_base_requirements_are_jax_and_numpy(wheel):
  meta, _ = _metadata(wheel)
  requires = meta.get_all("Requires-Dist")
  base = {_requirement_name(r) for r in requires if "extra ==" not in r}
  assert base == _BASE, base
  train = {_requirement_name(r) for r in requires if re.search(r"extra\s*==\s*['\"]train['\"]", r)}
  assert {"flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "absl-py", "ml-collections",
          "scikit-learn", "scipy"} <= train, train
  assert set(meta.get_all("Provides-Extra")) >= {"train", "studies", "test", "docs"}
  assert meta["Version"] == labelwise.__version__


def test_wheel_ships_license_types_marker_and_every_package(wheel):
  _, names = _metadata(wheel)
  assert "labelwise/py.typed" in names
  assert any(re.search(r"\.dist-info/(licenses/)?LICENSE$", n) for n in names), names
  for sub in ("losses", "train", "eval", "configs", "data/builders", "train/methods", "models"):
    assert f"labelwise/{sub}/__init__.py" in names
  assert "labelwise/configs/digits_ce.py" in names
  assert not any(n.startswith(("labelwise/tests/", "labelwise/experiments/")) for n in names)


def test_losses_need_only_the_base_install():
  """Every public loss imports, jits and differentiates with the extras' packages blocked."""
  proc = subprocess.run([sys.executable, os.path.join(_ROOT, "tests", "base_install_check.py")],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "labelwise[train]" in proc.stdout and proc.stdout.strip().splitlines()[-1].startswith("OK")


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
  """The wheel installed with ``pip install --target`` (its dependencies are the venv's)."""
  target = tmp_path_factory.mktemp("site")
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                         str(target), wheel], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return str(target)


def run_installed(site, *args, cwd):
  """``python -m labelwise.train ARGS`` with only the installed wheel on the path, outside the checkout."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = site
  proc = subprocess.run([sys.executable, "-m", "labelwise.train", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)
  return proc


def test_installed_package_is_the_wheel(installed, tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = installed
  out = subprocess.run([sys.executable, "-c", "import labelwise; print(labelwise.__file__)"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
  assert out.strip().startswith(installed)


def test_installed_cli_finds_configs_by_name_outside_the_checkout(installed, tmp_path):
  listed = run_installed(installed, "--list-configs", cwd=tmp_path)
  assert listed.returncode == 0, listed.stderr
  assert "digits_ce" in listed.stdout and "mnist1d_ce" in listed.stdout
  for spec in ("digits_ce:runlocal", "labelwise.configs.digits_ce:runlocal"):
    shown = run_installed(installed, f"--config={spec}", "--show_config", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "total_steps: 20" in shown.stdout
  helped = run_installed(installed, "--help", cwd=tmp_path)
  assert helped.returncode == 0 and "--list-configs" in helped.stdout
  ran = run_installed(installed, "--config=digits_ce:runlocal", "--workdir=run",
                      "--config.total_steps=2", "--config.log_every=1", cwd=tmp_path)
  assert ran.returncode == 0, ran.stdout + ran.stderr
  assert "eval/accuracy=" in ran.stdout
  assert os.path.exists(tmp_path / "run" / "results.json")
