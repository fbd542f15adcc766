#!/usr/bin/env bash
# `npm test`: make sure the local stack is up (idempotent, about a second
# when it already runs), then the unit and the integration project of vitest.
# Extra arguments go to both vitest runs (e.g. a file filter or -t NAME).
# Exits non-zero if either run fails; the last line is the combined count.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

bash scripts/stack.sh up || { echo "[test] the local stack did not come up (see above)" >&2; exit 1; }
bash scripts/stack.sh test-deps || { echo "[test] could not install what the tests need (see above)" >&2; exit 1; }

LOGDIR=$(mktemp -d)
trap 'rm -rf "$LOGDIR"' EXIT

passed=0 failed=0 skipped=0 status=0

# Adds the counts of vitest's "Tests  2 failed | 8 passed | 1 skipped (11)".
count() {
  local line n
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '^ +Tests +[0-9]' | tail -1)
  [ -n "$line" ] || return 0
  n=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+') && passed=$((passed + n))
  n=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+') && failed=$((failed + n))
  n=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+') && skipped=$((skipped + n))
  n=$(grep -oE '[0-9]+ todo' <<<"$line" | grep -oE '[0-9]+') && skipped=$((skipped + n))
  return 0
}

run_project() {
  local project=$1 rc
  shift
  echo "[test] vitest --project $project"
  # --passWithNoTests: a filter in "$@" may match files of one project only.
  npx vitest run --project "$project" --passWithNoTests "$@" 2>&1 | tee "$LOGDIR/$project.log"
  rc=${PIPESTATUS[0]}
  count "$LOGDIR/$project.log"
  [ "$rc" -eq 0 ] || { echo "[test] $project tests failed (exit $rc)" >&2; status=1; }
}

run_project unit "$@"
run_project integration "$@"

echo
for p in unit integration; do
  sed 's/\x1b\[[0-9;]*m//g' "$LOGDIR/$p.log" | grep -E '^ +(Test Files|Tests) ' | sed "s/^ */[test] $p: /"
done
# The plain closing line CI reads.
echo "vitest: $passed passed, $failed failed, $skipped skipped"
exit $status
