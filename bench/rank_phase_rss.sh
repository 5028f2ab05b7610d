#!/bin/sh
# rank_phase_rss.sh -- the largest resident memory of every rank in every
# phase of one lrp-oracle run (docs/SCALING.md "The other ranks take blocks
# of the subject"): runs COMMAND... with --progress, samples VmRSS of each
# lrp-oracle process every 0.25 s (an MPI rank is told by its
# OMPI_COMM_WORLD_RANK, a process without it is rank 0), and prints per
# phase (and per layer line of --progress) its start and each rank's peak.
#
#   sh bench/rank_phase_rss.sh build/lrp-oracle check F.h5 --threads 2
#   sh bench/rank_phase_rss.sh mpirun --allow-run-as-root --oversubscribe -q -n 2 \
#       build-mpi/lrp-oracle check F.h5 --split layer --threads 1
#
# Sampling misses peaks shorter than 0.25 s; /usr/bin/time -v gives a
# process's true peak (bench/split_rss.sh).  The run's stdout goes to
# $RANK_RSS_OUT when set, else is dropped.
#
# RANK_RSS_FIELD=Pss samples each process's proportional set size instead
# (/proc/PID/smaps_rollup: memory shared by k processes counts 1/k in
# each, so the ranks' values add up to what the node holds; VmRSS counts
# a page shared by the ranks of a node, such as the weights' shared copy
# of cli_mpi_share, in every rank).  A last column "sum" is then
# the largest sum over the ranks sampled at one instant.
set -u
[ $# -ge 2 ] || { echo "usage: $0 [mpirun ...] BINARY COMMAND ARGS..." >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/rss"
t0=$(date +%s.%N)
"$@" --progress >"$work/out" 2>"$work/err" &
bg=$!
while kill -0 "$bg" 2>/dev/null; do
    now=$(date +%s.%N)
    for p in $(pgrep -f 'lrp-oracle (check|compare|reference|fast|suite)'); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mpirun ] && continue
        if [ "${RANK_RSS_FIELD:-VmRSS}" = Pss ]; then
            r=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
        else
            r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        fi
        rk=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
            awk -F= '/^OMPI_COMM_WORLD_RANK=/ {print $2}')
        [ -n "$r" ] && echo "$now ${rk:-0} $r" >>"$work/rss"
    done
    sleep 0.25
done
wait "$bg"
rc=$?
[ -n "${RANK_RSS_OUT:-}" ] && cp "$work/out" "$RANK_RSS_OUT"
# the progress lines, each once: "... PHASE (k/n)[ DETAIL], M:SS elapsed"
tr '\r' '\n' <"$work/err" | grep -o '^.*elapsed' | awk '!seen[$0]++' >"$work/phases"
awk -v t0="$t0" -v rssf="$work/rss" -v sum="$([ "${RANK_RSS_FIELD:-}" = Pss ] && echo 1)" '
    { n++; s = $0; sub(/.*, /, "", s); sub(/ elapsed/, "", s); split(s, a, ":")
      st[n] = a[1] * 60 + a[2]; nm = $0; sub(/^[^:]*: \[[0-9]*\/[0-9]*\] [^:]*: /, "", nm)
      sub(/, [0-9:]* elapsed$/, "", nm); name[n] = nm }
    END {
        R = 0
        while ((getline l < rssf) > 0) {
            split(l, f, " "); t = f[1] - t0; k = 1
            for (i = 1; i <= n; i++) if (t >= st[i]) k = i
            if (f[3] > m[k "," f[2]]) m[k "," f[2]] = f[3]
            if (f[2] > R) R = f[2]
            # the samples of one instant share its time stamp
            at[f[1]] += f[3]; ph[f[1]] = k
        }
        for (tt in at) if (at[tt] > ms[ph[tt]]) ms[ph[tt]] = at[tt]
        printf "%-56s %6s", "phase (MB, largest sample)", "start"
        for (r = 0; r <= R; r++) printf " %7s", "rank " r
        if (sum) printf " %7s", "sum"
        printf "\n"
        for (i = 1; i <= n; i++) {
            printf "%-56.56s %5ds", name[i], st[i]
            for (r = 0; r <= R; r++)
                if ((i "," r) in m) printf " %7.0f", m[i "," r] / 1024
                else printf " %7s", "-" # no sample: the phase was shorter
            if (sum) printf " %7s", (i in ms) ? sprintf("%.0f", ms[i] / 1024) : "-"
            printf "\n"
        }
    }' "$work/phases"
tr '\r' '\n' <"$work/err" | grep -E "done in" | tail -n 1
echo "exit $rc"
exit $rc
