#!/bin/sh
# split_rounds.sh -- interleaved rounds of one lrp-oracle run as one
# process and under mpirun --split layer, for one or more MPI builds
# (docs/SCALING.md "Rank 0's cores"): this VM's speed moves by a quarter
# between runs, so only runs made one after the other compare.  Each round
# runs every MPI build, then the default build as one process; it prints
# the wall seconds and each MPI run's ratio to that round's one process.
# After the rounds it prints each MPI build's median ratio and range.
# Every run's stdout must be byte-identical to the first one process's;
# with --out OUT among the ARGS (reference, fast), each run writes its own
# file in a scratch directory instead of OUT, and every file must be
# byte-identical (cmp) to the first one process's too.
#
#   sh bench/split_rounds.sh build/lrp-oracle "old/build-mpi/lrp-oracle build-mpi/lrp-oracle" \
#       3 2 check F.h5
#
#   DEFAULT_CLI MPI_CLIS ROUNDS RANKS COMMAND FILE ARGS...
#
# One process runs with --threads 2, each rank with --threads 1.
set -u
[ $# -ge 6 ] || {
    echo "usage: $0 DEFAULT_CLI \"MPI_CLI...\" ROUNDS RANKS COMMAND FILE ARGS..." >&2
    exit 2
}
one=$1 mpis=$2 rounds=$3 ranks=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
launch="mpirun -q --oversubscribe"
[ "$(id -u)" -eq 0 ] && launch="$launch --allow-run-as-root"
secs() { # wall seconds of "$@", its stdout to $out, --out's value replaced by $out.h5
    for a do
        shift
        if [ "${prev:-}" = "--out" ]; then set -- "$@" "$out.h5"; else set -- "$@" "$a"; fi
        prev=$a
    done
    prev=
    rm -f "$out.h5"
    s=$(date +%s.%N)
    "$@" >"$out" 2>/dev/null
    e=$(date +%s.%N)
    # the run's own file name in what it printed: OUT, as for every run
    [ ! -f "$out.h5" ] || sed -i "s|$out.h5|OUT|g" "$out"
    echo "$e - $s" | bc
}
same() { # $1's stdout (and file, when one was written) as the first one process's
    cmp -s "$1" "$work/ref.out" || return 1
    [ ! -f "$work/ref.out.h5" ] || cmp -s "$1.h5" "$work/ref.out.h5"
}
status=0
r=1
while [ "$r" -le "$rounds" ]; do
    line="round $r:"
    i=0
    for m in $mpis; do
        i=$((i + 1))
        out="$work/mpi$i.out"
        t=$(secs $launch -n "$ranks" "$m" "$@" --split layer --threads 1)
        eval "t$i=$t"
    done
    out="$work/one.out"
    t1p=$(secs "$one" "$@" --threads 2)
    if [ ! -f "$work/ref.out" ]; then
        cp "$work/one.out" "$work/ref.out"
        [ ! -f "$work/one.out.h5" ] || cp "$work/one.out.h5" "$work/ref.out.h5"
    fi
    same "$work/one.out" || { line="$line [one process's output differs]"; status=1; }
    i=0
    for m in $mpis; do
        i=$((i + 1))
        eval "t=\$t$i"
        ratio=$(printf '%.2f' "$(echo "scale=4; $t / $t1p" | bc)")
        echo "$ratio" >>"$work/ratios$i"
        line="$line $(basename "$(dirname "$(dirname "$m")")")/$(basename "$(dirname "$m")") -n $ranks $(printf '%.1f' "$t") s ($ratio x),"
        same "$work/mpi$i.out" || { line="$line [output differs]"; status=1; }
    done
    echo "$line one process $(printf '%.1f' "$t1p") s"
    r=$((r + 1))
done
# per MPI build: the ratios' median and range over the rounds (the VM's
# speed moves between rounds, so one round says little; docs/SCALING.md
# "The 2-rank time on this VM")
i=0
for m in $mpis; do
    i=$((i + 1))
    sort -n "$work/ratios$i" | awk -v name="$(basename "$(dirname "$(dirname "$m")")")/$(basename "$(dirname "$m")")" '
        { v[NR] = $1 }
        END {
            med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%s -n %s: median %.2f x, %.2f - %.2f x over %d rounds\n", name, ranks, med, v[1], v[NR], NR
        }' ranks="$ranks"
done
[ "$status" -eq 0 ] && echo "output identical in every run" || echo "some output differed"
exit "$status"
