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
#   sh bench/identical_reports.sh [OPTIONS] OLD_BINARY NEW_BINARY [DIR] [WORK]
#
#   --rel TOL        instead of byte for byte, compare with
#                    bench/compare_reports.py: everything but numbers exactly
#                    (verdicts, exit codes, layer names), numbers to a
#                    relative TOL (for changes that move binary64 sums by a
#                    rounding: the GEMM gauge)
#   --args "A"       options for check and fast of both (e.g. a composite)
#   --old-args "A"   options for check and compare of OLD only (and
#   --new-args "A"   of NEW): e.g. --threads 1 against --threads 2
#
# Prints one line per fixture and a summary; exits 0 only when every
# report is identical (or, with --rel, equivalent).
set -u
REL="" ARGS="" OLDARGS="" NEWARGS=""
while [ $# -gt 0 ]; do
    case $1 in
    --rel) REL=$2; shift 2 ;;
    --args) ARGS=$2; shift 2 ;;
    --old-args) OLDARGS=$2; shift 2 ;;
    --new-args) NEWARGS=$2; shift 2 ;;
    *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "usage: $0 [--rel TOL] [--args A] [--old-args A] [--new-args A] OLD_BINARY NEW_BINARY [FIXTURE_DIR] [WORK_DIR]" >&2
    exit 2
fi
HERE=$(dirname "$0")
OLD=$1
NEW=$2
DIR=${3:-build/fixtures}
WORK=${4:-${TMPDIR:-/tmp}/lrp-identical.$$}
for b in "$OLD" "$NEW"; do
    [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }
done
ls "$DIR"/*.h5 >/dev/null 2>&1 || { echo "$0: no fixtures in $DIR (make fixtures)" >&2; exit 2; }
mkdir -p "$WORK/old" "$WORK/new" "$WORK/trace" || exit 2

# run WHICH BIN FIX EXTRA: the two reports of one binary into $WORK/WHICH/NAME.*
# (ARGS and EXTRA are split into words on purpose)
run() {
    which=$1 bin=$2 fix=$3 extra=$4
    name=$(basename "$fix" .h5)
    out=$WORK/$which/$name
    # shellcheck disable=SC2086
    "$bin" check "$fix" $ARGS $extra --no-color --json "$out.check.json" >"$out.check.out" 2>"$out.check.err"
    echo "exit $?" >>"$out.check.out"
    t=$WORK/trace/$name.h5
    rm -f "$t"
    # shellcheck disable=SC2086
    if "$bin" fast "$fix" $ARGS --out "$t" >"$out.fast.out" 2>&1; then
        # shellcheck disable=SC2086
        "$bin" compare "$t" --source fastpath $extra --no-color --json "$out.compare.json" \
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
    run old "$OLD" "$fix" "$OLDARGS"
    run new "$NEW" "$fix" "$NEWARGS"
    bad="" notes=""
    for f in check.out check.json compare.out compare.json; do
        a=$WORK/old/$name.$f b=$WORK/new/$name.$f
        if [ -n "$REL" ] && { [ -e "$a" ] || [ -e "$b" ]; }; then
            /usr/bin/python3 "$HERE/compare_reports.py" --rel "$REL" "$a" "$b" >"$b.diff" 2>&1 ||
                bad="$bad $f"
            grep -q 'last digit' "$b.diff" && notes="$notes $f"
        elif [ -e "$a" ] || [ -e "$b" ]; then
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
        word=identical
        [ -n "$REL" ] && word=equivalent
        printf '%-20s %s (%s)%s\n' "$name" "$word" "$(tail -n 1 "$WORK/new/$name.check.out"), compare $(tail -n 1 "$WORK/new/$name.compare.out")" \
            "${notes:+; last printed digit differs in:$notes}"
    else
        differ=$((differ + 1))
        printf '%-20s DIFFERS:%s\n' "$name" "$bad"
    fi
done
if [ -n "$REL" ]; then
    echo "identical_reports: $same equivalent (numbers to $REL relative), $differ differ (reports in $WORK)"
else
    echo "identical_reports: $same identical, $differ differ (reports in $WORK)"
fi
[ "$differ" -eq 0 ]
