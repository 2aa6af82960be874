#!/usr/bin/env bash
# The CPU benchmarks, one after the other (what `make bench` runs); each appends to results.md.
# PY=path/to/python (default .venv/bin/python). Not part of CI: minutes to hours on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" benchmarks/throughput.py --batch_sizes=128,512 --xla_variants=default,ynn_conv_off,ynn_reduce_off
"$PY" benchmarks/method_costs.py
"$PY" benchmarks/em_floor.py
"$PY" benchmarks/profile_cpu.py
"$PY" benchmarks/pipeline.py
"$PY" benchmarks/trainer_overhead.py
"$PY" benchmarks/scaling.py
"$PY" benchmarks/memory.py
"$PY" benchmarks/sweep_cost.py
