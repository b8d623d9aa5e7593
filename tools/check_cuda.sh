#!/usr/bin/env bash
# Compile-check every CUDA kernel file (csrc/cuda/*.cu) with plain nvcc, no GPU and no torch needed:
# warnings are errors (nvcc, host compiler and ptxas), spills fail the check, and the ptxas resource report
# (registers, static shared memory, stack, spills per kernel and architecture) plus the dynamic shared memory
# each recurrent launch plans for goes to csrc/cuda/RESOURCES.txt (or $RESOURCES_OUT).
#
#   tools/check_cuda.sh                 # sm_90 and sm_80
#   ARCHS="90" tools/check_cuda.sh      # one architecture
#   NVCC=/path/to/nvcc RESOURCES_OUT=/tmp/r.txt tools/check_cuda.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-nvcc}
ARCHS=${ARCHS:-"90 80"}
OUT=${RESOURCES_OUT:-csrc/cuda/RESOURCES.txt}
command -v "$NVCC" >/dev/null || { echo "check_cuda.sh: nvcc not found (set NVCC or PATH)" >&2; exit 2; }
DEMANGLE=cat
command -v c++filt >/dev/null && DEMANGLE=c++filt

# The same device flags as setup.py's nvcc build, plus warnings as errors everywhere.
FLAGS=(-c -std=c++17 -O3 --use_fast_math -lineinfo -DMTLFAST_WITH_CUDA -Icsrc
       -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror -Xptxas -v,-warn-spills,-warn-lmem-usage)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shopt -s nullglob
sources=(csrc/cuda/*.cu)
[ ${#sources[@]} -gt 0 ] || { echo "check_cuda.sh: no csrc/cuda/*.cu files" >&2; exit 2; }

{
  echo "# ptxas resource report of csrc/cuda/*.cu, written by tools/check_cuda.sh (do not edit)"
  echo "# $("$NVCC" --version | tail -n 2 | head -n 1)"
  echo "# flags: ${FLAGS[*]}"
  echo "# columns: arch  registers  static-smem-bytes  stack-bytes  spill-stores  spill-loads  kernel"
} > "$tmp/report"

status=0
for arch in $ARCHS; do
  for src in "${sources[@]}"; do
    obj="$tmp/$(basename "$src" .cu).sm_$arch.o"
    log="$tmp/$(basename "$src" .cu).sm_$arch.log"
    if ! "$NVCC" "${FLAGS[@]}" -arch="sm_$arch" -o "$obj" "$src" > "$log" 2>&1; then
      echo "check_cuda.sh: $src failed for sm_$arch:" >&2
      cat "$log" >&2
      status=1
      continue
    fi
    if grep -qiE "warning" "$log"; then
      echo "check_cuda.sh: $src has warnings for sm_$arch:" >&2
      grep -iE "warning" "$log" >&2
      status=1
    fi
    # ptxas -v prints, per entry: "Compiling entry function 'NAME' for 'sm_XX'", then a line with stack and
    # spills, then "Used N registers, ... N bytes smem ...".
    "$DEMANGLE" < "$log" | awk -v arch="sm_$arch" '
      /Compiling entry function/ { name = $0; sub(/.*Compiling entry function \047/, "", name);
                                   sub(/\047 for \047sm_[0-9a-z]+\047.*/, "", name); stack = 0; ss = 0; sl = 0; next }
      /bytes stack frame/ { stack = $1; ss = $5; sl = $9; next }
      /Used [0-9]+ registers/ && name != "" {
        regs = 0; smem = 0
        for (i = 1; i <= NF; i++) { if ($(i+1) == "registers,") regs = $i; if ($(i+1) == "bytes" && $(i+2) ~ /^smem/) smem = $i }
        printf "%-6s %4d %6d %6d %6d %6d  %s\n", arch, regs, smem, stack, ss, sl, name; name = "" }
    ' >> "$tmp/report"
  done
done

# Spills anywhere fail the check (ptxas -warn-spills already turns them into warnings above).
if awk '!/^#/ && ($5 > 0 || $6 > 0) { bad = 1 } END { exit bad ? 0 : 1 }' "$tmp/report"; then
  echo "check_cuda.sh: register spills reported:" >&2
  awk '!/^#/ && ($5 > 0 || $6 > 0)' "$tmp/report" >&2
  status=1
fi

# Dynamic shared memory per recurrent launch, from the same planning function the launchers use (host code
# only: runs without a GPU). Device limits: H100/H200 227 KB per block, A100 163 KB.
if [ $status -eq 0 ] && [ -f csrc/cuda/bilstm_kernels.cu ]; then
  cat > "$tmp/plan.cu" <<'EOF'
#include <cstdio>
#include "cuda/bilstm_cuda.h"
using namespace mtlfast::cuda;
int main() {
  struct Dev { const char* name; size_t smem; int sms; } devs[] = {{"H100 (sm_90)", 232448 - 1024, 132},
                                                                    {"A100 (sm_80)", 166912 - 1024, 108}};
  struct Shape { int K, B, H; } shapes[] = {{55, 32, 100}, {1, 32, 100}, {55, 128, 100}, {4, 32, 300}};
  std::printf("# dynamic shared memory per block of the recurrent kernels (plan_recurrent)\n");
  std::printf("# device        pass  precision  K  B  H    rows/block blocks W_hh-on-chip smem-bytes\n");
  for (const Dev& d : devs)
    for (const Shape& s : shapes)
      for (int fwd = 1; fwd >= 0; --fwd)
        for (int m = 0; m < 2; ++m) {
          RecurrentPlan p;
          const bool ok = plan_recurrent(fwd != 0, s.K, s.B, s.H, static_cast<RecurrentMath>(m), d.smem, d.sms, &p);
          std::printf("%-14s %-5s %-9s %3d %3d %3d  %s%d %d %s %zu\n", d.name, fwd ? "fwd" : "bwd",
                      m == 0 ? "bf16" : "fp32", s.K, s.B, s.H, ok ? "" : "NO-FIT ", p.rows_per_block, p.blocks,
                      p.weights_on_chip ? "yes" : "no", p.smem_bytes);
        }
  return 0;
}
EOF
  if "$NVCC" -std=c++17 -Icsrc -o "$tmp/plan" "$tmp/plan.cu" csrc/cuda/bilstm_kernels.cu -arch=sm_90 \
       > "$tmp/plan.log" 2>&1 && "$tmp/plan" > "$tmp/plan.txt" 2>> "$tmp/plan.log"; then
    { echo; cat "$tmp/plan.txt"; } >> "$tmp/report"
  else
    echo "check_cuda.sh: could not build/run the launch-plan table (not fatal):" >&2
    cat "$tmp/plan.log" >&2
  fi
fi

cp "$tmp/report" "$OUT"
cat "$OUT"
if [ $status -ne 0 ]; then
  echo "check_cuda.sh: FAILED" >&2
  exit 1
fi
echo "check_cuda.sh: OK (${#sources[@]} files x archs: $ARCHS; report in $OUT)"
