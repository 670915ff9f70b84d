#!/usr/bin/env bash
# One short GPU session on a fresh H100/H200 machine, run from the repository root:
#
#     OUT=/some/folder bash benchmarks/gpu_session.sh
#
# Everything goes into $OUT as it is produced, so a session cut short still leaves what it finished:
#   0-env.txt              GPU, driver, torch, CPU (lscpu)
#   1-ops.txt              python -m torch_utils.ops: toolchain, kernel builds, kernel-vs-reference check
#   2-pytest.txt           the CUDA suite, the build test and the mixed-precision training test
#   3-gpu-train.md         training sec/kimg, SHHQ 512x256 and 1024x512: kernels vs reference, NHWC, TF32
#   3b-tools-batch.txt     generate.py's and style_mixing.py's seconds per image on the GPU at batch 1, 4, 16
#                          and 32, with the default batch (latent.generation.default_batch): is it the fastest?
#   4-fid.txt              fid50k_full wall time, 512x256 SHHQ config, stand-in detector of Inception's cost
#   5-cpu.md               the host CPU's benchmark (AMX / AVX512_BF16 bf16 figures), if time is left
#   session.log            what ran, when, and each step's exit status
# Each step has a hard time limit; the whole script stays within $BUDGET seconds (default 480).
#
#     bash benchmarks/gpu_session.sh --check
#
# checks on any machine (no GPU needed, about a minute) that every step's command still parses its options
# and that the tests it names exist, and writes nothing.
set -u
PY=${PY:-python3}

if [ "${1:-}" = "--check" ]; then
    export PYTHONPATH=.
    status=0
    for script in benchmarks/gpu_train.py benchmarks/gpu_fid.py benchmarks/cpu.py benchmarks/generator_speed.py; do
        $PY "$script" --help > /dev/null || { echo "gpu_session --check: $script --help failed"; status=1; }
    done
    $PY -c "import torch_utils.ops.__main__" || { echo "gpu_session --check: torch_utils.ops failed"; status=1; }
    $PY -m pytest -q --collect-only -p no:cacheprovider tests/test_cuda_ops.py tests/test_cuda_build.py \
        "tests/test_training.py::test_cuda_mixed_precision_training" > /dev/null \
        || { echo "gpu_session --check: the tests of step 2 do not collect"; status=1; }
    [ "$status" -eq 0 ] && echo "gpu_session --check: every step's command and test is there"
    exit "$status"
fi

OUT=${OUT:-gpu-session-out}
BUDGET=${BUDGET:-480}
export PYTHONPATH=.
mkdir -p "$OUT"
START=$(date +%s)

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
log() { echo "[$(elapsed) s] $*" | tee -a "$OUT/session.log"; }
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# run NAME LIMIT_S OUTFILE CMD...: the step under `timeout`, its output in OUTFILE, its status in the log.
run() {
    local name=$1 limit=$2 outfile=$3
    shift 3
    if [ "$limit" -lt 20 ]; then
        log "$name: skipped, $(left) s left"
        return
    fi
    log "$name: start (limit ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$outfile" 2>&1
    local status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        log "$name: TIMED OUT after ${limit} s"
    else
        log "$name: exit status $status"
    fi
}

{
    nvidia-smi
    $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
    lscpu
} > "$OUT/0-env.txt" 2>&1
log "environment written"

# 1. Build both kernels and check them against the reference paths (about a minute the first time).
run "1 torch_utils.ops" 150 1-ops.txt $PY -m torch_utils.ops

# 2. CUDA kernels vs reference (incl. the upfirdn2d per-shape dispatch), the build, mixed-precision training.
run "2 pytest" "$(min 180 $(( $(left) - 200 )))" 2-pytest.txt \
    $PY -m pytest -q tests/test_cuda_ops.py tests/test_cuda_build.py \
    "tests/test_training.py::test_cuda_mixed_precision_training"

# 3. Training sec/kimg (the script skips the runs that would not fit its own budget).
TRAIN_BUDGET=$(min 240 $(( $(left) - 110 )))
run "3 gpu_train" $(( TRAIN_BUDGET + 40 )) 3-gpu-train.log \
    $PY benchmarks/gpu_train.py --budget="$TRAIN_BUDGET" --out="$OUT/3-gpu-train.md" --force

# 3b. The tools' default batch on the GPU against batch 1, 4, 16 and 32 (issue 22, acceptance 2).
run "3b tools' batch" "$(min 90 $(( $(left) - 100 )))" 3b-tools-batch.txt \
    $PY -m benchmarks.generator_speed --device=cuda --tools --batches=1,4,16,32 --repeats=3 --budget=20

# 4. fid50k_full timing (runs the 50k only if its calibrated estimate fits).
FID_LIMIT=$(min 200 $(( $(left) - 20 )))
run "4 fid50k_full" "$FID_LIMIT" 4-fid.txt $PY benchmarks/gpu_fid.py --time-limit=$(( FID_LIMIT - 15 ))

# 5. The host CPU, if time is left: fp32/bf16 generator figures at 512x256, batch 1 to 16, each against the
#    same-run peak (AMX / AVX512_BF16 hosts give the bf16 figures this project's VM cannot).
run "5 cpu benchmark" "$(min 120 $(( $(left) - 5 )))" 5-cpu.log \
    $PY benchmarks/cpu.py --sections=generator --sizes=512 --batches=1,4,16 --repeats=1 --budget=20 \
    --out="$OUT/5-cpu.md" --force

log "session finished after $(elapsed) s"
