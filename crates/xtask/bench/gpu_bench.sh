#!/usr/bin/env bash
# The GPU benchmark's one command on the project's GPU machine (NVIDIA H200), run in the repository
# root with `.gl` and `.gpu-bench` carried along (both made here by `cargo xtask gpu-pack`):
#   .gl/*.deb (the Vulkan and GL loaders, which that machine may lack) are unpacked into /;
#   .gpu-bench/scalpel.xz is the release CLI built here, .gpu-bench/*.whl LXT 2.1.
# It then runs gpu_bench.py (SmolLM2 and TinyLlama shapes, 2048 tokens) and keeps its output in
# $OUT. Never run it on a workstation: it writes into /.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out="${OUT:-/tmp/scalpel-gpu-bench-out}"
mkdir -p "$out"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -e "$icd" ] && export VK_DRIVER_FILES="$icd"
bin=/tmp/scalpel-gpu-bench-bin/scalpel
mkdir -p "$(dirname "$bin")"
python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
  .gpu-bench/scalpel.xz "$bin"
chmod +x "$bin"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu-bench/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
python3 crates/xtask/bench/gpu_bench.py --scalpel "$bin" --out "$out" "$@" 2>&1 | tee "$out/gpu-bench.log"
