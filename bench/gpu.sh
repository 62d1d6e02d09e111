#!/usr/bin/env bash
# The GPU benchmarks of docs/benchmarks.md in one prepared run (under 8 minutes on one H100/H200).
#
# Run from the repository root on a CUDA machine whose python3 has torch, transformers and peft (the
# device image has them). It installs nothing from the network: the few packages datadiet needs
# beyond that image (pydantic, ...) travel as wheels in .whl/, made beforehand where pip works by
# `bench/gpu.sh --wheels`. Writes $OUT/gpu.md (or bench/out/gpu.md) and its .json, then runs the tests
# marked gpu. Usage: bench/gpu.sh [--wheels] [bench_gpu.py options, e.g. --only kmeans]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# What datadiet imports that a CUDA image with torch/transformers/peft may lack (no dependencies pulled).
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        platformdirs==4.14.9 faiss-cpu==1.15.1)

if [[ "${1:-}" == "--wheels" ]]; then
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    exit 0
fi

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
OUT_DIR=${OUT:-bench/out}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
timeout 450 "$PY" bench/bench_gpu.py --out "$OUT_DIR/gpu.md" "$@" 2>&1 | tee "$OUT_DIR/gpu.log"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -o addopts="" 2>&1 | tee -a "$OUT_DIR/gpu.log"
