#!/usr/bin/env bash
# The GPU figures of issue 17 in one go (< 8 min on one H200): run from the repository root on
# a machine with torch, lightning and timm but not the project's other packages and no network.
#   bash benchmarks/gpu_wheels.sh          (here, with network: fills .whl/)
#   OUT=/some/folder bash benchmarks/gpu_check.sh [--cpu] [--quick]   (there)
# Writes $OUT/RESULTS_gpu.md (a benchmarks/RESULTS.md section) and $OUT/gpu_check.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"; export OUT
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || echo "wheel install failed: continuing with what is there"
fi
export PYTHONPATH="/tmp/site:$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
export PROJECT_ROOT="$PWD" WANDB_MODE=disabled PYTHONUNBUFFERED=1
python3 - <<'PY' || true
import importlib
for name in ("torch", "lightning", "timm", "hydra", "omegaconf", "optuna", "torchdata", "pytest"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as exc:
        print(f"{name} MISSING ({type(exc).__name__}: {exc})")
PY
timeout "${GPU_CHECK_TIMEOUT:-470}" python3 benchmarks/gpu_check.py "$@"
rc=$?
echo "gpu_check exit $rc; figures in $OUT"
exit $rc
