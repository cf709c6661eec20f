#!/usr/bin/env bash
# The GPU measurements in one command (see fashionchameleon/gpu_check.py): streaming DiT fps / latency /
# memory (SDPA, flash-attn when installed, torch.compile), Wan2.2 VAE streamed decode, one FSDP2 training
# step, all at wan2.2-ti2v-5b's real shapes with random bf16 weights. Sized for < 8 minutes on one H200.
# JSON goes to $OUT/gpu_check.json (or ./gpu_check/gpu_check.json).
#
#   bash scripts/gpu_check.sh            # on the GPU machine
#   bash scripts/gpu_check.sh --dry      # the same code path on the CPU at micro shapes (< 1 minute)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# a hard stop inside the 8-minute budget; each section has already written its figures when it ends
LIMIT="${GPU_CHECK_LIMIT_S:-460}"
for a in "$@"; do [ "$a" = "--dry" ] && LIMIT="${GPU_CHECK_LIMIT_S:-120}"; done
exec timeout --signal=TERM "$LIMIT" "$PY" -m fashionchameleon.gpu_check "$@"
