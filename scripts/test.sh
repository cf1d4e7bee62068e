#!/usr/bin/env bash
# Install everything into ./.venv (reused when present) and run every test there; then
# the planner alone, from a wheel with numpy 2 on the newest Python here
# (scripts/test_planner.sh), with the same pytest arguments.
# TensorFlow and Horovod are pinned to what builds and runs on CPU here; Horovod is
# compiled against the installed TensorFlow, hence --no-build-isolation.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
py=.venv/bin/python
"$py" -m pip install --quiet --upgrade pip setuptools wheel
"$py" -m pip install --quiet -e '.[runtime,dev]'
if ! "$py" -c 'import horovod.tensorflow' 2>/dev/null; then
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    "$py" -m pip install --quiet --no-build-isolation 'horovod==0.28.1'
fi
"$py" -m ruff check .
"$py" -m pytest -q "$@"
exec bash scripts/test_planner.sh "$@"
