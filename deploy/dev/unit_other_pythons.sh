#!/usr/bin/env bash
# Run the unit suite on every supported interpreter found here other than the one the
# whole suite ran on ($1), each in its own environment (.venv-3.x). The runs go side by
# side (a machine has at least two cores; each run is one process), their outputs are
# printed one after the other once all are done, and the exit status is the first
# failure's.
#   deploy/dev/unit_other_pythons.sh UV MAIN_PYTHON
set -uo pipefail
uv=$1
main_version=$("$2" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
versions=()
for py in $(deploy/dev/pythons.sh); do
  version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$version" = "$main_version" ] && continue
  # Environments are built one at a time (uv's cache is shared); the tests then run together.
  UV_PROJECT_ENVIRONMENT=.venv-$version "$uv" sync --frozen --python "$py" --quiet || exit 1
  (UV_PROJECT_ENVIRONMENT=.venv-$version "$uv" run --frozen --python "$py" \
     pytest -q -p no:cacheprovider tests/unit > "$logs/$version.log" 2>&1) &
  pids+=("$!")
  versions+=("$version")
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { [ "$status" -eq 0 ] && status=1; }
done
for version in "${versions[@]}"; do
  echo "==> unit tests on Python $version" >&2
  cat "$logs/$version.log"
done
exit $status
