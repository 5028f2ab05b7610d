#!/bin/sh
# split_rounds.sh -- interleaved rounds of one lrp-oracle run as one
# process and under mpirun --split layer, for one or more MPI builds
# (docs/SCALING.md "Rank 0's cores"): this VM's speed moves by a quarter
# between runs, so only runs made one after the other compare.  Each round
# runs every MPI build, then the default build as one process; it prints
# the wall seconds and each MPI run's ratio to that round's one process.
# Every run's stdout must be byte-identical to the first one process's.
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
secs() { # wall seconds of "$@", its stdout to $out
    s=$(date +%s.%N)
    "$@" >"$out" 2>/dev/null
    e=$(date +%s.%N)
    echo "$e - $s" | bc
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
    [ -f "$work/ref.out" ] || cp "$work/one.out" "$work/ref.out"
    cmp -s "$work/one.out" "$work/ref.out" || { line="$line [one process's stdout differs]"; status=1; }
    i=0
    for m in $mpis; do
        i=$((i + 1))
        eval "t=\$t$i"
        line="$line $(basename "$(dirname "$(dirname "$m")")")/$(basename "$(dirname "$m")") -n $ranks $(printf '%.1f' "$t") s ($(printf '%.2f' "$(echo "scale=4; $t / $t1p" | bc)") x),"
        cmp -s "$work/mpi$i.out" "$work/ref.out" || { line="$line [stdout differs]"; status=1; }
    done
    echo "$line one process $(printf '%.1f' "$t1p") s"
    r=$((r + 1))
done
[ "$status" -eq 0 ] && echo "stdout identical in every run" || echo "some stdout differed"
exit "$status"
