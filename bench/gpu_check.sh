#!/usr/bin/env bash
# The one script a session runs on a lent GPU (<= 5 minutes in all): install the package, run the
# GPU tests (pytest -m gpu: the Triton kernels against the float64 reference, bitwise determinism,
# model steps triton == reference), the kernel benchmark, the training-speed benchmark (epoch, test
# pass, evaluation), the memory-bank benchmark, an ActivityNet1.2-sized warm-up epoch, the video
# feature extraction benchmark, and the whole 200-epoch run if time is left; prints a short summary last, with the card and the versions.
#
#   bash bench/gpu_check.sh        # logs and JSON go to $OUT (or a temp dir)
#   GPU_CHECK_DRY_RUN=1 bash bench/gpu_check.sh    # print the stages and their time limits, run nothing
#
# No network there: torch and triton are preinstalled, so the install uses neither build isolation
# nor dependency resolution. One deadline for the stages, GPU_CHECK_SECONDS (default 275) after the
# start, which leaves ~15 s for the summary; each stage runs under its own `timeout`: at most its
# cap, and never into the time kept for the stages after it. A stage that fails or times out does not stop the next one; the exit status is
# that of the GPU tests.
set -uo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-$(mktemp -d /tmp/rskp-gpu-check.XXXXXX)}
# The device tool brings back at most 8 files from $OUT: the install log and the ActivityNet1.2
# epoch's files stay behind (its table and summary are printed).
scratch=$(mktemp -d /tmp/rskp-gpu-scratch.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
# The device image's interpreter with torch is `python3` (there may be no `python`).
py=${PYTHON:-$(command -v python3 || command -v python)}
mkdir -p "$out"
dry=${GPU_CHECK_DRY_RUN:-0}
export MAX_JOBS=${MAX_JOBS:-16}
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then  # build the extension for this card only: faster
  TORCH_CUDA_ARCH_LIST=$("$py" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo "9.0")
  export TORCH_CUDA_ARCH_LIST
fi
start=$(date +%s)
deadline=$(( start + ${GPU_CHECK_SECONDS:-275} ))
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }
summary_rows=()

