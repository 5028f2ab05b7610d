#!/bin/sh
# fuzz/run.sh BUILD SECONDS TARGET... -- runs each libFuzzer harness for
# SECONDS (one job at a time, fork mode so a crash inside libhdf5 is recorded
# and fuzzing goes on), then prints execs, crashes, timeouts and OOMs per
# harness.  Corpus: BUILD/corpus/TARGET (grows across runs), seeded from
# BUILD/seeds/TARGET.  Artifacts: BUILD/artifacts/TARGET/.  Logs:
# BUILD/logs/TARGET.log.  Exit status 1 when any harness found a crash.
set -u
B=$1
SECS=$2
shift 2
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(pwd)/fuzz/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export HDF5_USE_FILE_LOCKING=FALSE
# Without ASan (FUZZ_FAST) a heap corruption inside libhdf5 ends in glibc's
# abort(), and libFuzzer's handler can then deadlock on the malloc lock:
# let SIGABRT kill the job instead (the fork-mode parent counts the crash).
extra=
case "$B" in *fast*) extra=-handle_abrt=0 ;; esac
status=0
printf '%-10s %8s %12s %9s %8s %8s %6s %8s\n' harness seconds execs exec/s crashes timeouts ooms corpus
for t in "$@"; do
    corp=$B/corpus/$t
    art=$B/artifacts/$t
    log=$B/logs/$t.log
    mkdir -p "$corp" "$art" "$B/logs"
    "$B/fuzz_$t" $extra -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=4096 -max_len=131072 -max_total_time="$SECS" \
        -artifact_prefix="$art/" "$corp" "$B/seeds/$t" >"$log" 2>&1
    # fork-mode status lines: "#EXECS: cov: .. corp: N exec/s: R oom/timeout/crash: a/b/c time: Ts"
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
    execs=$(echo "$last" | sed -n 's/^#\([0-9]*\):.*/\1/p')
    rate=$(( ${execs:-0} / (SECS > 0 ? SECS : 1) ))
    corpn=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
    otc=$(echo "$last" | sed -n 's/.*oom\/timeout\/crash: \([0-9\/]*\).*/\1/p')
    ooms=$(echo "$otc" | cut -d/ -f1)
    tos=$(echo "$otc" | cut -d/ -f2)
    crashes=$(echo "$otc" | cut -d/ -f3)
    printf '%-10s %8s %12s %9s %8s %8s %6s %8s\n' "$t" "$SECS" "${execs:-0}" "${rate:-0}" \
        "${crashes:-?}" "${tos:-?}" "${ooms:-?}" "${corpn:-?}"
    if [ "${crashes:-0}" != 0 ] || ls "$art" | grep -q '^crash-'; then
        status=1
        echo "  crash inputs in $art/ (log: $log)"
    fi
done
exit $status
