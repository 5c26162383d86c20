#!/usr/bin/env bash
# Download (here, with network) the wheels benchmarks/gpu_check.sh installs on a GPU machine
# that has torch, lightning, timm, scikit-learn, pandas... but not these; versions from
# requirements.lock. All are pure Python (py3-none-any): no platform flags needed.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
pin() { grep -iE "^$1==" requirements.lock | head -1 | cut -d' ' -f1; }
PY=${PYTHON:-python3}
for name in hydra-core omegaconf optuna colorlog torchdata; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl "$(pin "$name")"
done
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 needs) exists only as a source archive:
# build its pure-Python wheel here
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl "$(pin antlr4-python3-runtime)" \
  || "$PY" -m pip wheel -q --no-deps -w .whl "$(pin antlr4-python3-runtime)"
ls -l .whl
du -sh .whl
