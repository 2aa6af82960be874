"""benchmarks/gpu.sh in its CPU smoke mode: every part runs and writes its table.

The GPU numbers themselves need a GPU; this checks that the script a GPU session runs once is not
broken (the tuned PyTorch peer included when torch is installed), in tiny sizes.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", name + ".py"))
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(os.path.join(ROOT, "benchmarks"))
  return module


def test_gpu_sh_smoke_runs_every_part_on_cpu(tmp_path):
  env = dict(os.environ, SMOKE="1", GPU_SH_ALLOW_CPU="1", PYTHON=sys.executable,
             OUT=str(tmp_path), JAX_PLATFORMS="cpu")
  out = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu.sh")], env=env,
                       capture_output=True, text=True, timeout=900)
  log = out.stdout + out.stderr
  assert out.returncode == 0, log[-4000:]
  r18 = (tmp_path / "results_gpu_resnet18.md").read_text()
  jax_row = re.search(r"^\| JAX \(labelwise ResNet18, jit\) \| float32 \| cpu \| ([\d,]+) \|", r18,
                      re.M)
  assert jax_row and float(jax_row.group(1).replace(",", "")) > 0, r18
  results = (tmp_path / "results.md").read_text()
  assert "## Method costs as device time" in results and "labelwise.simloss" in results
  assert "## Collision EM against the memory floor" in results
  assert re.search(r"\| 512 x 10 \| EM \(collision_pseudo_labels\) \| -?[\d.]+ \|", results), results
  if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed: the PyTorch peer was not exercised")
  torch_row = re.search(r"^\| PyTorch, eager, channels_last, fused SGD \| float32 \| cpu \| "
                        r"([\d,]+) \|.*\| ([\d.]+)x \|$", r18, re.M)
  assert torch_row and float(torch_row.group(1).replace(",", "")) > 0, r18


def test_utilisation_and_precision_names():
  g = _load("gpu_resnet18")
  # 83.6k examples/s in bfloat16 on an H200 is 28% of its 989 TFLOPS dense peak (the numbers).
  assert g.utilisation(83578, "bfloat16", "NVIDIA H200", 64) == "28.1%"
  assert g.precision_name("float32", "NVIDIA H200") == "tf32"
  assert g.precision_name("float32", "cpu") == "float32"
  assert g.utilisation(1000, "float32", "cpu", 64) == "n/a"
  assert g.utilisation(83578, "bfloat16", "NVIDIA H200", 4) == "n/a"  # smoke widths: no claim
