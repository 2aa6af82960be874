#!/usr/bin/env bash
# ResNet-18 (CIFAR, 32x32x3) training-step throughput at batch 512, float32 and bfloat16 compute
# (params and loss float32), with compile time, on whatever GPU this machine has. < 6 minutes.
#
#   bash benchmarks/gpu.sh                      # from the repository root, on the GPU machine
#
# Environment (all optional):
#   PYTHON   interpreter with JAX (default: python3). Nothing is downloaded.
#   WHEELS   a folder of wheels (flax, optax, ml-collections, absl-py, ... as the lead carries them);
#            installed with `pip --no-index --no-deps` into a throw-away venv that sees the system
#            site-packages (so the machine's own CUDA jax is used) when labelwise cannot be imported.
#   OUT      where results.md and gpu_bench.log go (default: runs/gpu_bench).
#   BATCH, STEPS, ROUNDS   default 512, 10, 3. GPU_SH_ALLOW_CPU=1 runs on a CPU backend (tests).
#
# Path 1: the project's own step (benchmarks/throughput.py --no_torch): needs flax, optax,
#         ml_collections, absl, scipy. Path 2 (fallback, says so): benchmarks/resnet_purejax.py, the
#         same network and optimizer in pure JAX.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$REPO/runs/gpu_bench}
BATCH=${BATCH:-512}
STEPS=${STEPS:-10}
ROUNDS=${ROUNDS:-3}
BUDGET=330  # seconds for the benchmark parts (the whole script stays under 6 minutes)
mkdir -p "$OUTDIR"
exec > >(tee -a "$OUTDIR/gpu_bench.log") 2>&1
say() { echo "[gpu.sh $(date -u +%H:%M:%S)] $*"; }

if ! command -v "$PY" >/dev/null; then
  say "FALLBACK: no interpreter '$PY' on this machine; set PYTHON=/path/to/python. Nothing was run."
  exit 2
fi
if ! "$PY" -c "import jax" 2>/dev/null; then
  say "FALLBACK: '$PY -c \"import jax\"' fails on this machine; no benchmark can run without JAX."
  say "Carry a jax[cuda] wheel set and install it, or point PYTHON at an interpreter that has it."
  exit 3
fi
"$PY" - <<'EOF'
import jax, os, platform
print(f"[gpu.sh] python {platform.python_version()}, jax {jax.__version__}, "
      f"backend {jax.default_backend()}, devices {jax.devices()}, loadavg {os.getloadavg()}")
EOF
BACKEND=$("$PY" -c "import jax; print(jax.default_backend())" 2>/dev/null)
if [ "$BACKEND" = "cpu" ] && [ "${GPU_SH_ALLOW_CPU:-0}" != "1" ]; then
  say "FALLBACK: this jax has no GPU backend (jax.default_backend() == 'cpu'): the installed jax"
  say "lacks its CUDA plugin (jax[cuda12]) or the driver is not visible. Not benchmarking a CPU."
  exit 4
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader | sed 's/^/[gpu.sh] nvidia-smi: /'

# `labelwise` is the repository root itself: make it importable without installing anything.
SITE=$(mktemp -d)
ln -s "$REPO" "$SITE/labelwise"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
IMPORTS="import flax, optax, ml_collections; import labelwise.train.step, labelwise.train.methods, labelwise.models, labelwise.configs.common"
if ! "$PY" -c "$IMPORTS" 2>"$OUTDIR/import_error.txt"; then
  if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    say "labelwise's dependencies are missing; installing the carried wheels from $WHEELS (no network)"
    "$PY" -m venv --system-site-packages "$SITE/venv" && \
      "$SITE/venv/bin/python" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl && \
      PY="$SITE/venv/bin/python"
  fi
fi
start=$SECONDS
if "$PY" -c "$IMPORTS" 2>"$OUTDIR/import_error.txt"; then
  say "path 1: the project's step (benchmarks/throughput.py), batch $BATCH, float32 + bfloat16"
  timeout $BUDGET "$PY" benchmarks/throughput.py --no_torch --models=resnet18 \
    --batch_sizes="$BATCH" --dtypes=float32,bfloat16 --steps="$STEPS" --rounds="$ROUNDS" \
    --out_dir="$OUTDIR"
  rc=$?
  [ $rc -eq 0 ] && { say "done; table above and in $OUTDIR/results.md"; exit 0; }
  say "path 1 failed or timed out (exit $rc); rows printed above are valid. Trying the fallback."
else
  say "FALLBACK: labelwise cannot be imported here ($(tail -1 "$OUTDIR/import_error.txt"))."
  say "Running the pure-JAX ResNet-18 (same network/optimizer, not the project's step)."
fi
left=$(( BUDGET - (SECONDS - start) ))
if [ $left -lt 60 ]; then say "no time left for the fallback"; exit 5; fi
timeout $left "$PY" benchmarks/resnet_purejax.py --batch_size="$BATCH" --dtypes=float32,bfloat16 \
  --steps=$(( STEPS * ROUNDS )) --out_dir="$OUTDIR"
rc=$?
say "fallback finished (exit $rc); table above and in $OUTDIR/results_purejax.md"
exit $rc
