#!/bin/sh
# phase_rss.sh -- peak resident memory of each phase of one lrp-oracle run
# (docs/SCALING.md "Measured").  Runs BINARY ARGS... with --progress, samples
# the process's VmRSS every 0.2 s, and prints per phase (as named by the
# progress lines) its start time and the largest RSS seen while it ran.
#
#   sh bench/phase_rss.sh build/lrp-oracle compare T.h5 --source fastpath
#
# Sampling can miss a peak shorter than 0.2 s; the run's true peak is the
# "Maximum resident set size" of /usr/bin/time -v (printed last).  The
# run's stdout goes to $PHASE_RSS_OUT when set, else is dropped.
set -u
[ $# -ge 2 ] || { echo "usage: $0 BINARY COMMAND ARGS..." >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/time -v "$@" --progress >"$work/out" 2>"$work/err" &
tpid=$!
# the child of time(1) is the oracle
sleep 0.2
pid=$(pgrep -P "$tpid" | head -n 1)
: >"$work/rss"
while kill -0 "$tpid" 2>/dev/null; do
    if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        n=$(grep -c ' ([0-9]*/[0-9]*), ' "$work/err" 2>/dev/null)
        [ -n "$rss" ] && echo "$n $rss" >>"$work/rss"
    fi
    sleep 0.2
done
wait "$tpid"
rc=$?
[ -n "${PHASE_RSS_OUT:-}" ] && cp "$work/out" "$PHASE_RSS_OUT"
# phase k (1-based, the k-th progress line opening a phase) and its start
grep -o '[a-z][a-z0-9 =+-]* ([0-9]*/[0-9]*), [0-9:]* elapsed' "$work/err" | awk '!seen[$0]++' |
    awk -v rssf="$work/rss" '
    BEGIN { while ((getline l < rssf) > 0) { split(l, f, " "); if (f[2] > m[f[1]]) m[f[1]] = f[2] } }
    { k++; sub(/, /, " at "); printf "%-48s peak %7.0f MB\n", $0, m[k] / 1024 }'
grep -E "done in" "$work/err" | tail -n 1
grep -E "Elapsed|Maximum resident" "$work/err"
echo "exit $rc"
