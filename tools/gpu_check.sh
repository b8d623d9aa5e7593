#!/usr/bin/env bash
# tools/gpu_check.sh: the CUDA checks of mtlfast in one run on a machine with an NVIDIA GPU.
#
#   bash tools/gpu_check.sh [DATA_DIR [GLOVE_FILE]]
#
# 1. builds mtlfast._C with its CUDA kernels in place (MTLFAST_CUDA=1, for the GPU that is present);
# 2. runs the CUDA tests (tests/ops/test_bilstm_cuda.py, the cuda cases of tests/ops/test_optim.py and test_bilstm.py);
# 3. bench/bench_cuda.py (fused kernels vs cuDNN, CUDA-graph replay, paper-scale projection);
# 4. a short sweep on the GPU (python -m mtlfast.sweep --device cuda) on the generated suite;
# 5. with DATA_DIR: bench/bench_step.py --device cuda on the ten tasks, original protocol.
#
# STEPS (default "probe tests bench_cuda sweep bench_step") chooses the steps after the build.
# Each step has its own time limit inside an overall budget (BUDGET_S, default 540 s), so that a slow build still
# leaves the logs of what ran. Logs go to $OUT (default ./gpu-out): one .log per step, summary.txt, logs.tar.gz,
# and the built extensions (so that a second run can carry them: SKIP_BUILD=1).
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT/logs"
DATA=${1:-}
GLOVE=${2:-}
PY=${PYTHON:-python3}
# The C++ CPU kernels are not what this script measures: -O1 builds them in a fraction of -O3's time.
export PYTHONUNBUFFERED=1 MTLFAST_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} MTLFAST_CPU_OPT=${MTLFAST_CPU_OPT:--O1}
T0=$(date +%s)
DEADLINE=$((T0 + ${BUDGET_S:-540}))

step() {  # step NAME CAP_S CMD...
    local name=$1 cap=$2 left t s rc
    shift 2
    left=$((DEADLINE - $(date +%s)))
    t=$((left < cap ? left : cap))
    if [ "$t" -le 5 ]; then echo "== $name: skipped (budget spent)" | tee -a "$OUT/summary.txt"; return 1; fi
    s=$(date +%s)
    timeout "$t" "$@" > "$OUT/logs/$name.log" 2>&1
    rc=$?
    echo "== $name: rc=$rc in $(($(date +%s) - s)) s (limit $t s)" | tee -a "$OUT/summary.txt"
    tail -n "${TAIL:-15}" "$OUT/logs/$name.log"
    return $rc
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
    nvcc --version | tail -n 2
    grep -m1 "model name" /proc/cpuinfo; nproc
} > "$OUT/logs/env.log" 2>&1
cat "$OUT/logs/env.log" | tee "$OUT/summary.txt"
CAP=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))" 2>/dev/null || echo 9.0)
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$CAP}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    step build "${BUILD_S:-330}" $PY setup.py build_ext --inplace || { tar czf "$OUT/logs.tar.gz" -C "$OUT" logs; exit 1; }
    for so in mtlfast/_C.*.so mtlfast/data/_fast.*.so; do cp "$so" "$OUT/" && strip --strip-debug "$OUT/$(basename "$so")"; done
fi
$PY -c "import torch, mtlfast._C as C; print('WITH_CUDA', getattr(C, 'WITH_CUDA', None))" 2>&1 | tee -a "$OUT/summary.txt"

# Errors raised in the compiled ops (TORCH_CHECK) must reach Python as exceptions: one from a CPU op, two from the
# CUDA glue (a shape check before any launch; the precision check). A crash is backtraced with cuda-gdb.
cat > /tmp/mtlfast_probe.py <<'PROBE'
import faulthandler, sys
faulthandler.enable()
import torch
import mtlfast._C as C
which = sys.argv[1]
K, B, T, E, H = 2, 3, 4, 5, 6
dev = "cuda"
args = lambda: [torch.randn(K, B, T, E, device=dev), torch.full((K, B), T, dtype=torch.long, device=dev),
                torch.randn(K, 2, 4 * H, E, device=dev), torch.randn(K, 2, 4 * H, H, device=dev),
                torch.randn(K, 2, 4 * H, device=dev)]
try:
    if which == "cpu":
        C.set_cpu_kernel_path("bogus")
    elif which == "cuda_shape":
        a = args(); a[3] = a[3][:, :, :-1]
        C.bilstm_forward_cuda(*a, "fp32", True)
    elif which == "cuda_precision":
        C.bilstm_forward_cuda(*args(), "fp16", True)
    print(which, "returned without an error")
except Exception as e:
    print(which, "raised", type(e).__name__, str(e)[:160])
PROBE
probe() {
    local w rc
    for w in cpu cuda_shape cuda_precision; do
        PYTHONPATH=$PWD $PY /tmp/mtlfast_probe.py $w; rc=$?; echo "$w rc=$rc"
        if [ $rc -ne 0 ] && command -v cuda-gdb > /dev/null; then
            PYTHONPATH=$PWD timeout 60 cuda-gdb -batch -ex run -ex bt --args $PY /tmp/mtlfast_probe.py $w 2>&1 | grep -v "^\[New Thread\|^\[Thread" | tail -n 40
        fi
    done
}
export -f probe
export PY
want() { case " ${STEPS:-probe tests bench_cuda sweep bench_step} " in *" $1 "*) return 0;; esac; return 1; }
want probe && TAIL=70 step probe 120 bash -c probe

# test_errors_name_the_argument is deselected by default: its errors are the probe's, and a crash there would end
# the whole test run (DESELECT= puts it back).
DESELECT=${DESELECT-tests/ops/test_bilstm_cuda.py::test_errors_name_the_argument}
want tests && step tests 150 $PY -m pytest -q -p no:cacheprovider -rs ${DESELECT:+--deselect $DESELECT} tests/ops/test_bilstm_cuda.py \
    tests/ops/test_optim.py tests/ops/test_bilstm.py tests/ops/test_heads.py tests/train/test_protocol_step.py \
    -k "${TESTS_K:-cuda or test_bilstm_cuda or gpu or occurrences}"
want bench_cuda && step bench_cuda 90 $PY bench/bench_cuda.py --repeat 30
cp bench/out/bench_cuda.csv "$OUT/logs/" 2>/dev/null
want sweep && step sweep 75 $PY -m mtlfast.sweep --device cuda --steps-single 300 --steps-pair 600 --no-progress --out /tmp/gpu-sweep
if [ -n "$DATA" ] && want bench_step; then
    G=()
    [ -n "$GLOVE" ] && G=(--glove "$GLOVE")
    step bench_step 150 $PY bench/bench_step.py --device cuda --data "$DATA" "${G[@]}" --protocol original \
        --single-task pos --steps 20 --array-steps 5 --repeat 3 --threads 4
    cp bench/out/bench_step.csv "$OUT/logs/" 2>/dev/null
fi
echo "total $(($(date +%s) - T0)) s" | tee -a "$OUT/summary.txt"
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
