#!/usr/bin/env bash
# Every GPU check in one run (about 6 minutes on an H100), from the repository root of a CUDA machine:
#   1. installs the wheels in .whl/ (e.g. xformers) where the machine has no package index;
#   2. the gpu-marked tests: xformers vs sdpa parity in bf16 (kernel and whole model, with padding and
#      a KV cache), the auto backend, an FSDP2 step equal to the unsharded model;
#   3. attention backends' time and memory at 2048 and 4096 (benchmarks/attention.py);
#   4. MFU of the kosmos-1.3b decoder train step: bf16, xformers vs sdpa, compiled vs not (benchmarks/mfu.py).
# Results go to $OUT (default benchmarks/gpu_results/) as text files; MFU_ROWS overrides mfu.py --rows;
# CHECKS picks the parts (default: tests,attention,mfu).
set -uo pipefail
OUT=${OUT:-benchmarks/gpu_results}
mkdir -p "$OUT"
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/xmt-site .whl/*.whl \
        || { echo "installing .whl/ failed"; exit 1; }
    export PYTHONPATH=/tmp/xmt-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
"$PY" -c "import torch, xformers; print('torch', torch.__version__, '| xformers', xformers.__version__)" | tee -a "$OUT/device.txt"

CHECKS=${CHECKS:-tests,attention,mfu}
if [[ ",$CHECKS," == *",tests,"* ]]; then
    echo "== gpu tests"
    timeout 240 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.txt"
fi
if [[ ",$CHECKS," == *",attention,"* ]]; then
    echo "== attention backends"
    timeout 120 "$PY" benchmarks/attention.py --seqs 2048,4096 --batch 4 --heads 32 2>&1 | tee "$OUT/attention.txt"
fi
if [[ ",$CHECKS," == *",mfu,"* ]]; then
    echo "== MFU, kosmos-1.3b decoder train step"
    timeout 330 "$PY" benchmarks/mfu.py ${MFU_ROWS:+--rows "$MFU_ROWS"} 2>&1 | tee "$OUT/mfu.txt"
fi
