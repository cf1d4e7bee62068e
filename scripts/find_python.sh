# Sourced by the test scripts.
# find_python MIN MAX: the path of the newest Python whose version (major * 100 + minor)
# is within MIN..MAX and which can make a venv. It looks at python3 and python3.X on
# PATH, then at pyenv's versions; each candidate is run, because pyenv's shims are on
# PATH even for versions that are not selected, and fail then.
find_python() {
  local min=$1 max=$2 best="" best_version=0 candidate version
  for candidate in python3 python3.{9..15} "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3; do
    version=$("$candidate" -c 'import ensurepip, sys, venv
print(sys.version_info[0] * 100 + sys.version_info[1])' 2>/dev/null) || continue
    if ((version >= min && version <= max && version > best_version)); then
      best=$candidate best_version=$version
    fi
  done
  [[ -n $best ]] && echo "$best"
}
