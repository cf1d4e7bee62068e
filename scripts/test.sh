#!/usr/bin/env bash
# Install everything into ./.venv (reused when present) and run every test there; then
# the planner alone, from a wheel with numpy 2 on the newest Python here
# (scripts/test_planner.sh), with the same pytest arguments.
# TensorFlow and Horovod are pinned to what builds and runs on CPU here; Horovod is
# compiled against the installed TensorFlow, hence --no-build-isolation.
set -euo pipefail
cd "$(dirname "$0")/.."

# TensorFlow 2.15 has wheels for CPython 3.9-3.11 only: .venv is made with the newest
# of those found (or $RUNTIME_PYTHON), whatever python3 is.
if [[ ! -x .venv/bin/python ]]; then
  source scripts/find_python.sh
  if [[ -n ${RUNTIME_PYTHON:-} ]]; then
    python=$RUNTIME_PYTHON
  elif ! python=$(find_python 309 311); then
    echo "test.sh: the runtime needs Python 3.9, 3.10 or 3.11 (TensorFlow 2.15), and none" \
      "that can make a venv was found; install one or set RUNTIME_PYTHON" >&2
    exit 1
  fi
  "$python" -m venv .venv
fi
py=.venv/bin/python
if ! "$py" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 11))'; then
  echo "test.sh: .venv runs Python $("$py" -c 'import sys; print(sys.version.split()[0])')," \
    "but the runtime needs 3.9, 3.10 or 3.11 (TensorFlow 2.15): remove .venv and run again" >&2
  exit 1
fi
"$py" -m pip install --quiet --upgrade pip setuptools wheel
"$py" -m pip install --quiet -e '.[runtime,dev]'
if ! "$py" -c 'import horovod.tensorflow' 2>/dev/null; then
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    "$py" -m pip install --quiet --no-build-isolation 'horovod==0.28.1'
fi
# Debian's chromium draws the HTML report in the browser tests (which skip without it,
# except on CI, where they fail). Installed once, quietly, when apt-get can.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends chromium fonts-liberation; } >/dev/null 2>&1 \
    || echo "chromium could not be installed; the browser tests will skip" >&2
fi
"$py" -m ruff check .
"$py" -m pytest -q "$@"
exec bash scripts/test_planner.sh "$@"
