#!/bin/sh
# check.sh LABEL BUILD TEST_BIN... -- runs every cmocka test binary, shows its
# output, and closes with one summary line "N passed, N failed, N skipped"
# over all binaries.  Exit status 1 if any test failed or any binary crashed.
# A test skips (cmocka skip()) when an optional tool of the full tier
# (torch, chromium) is absent and LRP_REQUIRE_FULL is not 1, or when it
# cannot mean anything in this build (the memory-bound tests under ASan,
# whose shadow memory is counted in RSS); each skip prints its reason, and
# the count is never folded into "passed".
set -u
label=$1
build=$2
shift 2
passed=0
failed=0
skipped=0
bad_bins=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
    echo "== $t"
    t0=$(date +%s)
    "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    echo "($t: $(($(date +%s) - t0)) s)"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    skipped=$((skipped + s))
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # crashed or exited non-zero without cmocka counting a failure
        failed=$((failed + 1))
        bad_bins="$bad_bins $t(rc=$rc)"
    fi
done
[ -n "$bad_bins" ] && echo "binaries that exited abnormally:$bad_bins"
echo "($build)"
echo "$label: $passed passed, $failed failed, $skipped skipped"
[ "$skipped" -gt 0 ] && echo "($skipped skipped, each with its reason above: an optional tool of the full tier absent (make check FULL=1 installs and requires them), or a test that means nothing in this build)"
[ "$failed" -eq 0 ]
