#!/usr/bin/env bash
# The lent GPUs run Triton 3.6 (their image's), CI's venv the newest Triton: a kernel the newest
# accepts can still fail to compile there (it happened: float64 dot accumulators). So the sm_90
# compile test also runs against Triton 3.6, installed beside the venv, not into it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE_TRITON=${DEVICE_TRITON:-3.6.0}
side=$(mktemp -d /tmp/rskp-triton.XXXXXX)
trap 'rm -rf "$side"' EXIT
pip install -q --no-deps --target "$side" "triton==$DEVICE_TRITON"
PYTHONPATH="$side:$PWD" python -m pytest -q -p no:cacheprovider tests/kernels/test_sm90_compile.py
PYTHONPATH="$side" python -c "import triton; assert triton.__version__ == '$DEVICE_TRITON', triton.__version__"
echo "every kernel variant compiles for sm_90 under Triton $DEVICE_TRITON"
