"""What a run prints: no TFDS download wording for offline data, a summary line, "resumed" at WARNING."""

import os
import subprocess
import sys

from labelwise.data import pipeline, registry
from labelwise.train import writers


def test_run_summary_numbers():
  line = writers.run_summary(steps=300, start_step=100, batch_size=32, wall_seconds=10.0,
                             workdir="runs/x", results={"eval/accuracy": 0.91234})
  assert "step 300 (resumed at step 100)" in line
  assert "10.0 s wall" in line
  assert "640 examples/s" in line  # (300 - 100) * 32 / 10
  assert "eval/accuracy 0.9123" in line and line.endswith("workdir runs/x")
  fresh = writers.run_summary(steps=5, start_step=0, batch_size=4, wall_seconds=2.0, workdir="w")
  assert "resumed" not in fresh and "10 examples/s" in fresh


def test_offline_generation_prints_no_download_wording_or_escape_codes(tmp_path, capfd):
  spec = registry.get_dataset_spec("digits")
  source = pipeline._open_source(spec, "test", str(tmp_path))
  assert len(source) == 359
  out, err = capfd.readouterr()
  assert "Downloading" not in out + err and "downloaded and prepared" not in out + err
  assert "\x1b[" not in out + err and "%|" not in err  # no escape codes, no progress bars


def _cli(workdir, cwd):
  return subprocess.run([sys.executable, "-m", "labelwise.train", "--config=digits_ce:runlocal",
                         f"--workdir={workdir}", "--config.total_steps=2", "--config.log_every=1"],
                        cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cli_summary_and_resume_warning(tmp_path):
  first = _cli("run", tmp_path)
  assert first.returncode == 0, first.stdout + first.stderr
  summary = [l for l in first.stdout.splitlines() if l.startswith("done: ")]
  assert len(summary) == 1, first.stdout
  assert "step 2 in" in summary[0] and "examples/s" in summary[0]
  assert summary[0].endswith(f"workdir run")
  again = _cli("run", tmp_path)  # the same run: resumes from its final checkpoint
  assert again.returncode == 0, again.stdout + again.stderr
  assert "resumed from step 2" in again.stderr
  assert "Downloading" not in first.stdout + first.stderr


def _quickstart():
  import importlib.util
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "experiments", "quickstart.py")
  spec = importlib.util.spec_from_file_location("quickstart", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_demo_table_has_chance_and_expected_values_for_every_metric():
  q = _quickstart()
  names = [row[0] for row in q.QUICKSTART]
  assert any("cluster" in n for n in names)  # the clustering row, with k-means beside it
  for name, _, _, _, metrics in q.QUICKSTART:
    for metric in metrics:
      chance, expected = q.EXPECTED[(name, metric)]
      assert expected is not None, (name, metric)
  table = q.format_table([("digits / ce", 300, {"eval/accuracy": 0.97, "eval/loss": 0.1}, 9.5, "w")])
  lines = table.splitlines()
  assert "chance" in lines[0] and "expected" in lines[0]
  assert lines[2].split("|")[4:7] == [" 0.9700 ", " 0.1000 ", " 0.9749 "]
  assert lines[3].split("|")[3:7] == [" eval/loss ", " 0.1000 ", " 2.3030 ", " 0.1085 "]
