#!/usr/bin/env bash
# Build the peers rtserver is compared with (issue 3's benchmark), from what the package registry serves:
#   - llama.cpp's llama-server, compiled from the llama.cpp vendored in the llama-cpp-python sdist of the version
#     installed here (same llama.cpp as rtserver's engine), with the same CPU flags as scripts/install;
#   - llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`), by installing its [server] extra.
# Output: build/peers/llama-server. About 10 minutes on 2 cores. Benchmarks only; never part of install or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RTSERVER_VENV:-.venv}
py="$(cd "$venv" && pwd)/bin/python"
ver=$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
mkdir -p build/peers
cd build/peers
if [ ! -d "llama_cpp_python-$ver" ]; then
  "$py" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$ver" -d .
  tar xzf "llama_cpp_python-$ver.tar.gz"
fi
cflags=""
grep -qw amx_tile /proc/cpuinfo 2>/dev/null && cflags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "llama_cpp_python-$ver/vendor/llama.cpp" -B llama.cpp-build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DCMAKE_C_FLAGS="$cflags" -DCMAKE_CXX_FLAGS="$cflags" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON >/dev/null
cmake --build llama.cpp-build --target llama-server -j "$(nproc)"
cp llama.cpp-build/bin/llama-server .
cd ../..
"$py" -m pip install -q "llama-cpp-python[server]==$ver"
echo "built build/peers/llama-server; python -m llama_cpp.server is installed in $venv" >&2
