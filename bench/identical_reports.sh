#!/bin/sh
# identical_reports.sh -- do two builds of lrp-oracle give byte-identical
# reports?  For every fixture FIX in DIR (default build/fixtures, made by
# `make fixtures`), with each binary:
#
#   lrp-oracle check FIX --no-color --json A.json                 (stdout, A.json)
#   lrp-oracle fast FIX --out T.h5 &&
#   lrp-oracle compare T.h5 --source fastpath --no-color --json B.json
#
# and compares stdout, the exit status and both JSON files byte for byte,
# but for the JSON's "seconds" (the run's wall time).  The trace T.h5 is
# written to the same path for both binaries, since the reports name it.  Used for changes that must not move any verdict or
# number (issue 14: the gauge and trace-local phases made parallel and
# streamed).
#
#   sh bench/identical_reports.sh OLD_BINARY NEW_BINARY [DIR] [WORK]
#
# Prints one line per fixture and a summary; exits 0 only when every
# report is identical.
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 OLD_BINARY NEW_BINARY [FIXTURE_DIR] [WORK_DIR]" >&2
    exit 2
fi
OLD=$1
NEW=$2
DIR=${3:-build/fixtures}
WORK=${4:-${TMPDIR:-/tmp}/lrp-identical.$$}
for b in "$OLD" "$NEW"; do
    [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
ls "$DIR"/*.h5 >/dev/null 2>&1 || { echo "$0: no fixtures in $DIR (make fixtures)" >&2; exit 2; }
mkdir -p "$WORK/old" "$WORK/new" "$WORK/trace" || exit 2

# run WHICH BIN FIX: the two reports of one binary into $WORK/WHICH/NAME.*
run() {
    which=$1 bin=$2 fix=$3
    name=$(basename "$fix" .h5)
    out=$WORK/$which/$name
    "$bin" check "$fix" --no-color --json "$out.check.json" >"$out.check.out" 2>"$out.check.err"
    echo "exit $?" >>"$out.check.out"
    t=$WORK/trace/$name.h5
    rm -f "$t"
    if "$bin" fast "$fix" --out "$t" >"$out.fast.out" 2>&1; then
        "$bin" compare "$t" --source fastpath --no-color --json "$out.compare.json" \
            >"$out.compare.out" 2>"$out.compare.err"
        echo "exit $?" >>"$out.compare.out"
    else
        echo "fast failed" >"$out.compare.out"
    fi
}

same=0
differ=0
for fix in "$DIR"/*.h5; do
    name=$(basename "$fix" .h5)
    run old "$OLD" "$fix"
    run new "$NEW" "$fix"
    bad=""
    for f in check.out check.json compare.out compare.json; do
        a=$WORK/old/$name.$f b=$WORK/new/$name.$f
        if [ -e "$a" ] || [ -e "$b" ]; then
            case $f in
            *.json) # the run's own wall time is the one field allowed to differ
                sed 's/"seconds": *[-+.0-9eE]*/"seconds": T/' "$a" >"$a.cmp" 2>/dev/null
                sed 's/"seconds": *[-+.0-9eE]*/"seconds": T/' "$b" >"$b.cmp" 2>/dev/null
                cmp -s "$a.cmp" "$b.cmp" || bad="$bad $f" ;;
            *) cmp -s "$a" "$b" || bad="$bad $f" ;;
            esac
        fi
    done
    if [ -z "$bad" ]; then
        same=$((same + 1))
        printf '%-20s identical (%s)\n' "$name" "$(tail -n 1 "$WORK/new/$name.check.out"), compare $(tail -n 1 "$WORK/new/$name.compare.out")"
    else
        differ=$((differ + 1))
        printf '%-20s DIFFERS:%s\n' "$name" "$bad"
    fi
done
echo "identical_reports: $same identical, $differ differ (reports in $WORK)"
[ "$differ" -eq 0 ]
