#!/bin/sh
# fuzz/run.sh BUILD SECONDS TARGET... -- runs each libFuzzer harness for
# SECONDS (one job at a time, fork mode so a crash inside libhdf5 is recorded
# and fuzzing goes on), then prints execs, crashes, timeouts and OOMs per
# harness.  Corpus: BUILD/corpus/TARGET (grows across runs), seeded from
# BUILD/seeds/TARGET.  Artifacts: BUILD/artifacts/TARGET/.  Logs:
# BUILD/logs/TARGET.log.  Every new crash/leak input is replayed and
# attributed by its stack: to libhdf5 (or another system library) when the
# first frame outside the sanitizer and libFuzzer runtimes is there, else
# to our code; fuzz/known.txt lists signatures of our known, open bugs.
# Exit status 1 when a harness found a crash in our code that is not known.
# Timeouts are counted, not replayed (all so far were inside libhdf5).
set -u
B=$1
SECS=$2
shift 2
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(pwd)/fuzz/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export HDF5_USE_FILE_LOCKING=FALSE
# the harnesses' input files (fuzz/fuzz_common.h), removed with the run
LRP_FUZZ_DIR=$(mktemp -d /dev/shm/lrp-fuzz.XXXXXX 2>/dev/null || mktemp -d)
export LRP_FUZZ_DIR
trap 'rm -rf "$LRP_FUZZ_DIR"' EXIT
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
    stamp=$B/logs/$t.start
    touch "$stamp"
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
    # the status line misses jobs that died without libFuzzer's handler
    # (-handle_abrt=0): count the artifacts written during this run instead
    nc=$(find "$art" -newer "$stamp" \( -name 'crash-*' -o -name 'leak-*' \) | wc -l)
    nt=$(find "$art" -newer "$stamp" -name 'timeout-*' | wc -l)
    [ "$nc" -gt "${crashes:-0}" ] && crashes=$nc
    [ "$nt" -gt "${tos:-0}" ] && tos=$nt
    printf '%-10s %8s %12s %9s %8s %8s %6s %8s\n' "$t" "$SECS" "${execs:-0}" "${rate:-0}" \
        "${crashes:-?}" "${tos:-?}" "${ooms:-?}" "${corpn:-?}"
    ours=0; known=0; lib=0
    for f in $(find "$art" -newer "$stamp" \( -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' \) 2>/dev/null); do
        out=$(timeout 60 "$B/fuzz_$t" -timeout=10 -rss_limit_mb=4096 "$f" 2>&1)
        top=$(echo "$out" | grep -E '^ +#[0-9]+ ' | grep -vE '__interceptor|__sanitizer|__asan|__lsan|__ubsan|fuzzer::|PrintStack|libc\.so|libc-start|start_call_main| in (c?free|malloc|calloc|realloc|abort|raise|__libc_[a-z_]+|_int_[a-z_]+|malloc_printerr|__GI_[a-z_]+) |(malloc|sysdeps|string|nptl|stdlib|signal|libio)/' | head -1)
        if echo "$top" | grep -qE 'lib(hdf5|jansson)[^ ]*\.so|libz\.so|libsz|libaec'; then
            lib=$((lib + 1))
        elif grep -v '^#' fuzz/known.txt 2>/dev/null | grep -v '^$' | cut -f1 | while read -r pat; do
                 echo "$out" | grep -qE "$pat" && echo hit; done | grep -q hit; then
            known=$((known + 1))
        else
            ours=$((ours + 1))
            echo "  OUR CODE: $f"
            echo "$top" | sed 's/^/    /'
        fi
    done
    echo "  new crash/leak/OOM inputs: $((lib + known + ours)); replayed: $lib in libhdf5/system libraries, $known known bugs of ours (fuzz/known.txt), $ours new in our code"
    [ "$ours" -gt 0 ] && status=1
done
exit $status