# stage NAME CAP RESERVE LOG CMD...: run CMD under `timeout`, at most CAP seconds and leaving RESERVE
# seconds before the deadline for the later stages; its output goes to LOG (under $out unless a
# path); sets stage_rc.
stage() {
  local name=$1 cap=$2 reserve=$3 log=$4
  shift 4
  local limit=$(( deadline - $(date +%s) - reserve ))
  [ "$limit" -gt "$cap" ] && limit=$cap
  stamp "== $name (limit ${limit} s): $*"
  if [ "$dry" = "1" ]; then
    stage_rc=0
    summary_rows+=("| $name | dry run | - | ${limit} |")
    return
  fi
  if [ "$limit" -lt 10 ]; then
    stage_rc=124
    echo "skipped: no time left"
    summary_rows+=("| $name | skipped (no time left) | 0 | ${limit} |")
    return
  fi
  local t0
  t0=$(date +%s)
  case $log in /*) ;; *) log=$out/$log ;; esac
  timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
  stage_rc=$?
  local took=$(( $(date +%s) - t0 )) status="ok"
  [ "$stage_rc" -ne 0 ] && status="rc=$stage_rc"
  [ "$stage_rc" -eq 124 ] || [ "$stage_rc" -eq 137 ] && status="TIMED OUT"
  summary_rows+=("| $name | $status | $took | $limit |")
}

stamp "== device"
card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
card=${card:-"nvidia-smi not found"}
echo "$card"
versions=$("$py" -c 'import torch, triton; print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| triton", triton.__version__, "| cuda available:", torch.cuda.is_available())' 2>&1 | tail -n 1)
echo "$versions"

# caps and reserves: typical times are well under the caps (the GPU tests compile ~40 kernel variants
# on first use); the reserves keep ~40 s for the tests, ~40 s for the kernel benchmark, ~45 s for
# the training benchmark, ~10 s for the memory bank and ~25 s for the ActivityNet1.2 epoch.
# An editable install; where the image's site-packages is read-only, the extension is built in place
# instead (the tests and benchmarks import the package from the repository root either way).
stage "install" 110 160 "$scratch/install.log" bash -c \
  '"$0" -m pip install --no-build-isolation --no-deps -e . || "$0" setup.py build_ext --inplace' "$py"
install_rc=$stage_rc
tail -n 3 "$scratch/install.log" 2>/dev/null

stage "GPU tests (pytest -m gpu)" 120 120 pytest.log "$py" -m pytest -m gpu -q -p no:cacheprovider -rfE
test_rc=$stage_rc
tail -n 25 "$out/pytest.log" 2>/dev/null

stage "kernels (python -m bench.kernels)" 90 80 kernels.txt \
  "$py" -m bench.kernels --json "$out/kernels.json" --compile-batches step
cat "$out/kernels.txt" 2>/dev/null | grep -v '^\.\.\. ' | tail -n 40

# the official-style epoch (~4-5 s per phase) is timed once, the batched ones 5 times; no torch.compile here
# (the issue measured 110 s of compiling for the padded model on an H200: run python -m bench.train_speed --modes compiled apart)
stage "training speed (python -m bench.train_speed)" 90 35 train_speed.txt \
  "$py" -m bench.train_speed --modes official,reference,padded,triton,triton-host --json "$out/train_speed.json"
grep -v '^\.\.\. ' "$out/train_speed.txt" 2>/dev/null | tail -n 40

stage "memory bank (python -m bench.membank)" 20 25 membank.txt "$py" -m bench.membank --device all
cat "$out/membank.txt" 2>/dev/null

# ActivityNet1.2's shape (100 classes, training videos sampled to 60 snippets, DATASET_DEFAULTS):
# the warm-up epoch of a quarter of its 4,819 training videos, official-style (one video at a time,
# ~10-15 s) against triton; no test pass (2,383 whole videos, and the anet evaluation's loops);
# it leaves 25 s for the feature extraction after it
stage "ActivityNet1.2 epoch (train_speed.py --dataset activitynet1.2)" 35 25 "$scratch/train_anet.txt" \
  "$py" -m bench.train_speed --dataset activitynet1.2 --scale 0.25 --modes official,triton --phases warmup \
  --no-test --json "$scratch/train_anet.json"
grep -v '^\.\.\. ' "$scratch/train_anet.txt" 2>/dev/null | tail -n 12

# video feature extraction (rsnet.extract) on a generated 4 s video, random I3D and RAFT-small
# weights, batches of 8 snippets on the GPU; with no [extract] extra on the image (PyAV, OpenCV,
# torchvision) it times the two I3D streams alone. Its log stays in $scratch (8 files come back).
stage "extract (python -m bench.extract_speed)" 25 0 "$scratch/extract.txt" \
  "$py" -m bench.extract_speed --seconds 4 --device cuda --flow raft_small --batch 8
tail -n 12 "$scratch/extract.txt" 2>/dev/null

left=$(( deadline - $(date +%s) ))
if [ "$left" -ge 45 ] || [ "$dry" = "1" ]; then  # the whole 200-epoch run (rsnet.train.run), if time is left
  stage "200-epoch run (train_speed.py --full)" 240 0 train_full.txt \
    "$py" -m bench.train_speed --modes triton --phases none --no-test --full --json "$out/train_full.json"
  grep -v '^\.\.\. ' "$out/train_full.txt" 2>/dev/null | tail -n 8
else
  summary_rows+=("| 200-epoch run (train_speed.py --full) | skipped (${left} s left) | 0 | - |")
fi

stamp "== summary (files in $out)"
echo "card: $card"
echo "$versions"
echo "| stage | status | s | limit s |"
echo "|---|---|---|---|"
printf '%s\n' "${summary_rows[@]}"
echo "install rc=$install_rc | gpu tests rc=$test_rc ($(tail -n 1 "$out/pytest.log" 2>/dev/null))"
if [ -s "$out/kernels.json" ]; then
  "$py" -m bench.kernels --summary-from "$out/kernels.json"
else
  echo "kernels: no results"
fi
if [ -s "$out/train_speed.json" ]; then
  "$py" -m bench.train_speed --summary-from "$out/train_speed.json" "$out/train_full.json"
else
  echo "train_speed: no results"
fi
if [ -s "$scratch/train_anet.json" ]; then
  "$py" -m bench.train_speed --summary-from "$scratch/train_anet.json"
else
  echo "train_speed --dataset activitynet1.2: no results"
fi
grep -E '^(cpu|cuda) ' "$out/membank.txt" 2>/dev/null || echo "membank: no results"
grep -E '^\| (all|i3d rgb|i3d flow|flow) |^bottleneck' "$scratch/extract.txt" 2>/dev/null || echo "extract: no results"
exit "$test_rc"
