#!/usr/bin/env bash
# Configure, build (-j${MAX_JOBS:-2}) and ctest the CMake build of the csrc/ CPU ops against the
# libtorch of the python on PATH, in a temporary build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
prefix=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')
build=$(mktemp -d /tmp/rskp-cmake-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
echo "cmake_test: libtorch from $prefix, building in $build"
cmake -S . -B "$build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "${MAX_JOBS:-2}"
ctest --test-dir "$build" --output-on-failure
echo "cmake_test: ok in $(( $(date +%s) - start )) s"
