"""``python -m labelwise.train``: configs by name, --list-configs, --help, --show_config, one-line errors."""

import os
import subprocess
import sys

import pytest

from labelwise.configs import registry
from labelwise.configs import digits_ce


def train_cli(*args, cwd):
  return subprocess.run([sys.executable, "-m", "labelwise.train", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def test_shipped_configs_are_the_modules_with_get_config():
  configs = registry.shipped_configs()
  assert "digits_ce" in configs and "mnist1d_ce" in configs
  assert not {"common", "registry", "collision_common", "fierce_common"} & set(configs)
  assert configs["digits_ce"] == digits_ce.__doc__.strip().splitlines()[0]


def test_resolve_name_module_and_path(tmp_path, monkeypatch):
  path = os.path.abspath(digits_ce.__file__)
  assert registry.resolve("digits_ce") == path
  assert registry.resolve("digits_ce:runlocal,seed=3") == path + ":runlocal,seed=3"
  assert registry.resolve("labelwise.configs.digits_ce:runlocal") == path + ":runlocal"
  own = tmp_path / "my_config.py"
  own.write_text("def get_config(arg=None):\n  return None\n")
  monkeypatch.chdir(tmp_path)
  assert registry.resolve("my_config.py:x") == "my_config.py:x"  # a file wins, relative to cwd
  with pytest.raises(registry.ConfigNotFoundError, match=r"--config=digits_ce\b"):
    registry.resolve("configs/digits_ce.py")  # no such file here: the error names the short form
  with pytest.raises(registry.ConfigNotFoundError, match="--list-configs"):
    registry.resolve("digitz")


def test_help_is_real_and_exits_0(tmp_path):
  proc = train_cli("--help", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  for text in ("--config", "--workdir", "--list-configs", "--show_config", "--coordinator_address",
               "--config=digits_ce --show_config"):
    assert text in proc.stdout


def test_list_configs(tmp_path):
  proc = train_cli("--list-configs", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
  for name, description in registry.shipped_configs().items():
    assert description in lines[name]


@pytest.mark.parametrize("form", ["digits_ce", "labelwise.configs.digits_ce", "PATH"])
def test_show_config_with_args_and_overrides(tmp_path, form):
  spec = os.path.abspath(digits_ce.__file__) if form == "PATH" else form
  proc = train_cli(f"--config={spec}:runlocal,seed=3", "--show_config", "--config.log_every=7",
                   cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  shown = dict(line.split(": ", 1) for line in proc.stdout.splitlines()
               if ": " in line and not line.startswith(" "))
  expected = digits_ce.get_config("runlocal,seed=3")
  assert shown["seed"] == "3" and shown["total_steps"] == str(expected.total_steps) == "20"
  assert shown["log_every"] == "7" and shown["model"] == expected.model


@pytest.mark.parametrize("args, text", [
    (("--config=digits_ce", "--workdir=w", "--config.total_stpes=3"), "did you mean \"total_steps\""),
    (("--config=digits_ce", "--workdir=w", "--config.parallel=bogus"), "`parallel` must be one of"),
    (("--config=digits_ce", "--workdir=w", "--config.total_steps=abc"), "total_steps"),
    (("--config=gaussians_avgk:method=two_head", "--workdir=w", "--config.two_head.weight=-1"),
     "`two_head.weight` must be >= 0"),
    (("--config=configs/digits_ce.py", "--workdir=w"), "--config=digits_ce"),
    (("--config=nope", "--workdir=w"), "--list-configs"),
    (("--config=digits_ce",), "--workdir is required"),
])
def test_config_errors_are_one_line_and_exit_2(tmp_path, args, text):
  proc = train_cli(*args, cwd=tmp_path)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("labelwise.train: error: "), proc.stderr
  assert text.lower() in lines[0].lower()
  assert not os.path.exists(tmp_path / "w")  # nothing was started
