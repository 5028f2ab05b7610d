#!/bin/sh
# split_rss.sh -- wall time and peak resident memory of each rank of one
# lrp-oracle run under the layer split, against the default build as one
# process (docs/SCALING.md "Parked arrays").  Every rank runs under
# /usr/bin/time -v; the reports' stdout must be byte-identical.
#
#   sh bench/split_rss.sh build/lrp-oracle build-mpi/lrp-oracle "2 3" compare T.h5 --source fastpath
#
# One process runs with --threads 2, each rank with --threads 1.
set -u
[ $# -ge 5 ] || { echo "usage: $0 DEFAULT_CLI MPI_CLI \"RANKS...\" COMMAND FILE ARGS..." >&2; exit 2; }
one=$1 mpi=$2 ranks=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
peak() { awk -F': ' '/Maximum resident/ {print $2}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall/ {print $2}' "$1"; }
/usr/bin/time -v -o "$work/one.time" "$one" "$@" --threads 2 >"$work/one.out" 2>/dev/null
base=$(peak "$work/one.time")
echo "one process: wall $(wall "$work/one.time"), peak $base KiB"
cat >"$work/rank.sh" <<'EOS'
#!/bin/sh
exec /usr/bin/time -v -o "$RSS_DIR/rank.$OMPI_COMM_WORLD_RANK" "$@"
EOS
chmod +x "$work/rank.sh"
for n in $ranks; do
    rm -f "$work"/rank.*[0-9]
    /usr/bin/time -v -o "$work/mpi.time" mpirun --allow-run-as-root --oversubscribe -q -n "$n" \
        -x RSS_DIR="$work" "$work/rank.sh" "$mpi" "$@" --split layer --threads 1 \
        >"$work/mpi.out" 2>/dev/null
    same=differs
    cmp -s "$work/one.out" "$work/mpi.out" && same="stdout identical"
    line="-n $n: wall $(wall "$work/mpi.time"), $same;"
    q=0
    while [ $q -lt "$n" ]; do
        p=$(peak "$work/rank.$q")
        line="$line rank $q $p KiB ($(awk -v a="$p" -v b="$base" 'BEGIN {printf "%.2f", a / b}') x)"
        q=$((q + 1))
    done
    echo "$line"
done
