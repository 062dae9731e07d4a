#!/usr/bin/env bash
# The lent GPUs run Triton 3.6 (their image's), CI's venv the newest Triton: a kernel the newest
# accepts can still fail to compile there (it happened: float64 dot accumulators). So the sm_90
# compile probe also runs against Triton 3.6, installed beside the venv, not into it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE_TRITON=${DEVICE_TRITON:-3.6.0}
side=$(mktemp -d /tmp/rskp-triton.XXXXXX)
trap 'rm -rf "$side"' EXIT
pip install -q --no-deps --target "$side" "triton==$DEVICE_TRITON"
env -u TRITON_INTERPRET PYTHONPATH="$side:$PWD" python tests/sm90_compile_probe.py > "$side/kernels.jsonl"
echo "all $(wc -l < "$side/kernels.jsonl") kernel variants compile for sm_90 under Triton $DEVICE_TRITON"
