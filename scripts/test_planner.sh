#!/usr/bin/env bash
# The planner alone, installed as a user on a current Python installs it: a wheel built
# from this checkout, installed (not editable) next to numpy 2 into a fresh
# ./.venv-planner, on the newest Python 3.10+ found here (or $PLANNER_PYTHON). Then:
#   - the bundled specs are planned there and, when ./.venv exists (the runtime's
#     environment: numpy 1, TensorFlow's Python), there too, and the plans compared
#     byte for byte;
#   - pytest [args] runs against the installed wheel (no TensorFlow: the runtime tests
#     skip).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

source scripts/find_python.sh
if [[ -n ${PLANNER_PYTHON:-} ]]; then
  python=$PLANNER_PYTHON
elif ! python=$(find_python 310 399); then
  echo "test_planner.sh: no Python 3.10 or newer that can make a venv; set PLANNER_PYTHON" >&2
  exit 1
fi
echo "planner from a wheel with numpy 2 on $("$python" -c 'import sys; print(sys.version.split()[0])') ($python)"

venv=$root/.venv-planner
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv --clear "$venv"
py=$venv/bin/python
"$py" -m pip install --quiet --upgrade pip

# Build from a copy of the checkout's files: setuptools leaves build/ in the source tree,
# and a stale build/ can carry modules that no longer exist into the wheel.
mkdir "$work/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' file; do if [[ -f $file ]]; then printf '%s\0' "$file"; fi; done |
    xargs -0 cp --parents -t "$work/src"
else
  cp -r pyproject.toml README.md planner runtime "$work/src"
fi
"$py" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheel" "$work/src"
wheel=$(echo "$work"/wheel/*.whl)
"$py" -m pip install --quiet "numpy>=2" "$wheel[dev]"

# Outside the checkout and with -I, so that only the installed wheel can be imported.
(cd "$work" && "$py" -I -c '
import numpy, planner
assert "site-packages" in planner.__file__, planner.__file__
assert int(numpy.__version__.split(".")[0]) >= 2, numpy.__version__
print(f"planner {planner.__file__}, numpy {numpy.__version__}")')

(cd "$work" && "$py" -I "$root/scripts/plan_bundled.py" "$work/plans-numpy2")
if [[ -x .venv/bin/python ]]; then
  PYTHONPATH=$root .venv/bin/python scripts/plan_bundled.py "$work/plans-venv"
  diff -rq "$work/plans-venv" "$work/plans-numpy2"
  echo "plans of the bundled specs: byte-identical with .venv's ($(ls "$work/plans-venv" | wc -l) files)"
fi

# The tests import the wheel: pytest's launcher does not put the checkout on sys.path.
env -u PYTHONPATH "$venv/bin/pytest" -q -p no:cacheprovider "$@"
