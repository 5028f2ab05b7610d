#!/bin/sh
# check.sh LABEL BUILD TEST_BIN... -- runs every cmocka test binary, shows its
# output, and closes with one summary line "N passed, N failed, N skipped"
# over all binaries.  Exit status 1 if any test failed or any binary crashed.
# A test skips (cmocka skip()) when an optional tool of the full tier
# (torch, chromium) is absent and LRP_REQUIRE_FULL is not 1, or when it
# cannot mean anything in this build (the memory-bound tests under ASan,
# whose shadow memory is counted in RSS); each skip prints its reason, and
# the count is never folded into "passed".
#
# LRP_TEST_JOBS binaries run at once (default: the number of CPUs, at most
# 4): most tests use one core, so on this 2-core machine two at a time
# halve the sanitized run.  Each binary's output is kept in its own file
# and shown in the order given, with its wall time (which includes waiting
# for the core the other binary holds).  No test depends on timing: the
# limits some tests set are CPU time or generous wall-clock guards.
set -u
label=$1
build=$2
shift 2
jobs=${LRP_TEST_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
case $jobs in '' | *[!0-9]* | 0) jobs=1 ;; esac
[ "$jobs" -gt 4 ] && jobs=4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# worker: takes the next unclaimed binary (mkdir is atomic) until none is left
worker() {
    k=0
    for t in "$@"; do
        k=$((k + 1))
        mkdir "$work/claim.$k" 2>/dev/null || continue
        t0=$(date +%s)
        "$t" >"$work/$k.log" 2>&1
        echo $? >"$work/$k.rc"
        echo $(($(date +%s) - t0)) >"$work/$k.sec"
    done
}
w=0
while [ "$w" -lt "$jobs" ]; do
    worker "$@" &
    w=$((w + 1))
done
wait

passed=0
failed=0
skipped=0
bad_bins=""
k=0
for t in "$@"; do
    k=$((k + 1))
    log=$work/$k.log
    echo "== $t"
    cat "$log"
    rc=$(cat "$work/$k.rc" 2>/dev/null || echo 127)
    echo "($t: $(cat "$work/$k.sec" 2>/dev/null || echo '?') s)"
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
echo "($build, $jobs at a time)"
echo "$label: $passed passed, $failed failed, $skipped skipped"
[ "$skipped" -gt 0 ] && echo "($skipped skipped, each with its reason above: an optional tool of the full tier absent (make check FULL=1 installs and requires them), or a test that means nothing in this build)"
[ "$failed" -eq 0 ]
