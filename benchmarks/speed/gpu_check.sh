#!/usr/bin/env bash
# The GPU check of issue 17, for a session lent a CUDA machine: installs what the project needs
# beside the machine's own torch, runs the tests that use the GPU and times BPTT there (K = 40,
# 200, 1,000 and a 10-batch slice of the paper's protocol); prints one summary in under 8 minutes.
#   benchmarks/speed/gpu_check.sh             on the GPU machine
#   benchmarks/speed/gpu_check.sh --dry-run   anywhere: the same steps on the CPU at toy sizes
# A machine with no package index takes wheels carried in .whl/ (see the device tool's notes).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
elif ! "$PY" -c "import motornet, gymnasium, jsonschema, pytest" 2>/dev/null; then
  "$PY" -m pip install -q -e ".[dev]"  # keeps the machine's torch: the project's range admits it
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
exec timeout 480 "$PY" -m benchmarks.cli bench gpu "$@"
