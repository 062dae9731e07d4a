#!/usr/bin/env bash
# The one script a session runs on a lent GPU (<= 5 minutes in all): install the package, run the
# GPU tests (pytest -m gpu: the Triton kernels against the float64 reference, bitwise determinism,
# model steps triton == reference), then the kernel benchmark; prints a short table last.
#
#   bash bench/gpu_check.sh            # results (logs, kernels.json, kernels.txt) go to $OUT or a temp dir
#
# No network there: torch and triton are preinstalled, so the install uses neither build
# isolation nor dependency resolution. Each stage has its own time limit so that the whole script
# stays within 5 minutes; a stage that fails or times out does not stop the next one, and the
# exit status is that of the tests.
set -uo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-$(mktemp -d /tmp/rskp-gpu-check.XXXXXX)}
mkdir -p "$out"
export MAX_JOBS=${MAX_JOBS:-16}
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then  # build the extension for this card only: faster
  TORCH_CUDA_ARCH_LIST=$(python -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo "9.0")
  export TORCH_CUDA_ARCH_LIST
fi
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

stamp "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
python -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "| triton", triton.__version__, "| cuda available:", torch.cuda.is_available())'

stamp "== install (pip install --no-build-isolation --no-deps -e .)"
timeout 100 python -m pip install --no-build-isolation --no-deps -e . >"$out/install.log" 2>&1
install_rc=$?
tail -n 3 "$out/install.log"

stamp "== GPU tests (pytest -m gpu)"
timeout 90 python -m pytest -m gpu -q -p no:cacheprovider -rfE >"$out/pytest.log" 2>&1
test_rc=$?
tail -n 25 "$out/pytest.log"

stamp "== kernel benchmark (bench/kernels.py)"
timeout 100 python bench/kernels.py --json "$out/kernels.json" --compile-batches step \
  >"$out/kernels.txt" 2>"$out/bench.err"
bench_rc=$?
cat "$out/kernels.txt"
[ "$bench_rc" -ne 0 ] && tail -n 15 "$out/bench.err"

stamp "== summary (files in $out)"
echo "install rc=$install_rc | gpu tests rc=$test_rc ($(tail -n 1 "$out/pytest.log")) | bench rc=$bench_rc"
if [ -s "$out/kernels.json" ]; then
  python bench/kernels.py --summary-from "$out/kernels.json"
else
  echo "no benchmark results"
fi
exit "$test_rc"
