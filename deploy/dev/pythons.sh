#!/usr/bin/env bash
# Print the Python interpreters this project supports (3.11, 3.12, 3.13) found on this
# machine, one path per line, one per minor version, in that order. Looked for on the
# PATH (python3.11 ...) and in pyenv's versions directory, whose shims only answer for
# the version pyenv has selected. An interpreter is listed only if it really runs.
#   deploy/dev/pythons.sh          every supported interpreter found
#   deploy/dev/pythons.sh --first  the first one (what the Makefile uses)
set -uo pipefail
first=${1:-}
found=0
for minor in 11 12 13; do
  candidates=("$(command -v "python3.$minor" 2>/dev/null || true)")
  candidates+=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3."$minor".*/bin/python3."$minor")
  for python in "${candidates[@]}"; do
    [ -n "$python" ] && [ -x "$python" ] || continue
    # The interpreter's own path, not a shim's: uv would rebuild .venv for a "new" interpreter.
    real=$("$python" -c "import sys; print(sys.executable) if sys.version_info[:2] == (3, $minor) else sys.exit(1)" 2>/dev/null)
    if [ -n "$real" ]; then
      echo "$real"
      found=1
      [ "$first" = "--first" ] && exit 0
      break
    fi
  done
done
if [ "$found" -eq 0 ]; then
  echo "citeplus: Python 3.11, 3.12 or 3.13 is needed (none found); install one (e.g. apt-get install python3)." >&2
  exit 1
fi
