#!/bin/sh
# bench_process.sh -- what a user waits for: whole-process times of
# `lrp-oracle info`, `fast FIXTURE --out T` and `fast --out T --trace-only`
# (also with `--threads 1`, as the Zennit call is timed)
# against the baseline of issue 14 (h5py reading every dataset of the
# fixture + the float32 engine alone), all measured in one run, repetitions
# interleaved so that the machine's load falls on every column alike.
#
#   sh bench/bench_process.sh FIXTURE [REPS]
#
# env: LRP_ORACLE  the binary measured (default build/lrp-oracle)
#      OLD         an older binary measured the same way beside it (optional)
#      PYTHON      a Python with h5py (default /usr/bin/python3)
#      ZENNIT      a Zennit source tree (its src/): times Zennit's first call
#                  (EpsilonPlusFlat, 1 thread) on the fixture as a torch
#                  module (tools/python/lrp_torch.py) -- optional
#      OUTDIR      where the outputs go (default a temporary directory beside
#                  the fixture's, removed at the end)
#
# The engine time is the tool's own phase timing (LRP_TIMING=1, line
# "engine": lrp_pipe_run_ex of the fast path inside `fast --out`).  Outputs
# are removed before each run (replacing an existing file costs its removal
# on top).  The outputs of OLD and the new binary are compared byte for
# byte.  Medians are printed, then the ratios to the baseline.
set -eu
fx=${1:?usage: bench_process.sh FIXTURE [REPS]}
reps=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
new=${LRP_ORACLE:-$here/build/lrp-oracle}
old=${OLD:-}
py=${PYTHON:-/usr/bin/python3}
fxdir=$(cd "$(dirname "$fx")" && pwd)
fx="$fxdir/$(basename "$fx")"
out=${OUTDIR:-$(mktemp -d "$fxdir/.bench_process.XXXXXX")}
cleanup() { [ -n "${OUTDIR:-}" ] || rm -rf "$out"; }
trap cleanup EXIT
log="$out/times"
: >"$log"

now() { date +%s.%N; }
# t NAME CMD...: runs CMD, appends "NAME seconds" to the log
t() {
    name=$1
    shift
    a=$(now)
    "$@" >/dev/null 2>"$out/stderr" || {
        echo "bench_process: $name failed:" >&2
        cat "$out/stderr" >&2
        exit 1
    }
    b=$(now)
    echo "$name $(echo "$b - $a" | bc -l)" >>"$log"
}

h5read() {
    "$py" - "$fx" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    def v(name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]
    f.visititems(v)
PY
}

zennit() {
    PYTHONPATH="$ZENNIT:$here/tools/python" "$py" - "$fx" <<'PY'
import sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
import lrp_torch as lt
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat
t1 = time.perf_counter()
mod = lt.fixture_to_module(sys.argv[1], peer="zennit").eval()
x = torch.as_tensor(mod.input_data)
tgt = torch.as_tensor(mod.target).long()
def seed(out):
    s = torch.zeros_like(out)
    i = torch.arange(out.shape[0])
    s[i, tgt] = out.detach()[i, tgt]
    return s
t2 = time.perf_counter()
with Gradient(model=mod, composite=EpsilonPlusFlat(epsilon=1e-6)) as attr:
    attr(x, seed)
t3 = time.perf_counter()
print("zennit_import %.3f\nzennit_load %.3f\nzennit_first_call %.3f" % (t1 - t0, t2 - t1, t3 - t2))
PY
}

echo "# bench_process: $fx ($(du -h "$fx" | cut -f1)), $reps repetitions, $(nproc) CPUs"
echo "# new: $new${old:+; old: $old}"
echo "# start: $(uptime)"
for r in $(seq 1 "$reps"); do
    t h5py_read h5read
    for who in new old; do
        [ "$who" = old ] && [ -z "$old" ] && continue
        bin=$new
        [ "$who" = old ] && bin=$old
        t "${who}_info" "$bin" info "$fx"
        rm -f "$out/$who.T.h5" "$out/$who.trace.h5"
        a=$(now)
        LRP_TIMING=1 "$bin" fast "$fx" --out "$out/$who.T.h5" >/dev/null 2>"$out/timing" || {
            cat "$out/timing" >&2
            exit 1
        }
        b=$(now)
        echo "${who}_fast_out $(echo "$b - $a" | bc -l)" >>"$log"
        e=$(awk '$3 == "engine" && $4 ~ /^[0-9]/ { print $4 }' "$out/timing")
        [ -n "$e" ] && echo "${who}_engine $e" >>"$log"
        t "${who}_fast_trace_only" "$bin" fast "$fx" --out "$out/$who.trace.h5" --trace-only
        # one thread, as Zennit's call below has
        rm -f "$out/$who.trace1.h5"
        t "${who}_fast_trace_only_1t" "$bin" fast "$fx" --out "$out/$who.trace1.h5" --trace-only \
            --threads 1
    done
    if [ -n "$old" ]; then
        cmp -s "$out/old.T.h5" "$out/new.T.h5" || echo "# DIFFERENT: fast --out of old and new"
        # the trace files name the fixture the same way, so they compare too
        cmp -s "$out/old.trace.h5" "$out/new.trace.h5" ||
            echo "# DIFFERENT: fast --out --trace-only of old and new"
    fi
    if [ -n "${ZENNIT:-}" ]; then
        zennit >>"$log"
    fi
done
echo "# end: $(uptime)"

median() {
    awk -v k="$1" '$1 == k { print $2 }' "$log" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
h=$(median h5py_read)
echo
printf "%-28s %9s %9s\n" "median of $reps (s)" new old
for k in engine info fast_out fast_trace_only fast_trace_only_1t; do
    printf "%-28s %9s %9s\n" "$k" "$(median new_$k)" "$(median old_$k)"
done
printf "%-28s %9s\n" "h5py reads every dataset" "$h"
if [ -n "${ZENNIT:-}" ]; then
    for k in zennit_import zennit_load zennit_first_call; do
        printf "%-28s %9s\n" "$k" "$(median $k)"
    done
fi
e=$(median new_engine)
base=$(echo "$h + $e" | bc -l)
echo
echo "ratios (baseline: h5py read $h s + engine $e s = $(printf %.3f "$base") s; targets: info <= 1.5 x h5py, fast <= 1.5 x baseline)"
for who in new old; do
    [ "$who" = old ] && [ -z "$old" ] && continue
    i=$(median ${who}_info)
    f=$(median ${who}_fast_out)
    tr=$(median ${who}_fast_trace_only)
    printf "  %-4s info / h5py %.2f   fast --out / baseline %.2f   --trace-only / baseline %.2f\n" \
        "$who" "$(echo "$i / $h" | bc -l)" "$(echo "$f / $base" | bc -l)" \
        "$(echo "$tr / $base" | bc -l)"
    # the engine's share depends on the machine's load; the rest is ours
    printf "       beyond the baseline: info %+.2f s, fast --out %+.2f s, --trace-only %+.2f s\n" \
        "$(echo "$i - $h" | bc -l)" "$(echo "$f - $base" | bc -l)" "$(echo "$tr - $base" | bc -l)"
done
if [ -n "${ZENNIT:-}" ]; then
    z=$(median zennit_first_call)
    for k in fast_out fast_trace_only fast_trace_only_1t; do
        printf "  Zennit first call (1 thread) %.3f s; %s (new) %.3f s: %s\n" "$z" "$k" \
            "$(median new_$k)" \
            "$(echo "$(median new_$k) < $z" | bc -l | sed 's/1/faster/;s/0/slower/')"
    done
fi
