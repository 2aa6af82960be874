#!/usr/bin/env bash
# The GPU benchmarks in one script (about 8 minutes on an H100/H200), on whatever GPU this machine has:
#   1. ResNet-18 (CIFAR stem) training step, batch 512: JAX float32 (TF32 compute) and bfloat16 against
#      a tuned PyTorch (cudnn.benchmark, channels_last, TF32, bf16 autocast, fused SGD,
#      torch.compile(mode="max-autotune") and eager), with compile times and % of the dense peak
#      (benchmarks/gpu_resnet18.py);
#   2. method costs: losses as scanned device programs, each method's ResNet-18 step vs the CE step at
#      batch 512 (benchmarks/method_costs.py);
#   3. the collision EM per iteration against the memory floor and Sinkhorn (benchmarks/em_floor.py).
#
#   bash benchmarks/gpu.sh                      # from the repository root, on the GPU machine
#   SMOKE=1 GPU_SH_ALLOW_CPU=1 bash benchmarks/gpu.sh   # CPU smoke run in seconds (what the test runs)
#
# Environment (all optional):
#   PYTHON   interpreter with JAX (default: python3). Nothing is downloaded.
#   WHEELS   a folder of wheels (flax, optax, ml-collections, absl-py, ... as the lead carries them);
#            installed with `pip --no-index --no-deps` into a throw-away venv that sees the system
#            site-packages (so the machine's own CUDA jax is used) when labelwise cannot be imported.
#   OUT      where the results and gpu_bench.log go (default: runs/gpu_bench).
#   BATCH, STEPS   default 512, 30. GPU_SH_ALLOW_CPU=1 runs on a CPU backend; SMOKE=1 tiny sizes.
#
# Each part has its own time limit, so a slow part cannot starve the others; the rows it printed stay
# valid. If labelwise's dependencies cannot be imported, benchmarks/resnet_purejax.py (same network
# and optimizer in pure JAX) runs instead of part 1 and parts 2-3 are skipped (they say so).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$REPO/runs/gpu_bench}
BATCH=${BATCH:-512}
STEPS=${STEPS:-30}
SMOKE=${SMOKE:-0}
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
"$PY" - <<'PYEOF'
import jax, os, platform
print(f"[gpu.sh] python {platform.python_version()}, jax {jax.__version__}, "
      f"backend {jax.default_backend()}, devices {jax.devices()}, loadavg {os.getloadavg()}")
PYEOF
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

if [ "$SMOKE" = "1" ]; then
  R18_ARGS="--smoke --dtypes=float32 --torch --torch_variants=eager"
  MC_ARGS="--quick --skip_steps"
  EM_ARGS="--quick"
  T1=240; T2=240; T3=240
else
  R18_ARGS="--batch=$BATCH --steps=$STEPS --torch --torch_variants=compile,eager"
  MC_ARGS="--step_batch=$BATCH --steps=3 --rounds=3 --calls=100 --loss_rounds=5"
  EM_ARGS="--rounds=5"
  T1=300; T2=150; T3=60
fi
status=0
if "$PY" -c "$IMPORTS" 2>"$OUTDIR/import_error.txt"; then
  say "part 1: ResNet-18 JAX vs tuned PyTorch ($R18_ARGS), limit ${T1}s"
  timeout $T1 "$PY" benchmarks/gpu_resnet18.py $R18_ARGS --out="$OUTDIR/results_gpu_resnet18.md"
  rc=$?; [ $rc -ne 0 ] && { say "part 1 failed or timed out (exit $rc); rows printed above stay valid"; status=$rc; }
  say "part 2: method costs ($MC_ARGS), limit ${T2}s"
  timeout $T2 "$PY" benchmarks/method_costs.py $MC_ARGS --out_dir="$OUTDIR"
  rc=$?; [ $rc -ne 0 ] && { say "part 2 failed or timed out (exit $rc)"; status=$rc; }
  say "part 3: collision EM vs the memory floor ($EM_ARGS), limit ${T3}s"
  timeout $T3 "$PY" benchmarks/em_floor.py $EM_ARGS --out_dir="$OUTDIR"
  rc=$?; [ $rc -ne 0 ] && { say "part 3 failed or timed out (exit $rc)"; status=$rc; }
  say "done (exit $status); tables above and in $OUTDIR/"
  exit $status
fi
say "FALLBACK: labelwise cannot be imported here ($(tail -1 "$OUTDIR/import_error.txt"))."
say "Running the pure-JAX ResNet-18 (same network/optimizer, not the project's step); parts 2-3 need"
say "labelwise and are skipped."
timeout $T1 "$PY" benchmarks/resnet_purejax.py --batch_size="$BATCH" --dtypes=float32,bfloat16 \
  --steps="$STEPS" --out_dir="$OUTDIR"
rc=$?
say "fallback finished (exit $rc); table above and in $OUTDIR/results_purejax.md"
exit $rc
