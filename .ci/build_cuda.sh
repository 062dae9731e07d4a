#!/usr/bin/env bash
# Compile the CUDA sources of the csrc/ extension, as CI must even without a GPU.
#
# In its own venv (RSKP_CUDA_VENV, default /tmp/rskp-cuda-venv, reused when it already holds the
# right torch) with torch 2.14.1, a CUDA 13.0 build, it builds rs_kernels._C with FORCE_CUDA=1 for
# TORCH_CUDA_ARCH_LIST (default 9.0) against the toolkit of the nvcc on PATH, into a temporary
# build folder (not into the repository), then checks that the library holds sm_XX code and
# loads with a CUDA kernel for every op. Any nvcc error fails the script.
set -euo pipefail
trap 'echo "build_cuda: FAILED (line $LINENO: $BASH_COMMAND)" >&2' ERR
cd "$(dirname "$0")/.."
repo=$PWD
venv=${RSKP_CUDA_VENV:-/tmp/rskp-cuda-venv}
torch_version=${RSKP_CUDA_TORCH:-2.14.1}  # the device image has 2.11.0: RSKP_CUDA_TORCH=2.11.0 checks that build
start=$(date +%s)

# --- the toolkit: CUDA_HOME is the folder above nvcc's bin/ ------------------------------------------
nvcc_bin=$(command -v nvcc) || { echo "build_cuda: nvcc is not on PATH" >&2; exit 1; }
# nvcc may be a symlink or a wrapper script (/usr/local/bin/nvcc here execs the real one): ask
# nvcc where its toolkit is, and fall back to resolving the path.
top=$( (nvcc -dryrun -x cu -c /dev/null -o /dev/null 2>&1 || true) | sed -n 's/^#\$ TOP=//p' | head -n1)
if [ -n "$top" ] && [ -f "$top/include/cuda_runtime.h" ]; then
  CUDA_HOME=$(cd "$top" && pwd -P)
else
  CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$nvcc_bin")")")
fi
[ -x "$CUDA_HOME/bin/nvcc" ] && [ -f "$CUDA_HOME/include/cuda_runtime.h" ] ||
  { echo "build_cuda: no CUDA toolkit (bin/nvcc, include/cuda_runtime.h) at CUDA_HOME=$CUDA_HOME" >&2; exit 1; }
export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"
echo "build_cuda: CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -n1))"

# --- the venv with a CUDA torch ------------------------------------------------------------------------
has_torch() {
  "$venv/bin/python" - "$torch_version" <<'PY' 2>/dev/null
import sys
import torch
sys.exit(0 if torch.__version__.split("+")[0] == sys.argv[1] and torch.version.cuda else 1)
PY
}
if [ ! -x "$venv/bin/python" ] || ! has_torch; then
  echo "build_cuda: creating $venv with torch==$torch_version"
  # The base interpreter, not an activated venv's python (a venv made from one still works).
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install -q "torch==$torch_version" setuptools wheel ninja
  has_torch || { echo "build_cuda: torch==$torch_version in $venv is not a CUDA build" >&2; exit 1; }
fi
py="$venv/bin/python"
echo "build_cuda: $("$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"

# torch's CUDA headers include cusparse.h & co., which the pip CUDA packages ship, not the toolkit.
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
nv_include="$site/nvidia/cu13/include"
[ -f "$nv_include/cusparse.h" ] || { echo "build_cuda: no cusparse.h in $nv_include" >&2; exit 1; }
export CPATH="$nv_include${CPATH:+:$CPATH}"

export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-1}
build=$(mktemp -d /tmp/rskp-cuda-build.XXXXXX)
[ -n "${RSKP_CUDA_KEEP_BUILD:-}" ] || trap 'rm -rf "$build"' EXIT
echo "build_cuda: TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS, building in $build"
(cd "$repo" && "$py" setup.py -q build_ext --build-temp "$build/temp" --build-lib "$build/lib")

# --- the result: device code for each arch, and a CUDA kernel registered for every op ----------------
so=$(ls "$build"/lib/rs_kernels/_C*.so)
# The toolkit here has no cuobjdump: read the fatbin headers (entry kind 2 = cubin, its sm at +28).
"$py" - "$so" "$TORCH_CUDA_ARCH_LIST" <<'PY'
import re
import struct
import sys

data = open(sys.argv[1], "rb").read()
found, pos = set(), 0
while (at := data.find(struct.pack("<I", 0xBA55ED50), pos)) >= 0:  # fatbin container magic
    _, header, size = struct.unpack_from("<HHQ", data, at + 4)
    entry, end = at + header, at + header + size
    while entry < end:
        kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
        found.add(("sm" if kind == 2 else "ptx", struct.unpack_from("<I", data, entry + 28)[0]))
        if entry_header == 0:
            break
        entry += entry_header + payload
    pos = at + 4
print("build_cuda: device code in the library:", ", ".join(f"{k}_{v}" for k, v in sorted(found)) or "none")
wanted = {int(a.replace(".", "")) for a in re.findall(r"\d+\.\d+", sys.argv[2])}
missing = sorted(a for a in wanted if ("sm", a) not in found)
if missing:
    sys.exit(f"build_cuda: no cubin for sm_{missing} in {sys.argv[1]}")
PY
"$py" - "$so" <<'PY'
import sys
import torch
torch.ops.load_library(sys.argv[1])
for op in ("membank_gather", "membank_insert_topk_", "membank_gather_insert_", "membank_momentum_", "membank_momentum_read"):
    for key in ("CPU", "CUDA"):
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"rs_kernels::{op}", key):
            sys.exit(f"build_cuda: rs_kernels::{op} has no {key} kernel")
print("build_cuda: the library loads; every op has CPU and CUDA kernels")
PY
echo "build_cuda: ok in $(( $(date +%s) - start )) s"
