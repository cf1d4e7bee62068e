#!/usr/bin/env bash
# Install everything into ./.venv (reused when present) and run every test.
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
# Debian's chromium draws the HTML report in the browser tests (which skip without it,
# except on CI, where they fail). Installed once, quietly, when apt-get can.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends chromium fonts-liberation; } >/dev/null 2>&1 \
    || echo "chromium could not be installed; the browser tests will skip" >&2
fi
"$py" -m ruff check .
exec "$py" -m pytest -q "$@"
