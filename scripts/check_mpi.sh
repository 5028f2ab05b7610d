#!/bin/sh
# check_mpi.sh DEFAULT_CLI MPI_CLI -- the MPI build's tests (make check-mpi,
# docs/SCALING.md "MPI"): outputs of the MPI build under mpirun -n 1, 2 and
# 3 against the default build's, byte for byte; a failing rank ends the
# job with one line and its exit code, without a hang.
#
#   LRP_MPI_RANKS="1 2 3"   rank counts to run (default)
#   LRP_MPIRUN="mpirun ..." the launcher (default: mpirun -q --oversubscribe,
#                           plus --allow-run-as-root as root)
set -u
ONE=$(realpath "$1")
MPI=$(realpath "$2")
RANKS=${LRP_MPI_RANKS:-1 2 3}
if [ -z "${LRP_MPIRUN:-}" ]; then
    LRP_MPIRUN="mpirun -q --oversubscribe"
    [ "$(id -u)" -eq 0 ] && LRP_MPIRUN="$LRP_MPIRUN --allow-run-as-root"
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "  ok: $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL: $*"; }
# timing fields differ between any two runs: the suite's closing line, the
# JSON "seconds" and the JUnit time attributes
mask() {
    sed -e 's/ runs in [0-9.]* s:/ runs in T s:/' \
        -e 's/"seconds": *[0-9.eE+-]*/"seconds": T/g' \
        -e 's/time="[0-9.]*"/time="T"/g' "$1"
}
same() { # what, file1, file2
    if [ ! -f "$2" ] || [ ! -f "$3" ]; then
        bad "$1: $2 or $3 missing"
        return
    fi
    mask "$2" >"$2.m"
    mask "$3" >"$3.m"
    if cmp -s "$2.m" "$3.m"; then
        ok "$1"
    else
        bad "$1 differs"
        diff "$2.m" "$3.m" | head -5
    fi
}
run() { # timeout-guarded launcher: a hang is a failure
    timeout 300 "$@"
}

FX=$W/fx
mkdir -p "$FX"
"$ONE" gen --out "$FX" >/dev/null || { echo "check_mpi: gen failed"; exit 1; }

echo "== suite (fixtures x rule sets over the ranks)"
# a subset that covers passes, documented failures, ill-conditioned runs
# and the reproductions; with an unreadable fixture (an error entry)
ONLY=cnn,mlp,negzero,vgg_dead,zero_input,abempty,bnzero,resnet
# negzero truncated: its runs become one error entry, the others go on
SUITE_DIR=$W/sdir
mkdir -p "$SUITE_DIR"
cp "$FX"/*.h5 "$SUITE_DIR/"
head -c 3000 "$FX/negzero.h5" >"$SUITE_DIR/negzero.h5"
cd "$W" || exit 1
"$ONE" suite --dir "$SUITE_DIR" --only "$ONLY" --json one.json --junit one.xml --html one.html \
    >one.out 2>one.err
one_rc=$?
[ "$one_rc" -eq 2 ] && ok "one process: exit 2 (a damaged fixture)" || bad "one process: exit $one_rc, not 2"
for n in $RANKS; do
    run $LRP_MPIRUN -n "$n" "$MPI" suite --dir "$SUITE_DIR" --only "$ONLY" --json "n$n.json" \
        --junit "n$n.xml" --html "n$n.html" >"n$n.out" 2>"n$n.err"
    rc=$?
    [ "$rc" -eq "$one_rc" ] && ok "-n $n: exit $rc" || bad "-n $n: exit $rc, one process $one_rc"
    same "-n $n: stdout" one.out "n$n.out"
    same "-n $n: JSON" one.json "n$n.json"
    same "-n $n: JUnit" one.xml "n$n.xml"
    same "-n $n: stderr" one.err "n$n.err"
    same "-n $n: HTML (input heatmaps: per-cell arrays gathered)" one.html/index.html "n$n.html/index.html"
done

# more ranks than runs: rank 2 has none
"$ONE" suite --dir "$SUITE_DIR" --only ties >one.out 2>one.err
run $LRP_MPIRUN -n 3 "$MPI" suite --dir "$SUITE_DIR" --only ties >n3.out 2>n3.err
same "-n 3, two runs: stdout" one.out n3.out

echo "== reference / fast: the samples of a batch over the ranks"
# resnet (BatchNorm, Add, strides) made a batch of 5 with h5py: 5 samples
# split 3+2 and 2+2+1; cnn as written (batch 2): under -n 3 one rank has
# no sample
/usr/bin/python3 - "$FX/resnet.h5" "$W/resnet5.h5" <<'PY' || bad "batch copy (h5py)"
import shutil, sys
import h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
f = h5py.File(sys.argv[2], "r+")
B = 5
x, t = f["data/input"][...], f["data/target"][...]
xs = np.stack([x[k % len(x)] * np.float32(1 + k / 8) for k in range(B)]).astype(np.float32)
ts = np.array([t[k % len(t)] for k in range(B)], dtype=np.int32)
del f["data/input"], f["data/target"]
f["data/input"], f["data/target"] = xs, ts
f.attrs["batch"] = B
f.close()
PY
for fx in "$W/resnet5.h5" "$FX/cnn.h5"; do
    b=$(basename "$fx" .h5)
    for c in fast reference; do
        for only in "" --trace-only; do
            rm -f "$W/one.t.h5"
            "$ONE" $c "$fx" --out "$W/one.t.h5" $only >/dev/null || bad "$c $b: one process failed"
            for n in $RANKS; do
                rm -f "$W/n.t.h5"
                run $LRP_MPIRUN -n "$n" "$MPI" $c "$fx" --out "$W/n.t.h5" $only >"$W/n.out" 2>&1
                rc=$?
                if [ "$rc" -eq 0 ] && cmp -s "$W/one.t.h5" "$W/n.t.h5" &&
                    [ "$(grep -c "wrote trace" "$W/n.out")" -eq 1 ]; then
                    ok "$c $b $only -n $n: the same file"
                else
                    bad "$c $b $only -n $n: exit $rc, files differ or not one line"
                fi
            done
        done
    done
done

echo "== reference --split layer: every layer's channels over the ranks"
# the one-process file (default build, no --split) is the reference.
# resnet: BatchNorm, Add, strides, max-pool, channel blocks 3+3 / 2+2+2
# and uneven ones further on; vgg16s, mlp: Conv2D / Dense chains; negzero
# and zero_input: signed zeros (zero_input has 2 input channels: under
# -n 3 a rank holds none of them); huge_fanin: 1 input channel; resnet5:
# a batch of 5 split by channels; mobilenet and cnn: depthwise Conv2D
# (each rank its own channels, no exchange); resnet under rules with two parts
# (alpha-beta), selectors on z (Zennit's gamma) and z^B bounds (the box
# of the first Conv2D).  The whole-layer fallback (layers the split does
# not divide run whole on every rank): densenet (a dense block of
# Concatenates, 8 + 4 + 4 + 4 channels: blocks of 10 / 7 / 7 ... under
# -n 3), also under EpsilonPlusFlat; zennit_bncat and captum_cat (a
# tensor read by a Concatenate and a BatchNorm / a conv).  Token sequences
# divided by rows of tokens: tokmlp (Dense, LayerNorm, RMSNorm, GELU, SiLU,
# Tanh on 8 tokens: 3 / 3 / 2 under -n 3), bert_tiny (those divided,
# Embedding and Position too, its attentions by rows of queries with exact
# partial sums); attn_padded and decoder1 (an attention divided by queries
# under a key padding mask, and a causal one); resnet and mobilenet with
# --bn canonize (each BatchNorm runs whole with its conv)
for case in "resnet" "vgg16s" "mlp" "negzero" "zero_input" "huge_fanin" "resnet5" \
    "mobilenet" "cnn" \
    "resnet --rule alphabeta --convention sign0_zero" \
    "resnet --rule gamma --flag zennit_gamma_drop0" "resnet --composite EpsilonGammaBox" \
    "densenet" "densenet --composite EpsilonPlusFlat" "zennit_bncat" "captum_cat" "tokmlp" \
    "attn_padded" "decoder1" "bert_tiny" "resnet --bn canonize" "mobilenet --bn canonize"; do
    b=${case%% *}
    args=${case#"$b"}
    fx=$FX/$b.h5
    [ "$b" = resnet5 ] && fx=$W/resnet5.h5
    for only in --trace-only ""; do
        rm -f "$W/one.t.h5" "$W/one1.t.h5"
        # shellcheck disable=SC2086
        "$ONE" reference "$fx" --out "$W/one.t.h5" $only $args >/dev/null ||
            bad "reference $b$args: one process failed"
        # the default build with --split layer: one rank, one block
        # shellcheck disable=SC2086
        "$ONE" reference "$fx" --out "$W/one1.t.h5" $only --split layer $args >/dev/null 2>&1
        cmp -s "$W/one.t.h5" "$W/one1.t.h5" && ok "reference --split layer $b$args $only, one process: the same file" ||
            bad "reference --split layer $b$args $only, one process: files differ"
        for n in $RANKS; do
            # the copy once, under -n 2 (the trace itself is the same either way)
            [ -z "$only" ] && [ "$n" -ne 2 ] && continue
            rm -f "$W/n.t.h5"
            # shellcheck disable=SC2086
            run $LRP_MPIRUN -n "$n" "$MPI" reference "$fx" --out "$W/n.t.h5" $only --split layer \
                $args >"$W/n.out" 2>&1
            rc=$?
            if [ "$rc" -eq 0 ] && cmp -s "$W/one.t.h5" "$W/n.t.h5" &&
                [ "$(grep -c "wrote trace" "$W/n.out")" -eq 1 ]; then
                ok "reference --split layer $b$args $only -n $n: the same file"
            else
                bad "reference --split layer $b$args $only -n $n: exit $rc, files differ or not one line"
                head -3 "$W/n.out"
            fi
        done
    done
done
# fast has no layer split: refused by every rank with one line
run $LRP_MPIRUN -n 2 "$MPI" fast "$FX/resnet.h5" --out "$W/n.t.h5" --split layer >f.out 2>f.err
rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && grep -q -- "--split" f.err &&
    ok "fast --split layer -n 2: refused, one line" ||
    bad "fast --split layer -n 2: exit $rc, $(wc -l <f.err) lines"
# a rank failing in the middle of the split run (resnet: 7 Conv2D / Dense
# layers; its first agreement follows the load, its second the sharing of
# the weights (cli_mpi_share), then two an exchange: its 14th
# agreement is in the forward pass, its 27th in the backward, its 62nd in
# the gathering of the trace after the run), rank 0 included, also leaving
# at once; and at the first two: exit 2, its one line, no file, no hang
for spec in 1@14 1@27 1@62 2@14 0@14 0@27 1@14:exit 1@1 1@2 0@2 2@2:exit; do
    n=2
    [ "${spec%%@*}" -eq 2 ] && n=3
    rm -f "$W/f.t.h5"
    LRP_MPI_TEST_FAIL="$spec" run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n "$n" "$MPI" reference \
        "$FX/resnet.h5" --out "$W/f.t.h5" --trace-only --split layer >f.out 2>f.err
    rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && grep -q "rank ${spec%%@*} fails here" f.err &&
        [ ! -s f.out ] && [ ! -e "$W/f.t.h5" ]; then
        ok "reference --split layer -n $n, rank ${spec%%@*} fails at agreement ${spec#*@}: exit 2, one line, no file"
    else
        bad "reference --split layer -n $n, LRP_MPI_TEST_FAIL=$spec: exit $rc, $(wc -l <f.err) lines"
        cat f.err
    fi
done
# the same in the exchanges of a layer run whole (densenet: after the
# load's and the sharing's agreements, the split's first, then two an
# exchange; agreements 10-11 gather d1_conv for d1_cat's forward, 22-23 the
# stem for d3_cat's, 42-43 the relevance of d3_cat for its backward, 48-49
# of d2_cat, 54-55 of d1_cat)
for spec in 1@10 2@23 1@42 0@48 1@54:exit; do
    n=2
    [ "${spec%%@*}" -eq 2 ] && n=3
    rm -f "$W/f.t.h5"
    LRP_MPI_TEST_FAIL="$spec" run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n "$n" "$MPI" reference \
        "$FX/densenet.h5" --out "$W/f.t.h5" --trace-only --split layer >f.out 2>f.err
    rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && grep -q "rank ${spec%%@*} fails here" f.err &&
        [ ! -s f.out ] && [ ! -e "$W/f.t.h5" ]; then
        ok "reference --split layer densenet -n $n, rank ${spec%%@*} fails at agreement ${spec#*@} (a Concatenate's exchange): exit 2, one line, no file"
    else
        bad "reference --split layer densenet -n $n, LRP_MPI_TEST_FAIL=$spec: exit $rc, $(wc -l <f.err) lines"
        cat f.err
    fi
done

echo "== check / compare: the files over the ranks"
# four files (one missing: an error entry), then compare with a fatal
# usage error found on a file (rule options the trace's rules replace)
"$ONE" fast "$FX/cnn.h5" --out "$W/cnnT.h5" >/dev/null || bad "fast cnn"
for args in "check $FX/cnn.h5 $FX/mlp.h5 $W/missing.h5 $FX/vgg_dead.h5" \
    "compare $W/cnnT.h5 $FX/mlp.h5 $W/cnnT.h5 --source fastpath" \
    "compare $W/cnnT.h5 $W/cnnT.h5 --source fastpath --eps 0.1"; do
    c=${args%% *}
    # shellcheck disable=SC2086
    "$ONE" $args --json one.json --junit one.xml --html one.html >one.out 2>one.err
    one_rc=$?
    for n in $RANKS; do
        rm -rf "n$n.html"
        # shellcheck disable=SC2086
        run $LRP_MPIRUN -n "$n" "$MPI" $args --json "n$n.json" --junit "n$n.xml" \
            --html "n$n.html" >"n$n.out" 2>"n$n.err"
        rc=$?
        [ "$rc" -eq "$one_rc" ] && ok "$c -n $n: exit $rc" || bad "$c -n $n: exit $rc, one process $one_rc"
        same "$c -n $n: stdout" one.out "n$n.out"
        same "$c -n $n: stderr" one.err "n$n.err"
        if [ -f one.json ]; then
            same "$c -n $n: JSON" one.json "n$n.json"
            same "$c -n $n: JUnit" one.xml "n$n.xml"
            same "$c -n $n: HTML" one.html/index.html "n$n.html/index.html"
        fi
    done
    rm -rf one.json one.xml one.html
done

echo "== check / compare of one file: its samples over the ranks"
# every MPFR run split by samples, the root judging the batch: the report
# is one process's whatever the split (resnet5: 3+2 and 2+2+1; cnn, batch
# 2, under -n 3: a rank with no sample)
"$ONE" fast "$W/resnet5.h5" --out "$W/resnet5T.h5" >/dev/null || bad "fast resnet5"
for args in "check $W/resnet5.h5" "compare $W/resnet5T.h5 --source fastpath" \
    "check $FX/cnn.h5" "compare $W/cnnT.h5 --source fastpath"; do
    c=${args%% *}
    b=$(basename "$(echo "$args" | cut -d' ' -f2)" .h5)
    rm -rf one.html
    # shellcheck disable=SC2086
    "$ONE" $args --json one.json --junit one.xml --html one.html >one.out 2>one.err
    one_rc=$?
    for n in $RANKS; do
        rm -rf "n$n.html"
        # shellcheck disable=SC2086
        run $LRP_MPIRUN -n "$n" "$MPI" $args --json "n$n.json" --junit "n$n.xml" \
            --html "n$n.html" >"n$n.out" 2>"n$n.err"
        rc=$?
        [ "$rc" -eq "$one_rc" ] && ok "$c $b -n $n: exit $rc" ||
            bad "$c $b -n $n: exit $rc, one process $one_rc"
        same "$c $b -n $n: stdout" one.out "n$n.out"
        same "$c $b -n $n: stderr" one.err "n$n.err"
        same "$c $b -n $n: JSON" one.json "n$n.json"
        same "$c $b -n $n: JUnit" one.xml "n$n.xml"
        same "$c $b -n $n: HTML" one.html/index.html "n$n.html/index.html"
    done
done
# the attention's key mask is per sample: a batch of 3 of attn_padded
/usr/bin/python3 - "$FX/attn_padded.h5" "$W/attnp3.h5" <<'PY' || bad "batch copy (h5py)"
import shutil, sys
import h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
f = h5py.File(sys.argv[2], "r+")
B = 3
for name in ("input", "target", "key_padding_mask"):
    x = f["data/" + name][...]
    xs = np.stack([x[k % len(x)] for k in range(B)]).astype(x.dtype)
    if name == "input":
        xs[len(x):] *= np.float32(1.25)
    if name == "key_padding_mask":  # its own mask: another key masked
        xs[len(x):] = np.roll(x[0], 3)
    del f["data/" + name]
    f["data/" + name] = xs
f.attrs["batch"] = B
f.close()
PY
"$ONE" check "$W/attnp3.h5" --json one.json >one.out 2>one.err
one_rc=$?
rm -f "$W/one.t.h5"
"$ONE" reference "$W/attnp3.h5" --out "$W/one.t.h5" --trace-only >/dev/null || bad "reference attnp3"
for n in 2 3; do
    run $LRP_MPIRUN -n "$n" "$MPI" check "$W/attnp3.h5" --json "n$n.json" >"n$n.out" 2>"n$n.err"
    rc=$?
    [ "$rc" -eq "$one_rc" ] && ok "check attnp3 -n $n: exit $rc" ||
        bad "check attnp3 -n $n: exit $rc, one process $one_rc"
    same "check attnp3 -n $n: stdout" one.out "n$n.out"
    same "check attnp3 -n $n: JSON" one.json "n$n.json"
    rm -f "$W/n.t.h5"
    run $LRP_MPIRUN -n "$n" "$MPI" reference "$W/attnp3.h5" --out "$W/n.t.h5" --trace-only \
        >/dev/null 2>&1
    cmp -s "$W/one.t.h5" "$W/n.t.h5" && ok "reference attnp3 -n $n: the same file" ||
        bad "reference attnp3 -n $n: files differ"
done
# a rank failing in the middle of the split run (its 40th agreement: the
# reference run's exchanges): exit 2, its one line, no report, no hang
for n in 2 3; do
    last=$((n - 1))
    for how in "" ":exit"; do
        rm -f f.json
        LRP_MPI_TEST_FAIL="$last@40$how" run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n "$n" "$MPI" \
            check "$W/resnet5.h5" --json f.json >f.out 2>f.err
        rc=$?
        if [ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && grep -q "rank $last fails here" f.err &&
            [ ! -s f.out ] && [ ! -e f.json ]; then
            ok "check -n $n, rank $last fails in the run$how: exit 2, one line, no report"
        else
            bad "check -n $n, rank $last fails in the run$how: exit $rc, $(wc -l <f.err) lines"
            cat f.err
        fi
    done
done
# rank 0 failing there: the same
LRP_MPI_TEST_FAIL="0@40" run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n 2 "$MPI" \
    compare "$W/resnet5T.h5" --source fastpath --json f.json >f.out 2>f.err
rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && [ ! -s f.out ] && [ ! -e f.json ] &&
    ok "compare -n 2, rank 0 fails in the run: exit 2, one line, no report" ||
    bad "compare -n 2, rank 0 fails in the run: exit $rc, $(wc -l <f.err) lines"
# a file every rank fails to read: the one-process error entry and exit
"$ONE" check "$W/missing.h5" --json one.json >one.out 2>one.err
one_rc=$?
run $LRP_MPIRUN -n 2 "$MPI" check "$W/missing.h5" --json n2.json >n2.out 2>n2.err
rc=$?
[ "$rc" -eq "$one_rc" ] && ok "check of a missing file -n 2: exit $rc" ||
    bad "check of a missing file -n 2: exit $rc, one process $one_rc"
same "check of a missing file -n 2: stderr" one.err n2.err
same "check of a missing file -n 2: JSON" one.json n2.json

echo "== check / compare --split layer of one file: every layer's channels over the ranks"
# every MPFR run over channel blocks, rank 0 placing the blocks and judging:
# the one-process report (the default build, no split), failing verdicts
# included: vgg_dead (a NaN origin), nearcancel (ill-conditioned cells),
# negzero (signed zeros), a sign-flipped trace of resnet (FAIL); densenet
# and zennit_bncat's trace (Concatenates, run whole on every rank); mobilenet
# and resnet under --bn canonize (each BatchNorm divided with its conv);
# tokmlp and ln_eps0 (token sequences divided by rows of tokens; ln_eps0's
# 0/0 rows: the first NaN's origin, raised by the LayerNorm's forward step);
# bert_tiny, attn1 and vit_tiny's trace (attentions divided by queries,
# their absorbed totals and flags formed whole on every rank; SelectToken,
# ToTokens, ClsToken run whole; the per-unit data of both rank 0's)
"$ONE" fast "$FX/resnet.h5" --out "$W/resnetT.h5" >/dev/null || bad "fast resnet"
"$ONE" fast "$FX/zennit_bncat.h5" --out "$W/bncatT.h5" >/dev/null || bad "fast zennit_bncat"
"$ONE" fast "$FX/negzero.h5" --out "$W/negzeroT.h5" >/dev/null || bad "fast negzero"
"$ONE" fast "$FX/vit_tiny.h5" --out "$W/vitT.h5" >/dev/null || bad "fast vit_tiny"
/usr/bin/python3 - "$W/resnetT.h5" <<'PY' || bad "flipped trace (h5py)"
import sys, h5py
f = h5py.File(sys.argv[1], "r+")
f.copy(f["traces/fastpath"], "traces/flipped")
r = f["traces/flipped/relevance"]
k = sorted(r)[0]
r[k][...] = -r[k][...]
f.close()
PY
for args in "check $FX/vgg_dead.h5" "check $FX/nearcancel.h5" "check $W/resnet5.h5" \
    "compare $W/negzeroT.h5 --source fastpath" "compare $W/resnetT.h5 --source flipped" \
    "compare $W/cnnT.h5 --source fastpath" "check $FX/densenet.h5" \
    "compare $W/bncatT.h5 --source fastpath" "check $FX/mobilenet.h5 --bn canonize" \
    "check $FX/resnet.h5 --bn canonize" "check $FX/tokmlp.h5" "check $FX/ln_eps0.h5" \
    "check $FX/bert_tiny.h5" "check $FX/attn1.h5" "compare $W/vitT.h5 --source fastpath"; do
    c=${args%% *}
    b=$(basename "$(echo "$args" | cut -d' ' -f2)" .h5)
    # the options after the file, in the labels (--bn canonize)
    case $args in *" --bn "*) b="$b --bn ${args##* --bn }" ;; esac
    # shellcheck disable=SC2086
    "$ONE" $args --json one.json >one.out 2>one.err
    one_rc=$?
    # shellcheck disable=SC2086
    "$ONE" $args --split layer --json n1d.json >n1d.out 2>n1d.err
    rc=$?
    [ "$rc" -eq "$one_rc" ] && ok "$c $b --split layer, one process: exit $rc" ||
        bad "$c $b --split layer, one process: exit $rc, without the split $one_rc"
    same "$c $b --split layer, one process: stdout" one.out n1d.out
    same "$c $b --split layer, one process: JSON" one.json n1d.json
    for n in $RANKS; do
        # shellcheck disable=SC2086
        run $LRP_MPIRUN -n "$n" "$MPI" $args --split layer --threads 1 --json "n$n.json" \
            >"n$n.out" 2>"n$n.err"
        rc=$?
        [ "$rc" -eq "$one_rc" ] && ok "$c $b --split layer -n $n: exit $rc" ||
            bad "$c $b --split layer -n $n: exit $rc, one process $one_rc"
        same "$c $b --split layer -n $n: stdout" one.out "n$n.out"
        same "$c $b --split layer -n $n: stderr" one.err "n$n.err"
        same "$c $b --split layer -n $n: JSON" one.json "n$n.json"
    done
done
# a rank failing in the middle of the runs (its 40th agreement), rank 0
# included, and one leaving without finalizing; then later in the run,
# where about half of the exchanges are the parked arrays' (the hooks'
# parking, rank 0's requests while the others serve it; check: the local
# comparison's too; tests/test_check_split.c hits each kind): exit 2, one
# line, no report, no hang
for job in "1@40 2@40 0@40 2@40:exit 1@500 0@700 2@880:exit|compare $W/resnetT.h5 --source fastpath" \
    "1@300 0@600 2@900:exit|check $FX/resnet.h5"; do
    cmd=${job#*|}
    for spec in ${job%%|*}; do
        rm -f f.json
        # shellcheck disable=SC2086
        LRP_MPI_TEST_FAIL="$spec" run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n 3 "$MPI" \
            $cmd --split layer --json f.json >f.out 2>f.err
        rc=$?
        if [ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && [ ! -s f.out ] && [ ! -e f.json ]; then
            ok "${cmd%% *} --split layer -n 3, LRP_MPI_TEST_FAIL=$spec: exit 2, one line, no report"
        else
            bad "${cmd%% *} --split layer -n 3, LRP_MPI_TEST_FAIL=$spec: exit $rc, $(wc -l <f.err) lines"
            cat f.err
        fi
    done
done

echo "== a failing rank: one line, its exit code, no hang"
for n in 2 3; do
    last=$((n - 1))
    LRP_MPI_TEST_FAIL=$last run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n "$n" "$MPI" suite \
        --dir "$SUITE_DIR" --only mlp >f.out 2>f.err
    rc=$?
    lines=$(wc -l <f.err)
    if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q "rank $last fails here" f.err &&
        [ ! -s f.out ]; then
        ok "-n $n, rank $last fails: exit 2, one line, no report"
    else
        bad "-n $n, rank $last fails: exit $rc, $lines stderr lines, $(wc -c <f.out) stdout bytes"
        cat f.err
    fi
    LRP_MPI_TEST_FAIL="$last:exit" run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n "$n" "$MPI" suite \
        --dir "$SUITE_DIR" --only mlp >f.out 2>f.err
    rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "rank $last fails here" f.err; then
        ok "-n $n, rank $last leaves without finalizing: exit $rc, no hang"
    else
        bad "-n $n, rank $last leaves without finalizing: exit $rc"
        cat f.err
    fi
done
# fast: rank 1 fails after its share of the samples (its third agreement,
# after the load's and the weights'); rank 0 writes nothing
rm -f "$W/f.t.h5"
LRP_MPI_TEST_FAIL=1@3 run $LRP_MPIRUN -x LRP_MPI_TEST_FAIL -n 2 "$MPI" fast "$W/resnet5.h5" \
    --out "$W/f.t.h5" >f.out 2>f.err
rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && [ ! -e "$W/f.t.h5" ] &&
    ok "fast -n 2, rank 1 fails: exit 2, one line, no file" ||
    bad "fast -n 2, rank 1 fails: exit $rc, $(wc -l <f.err) lines, file: $(ls "$W/f.t.h5" 2>&1)"
# a usage error every rank meets: one line, not one per rank
run $LRP_MPIRUN -n 3 "$MPI" suite --no-such-option >f.out 2>f.err
rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] && ok "-n 3, usage error: exit 2, one line" ||
    bad "-n 3, usage error: exit $rc, $(wc -l <f.err) lines"

echo "== rank 0 takes its node's cores (tools/cli_mpi.c widen_root)"
# Under a launcher that binds each rank to one core, rank 0 (which runs the
# judgement's phases alone with every local rank's threads) must take the
# union of its node's ranks' cores, and rank 1 keep its own.  Read from
# /proc while a check runs (the last values seen before it ends).
# While job $1 (a check of resnet) runs: "$2 PID RANK" for each of its
# ranks every 0.05 s (a process may end between pgrep and the reads).
watch_ranks() {
    while kill -0 "$1" 2>/dev/null; do
        for p in $(pgrep -f "$MPI check $FX/resnet.h5"); do
            rk=$({ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null |
                sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
            "$2" "$p" "$rk"
        done
        sleep 0.05
    done
}
ncpus() { # the CPU count of a Cpus_allowed_list ("0-1", "0,2-3")
    echo "$1" | tr ',' '\n' | awk -F- 'NF { n += (NF == 2 ? $2 - $1 + 1 : 1) } END { print n + 0 }'
}
seen_cpus() { # PID RANK: the last Cpus_allowed_list of ranks 0 and 1
    c=$({ sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "/proc/$1/status"; } 2>/dev/null)
    [ -n "$c" ] && [ "$2" = 0 ] && r0=$c
    [ -n "$c" ] && [ "$2" = 1 ] && r1=$c
}
if [ "$(nproc)" -ge 2 ]; then
    $LRP_MPIRUN --bind-to core -n 2 "$MPI" check "$FX/resnet.h5" --split layer --threads 1 \
        >/dev/null 2>&1 &
    mp=$!
    r0="" r1=""
    watch_ranks "$mp" seen_cpus
    wait "$mp"
    rc=$?
    if [ "$rc" -ne 0 ] || [ -z "$r0" ] || [ -z "$r1" ]; then
        bad "bound -n 2: check exit $rc, rank 0's cpus '$r0', rank 1's '$r1' (not seen)"
    elif [ "$(ncpus "$r1")" -ne 1 ]; then
        echo "  (skipped: the launcher did not bind rank 1 to one core: '$r1')"
    elif [ "$(ncpus "$r0")" -ge 2 ]; then
        ok "bound -n 2: rank 0 runs on cpus $r0, rank 1 on $r1"
    else
        bad "bound -n 2: rank 0 kept cpus '$r0' (rank 1: '$r1')"
    fi
else
    echo "  (skipped: one CPU)"
fi

echo "== one copy of the weights a node (tools/cli_mpi.c cli_mpi_share)"
# While a check runs under -n 2, both ranks must map the same shared copy
# (/dev/shm/lrp-oracle-*, unlinked once mapped: the same inode in both
# ranks' /proc maps), and at the end every parameter array of each rank
# must be in it (LRP_MPI_TEST_SHARE_REPORT); with LRP_MPI_SHARE=0, or with
# no room for it, neither maps one.  The report is one process's in every
# case.
seen_shm() { # PID RANK: the inode of the shared copy ranks 0 and 1 map
    ino=$({ awk '$6 ~ /^\/dev\/shm\/lrp-oracle-/ { print $5; exit }' "/proc/$1/maps"; } \
        2>/dev/null)
    [ -n "$ino" ] && [ "$2" = 0 ] && i0=$ino
    [ -n "$ino" ] && [ "$2" = 1 ] && i1=$ino
}
shm_seen() { # LRP_MPI_SHARE LRP_MPI_TEST_SHARE_NOROOM: "inode0 inode1"
    LRP_MPI_SHARE=$1 LRP_MPI_TEST_SHARE_NOROOM=$2 LRP_MPI_TEST_SHARE_REPORT=1 $LRP_MPIRUN \
        -x LRP_MPI_SHARE -x LRP_MPI_TEST_SHARE_NOROOM -x LRP_MPI_TEST_SHARE_REPORT -n 2 "$MPI" \
        check "$FX/resnet.h5" --split layer --threads 1 >"$W/shm.out" 2>"$W/shm.err" &
    mp=$!
    i0="-" i1="-"
    watch_ranks "$mp" seen_shm
    wait "$mp" || echo "exit $?" >>"$W/shm.out"
    echo "$i0 $i1"
}
"$ONE" check "$FX/resnet.h5" >"$W/shm1.out" 2>&1
# (a machine without a writable /dev/shm runs without the copy: those
# checks are skipped there, the others hold)
shm=1
[ -d /dev/shm ] && [ -w /dev/shm ] || { shm=0; echo "  (no writable /dev/shm: the copy's checks skipped)"; }
set -- $(shm_seen 1 0)
# "rank R: K of N arrays in the node's copy" at the end
every=$(grep -c "rank [01]: \([1-9][0-9]*\) of \1 arrays in the node's copy" "$W/shm.err")
if [ "$shm" -eq 0 ]; then
    :
elif [ "$1" != - ] && [ "$1" = "$2" ] && [ "$every" -eq 2 ]; then
    ok "check -n 2: both ranks read every parameter from one shared copy (inode $1)"
else
    bad "check -n 2: shared copy: inodes '$1' '$2' (rank 0, rank 1); $every ranks had every array in it"
    cat "$W/shm.err"
fi
same "check -n 2, weights shared: stdout" "$W/shm1.out" "$W/shm.out"
for how in "0 0|LRP_MPI_SHARE=0" "1 1|no room (LRP_MPI_TEST_SHARE_NOROOM=1)"; do
    # shellcheck disable=SC2086
    set -- $(shm_seen ${how%%|*})
    [ "$1 $2" = "- -" ] && [ ! -s "$W/shm.err" ] && ok "check -n 2, ${how#*|}: no shared copy" ||
        bad "check -n 2, ${how#*|}: a shared copy was mapped (inodes $1 $2)"
    same "check -n 2, ${how#*|}: stdout" "$W/shm1.out" "$W/shm.out"
done
# compare: the trace's arrays are in the copy too, the report one
# process's.  How many arrays that is is counted from the file by h5py, not
# by the tool: the parameter datasets under /network and the trace's
# relevance and activations (resnet: 32 + 44 = 76)
"$ONE" fast "$FX/resnet.h5" --out "$W/shmT.h5" >/dev/null || bad "fast resnet"
"$ONE" compare "$W/shmT.h5" --source fastpath >"$W/shm1.out" 2>&1
narr=$(/usr/bin/python3 - "$W/shmT.h5" <<'PY' || echo 0
import sys, h5py
f = h5py.File(sys.argv[1], "r")
n = sum(1 for g in f["network"].values() for v in g.values() if isinstance(v, h5py.Dataset))
n += sum(len(f["traces/fastpath"][k]) for k in ("relevance", "activation"))
print(n)
PY
)
[ "$narr" -gt 0 ] || bad "counting resnet's arrays with h5py"
for sp in "" "--split layer"; do
    # shellcheck disable=SC2086
    LRP_MPI_TEST_SHARE_REPORT=1 run $LRP_MPIRUN -x LRP_MPI_TEST_SHARE_REPORT -n 3 "$MPI" compare \
        "$W/shmT.h5" --source fastpath $sp >"$W/shm.out" 2>"$W/shm.err"
    every=$(grep -c "rank [012]: $narr of $narr arrays in the node's copy" "$W/shm.err")
    how=${sp:---split samples}
    if [ "$shm" -eq 1 ]; then
        [ "$every" -eq 3 ] && ok "compare $how -n 3: every rank reads the weights and the trace from the copy" ||
            { bad "compare $how -n 3: $every ranks read $narr of $narr arrays from the copy"; cat "$W/shm.err"; }
    fi
    same "compare $how -n 3, weights and trace shared: stdout" "$W/shm1.out" "$W/shm.out"
done
# a rank whose values differ from rank 0's (as if the file changed between
# the ranks' reads, or another node had another file of that path;
# LRP_MPI_TEST_SHARE_DIFF changes its own last array's last value by one
# ulp: a parameter's, or under compare its trace's last activation), with
# the copy or without it (LRP_MPI_SHARE=0, each rank on its own node
# alike): exit 2, one line naming the layer (and trace) and the rank, no
# report, no file
# (rank 0 changed: rank 1 is the first to differ from it, and is named)
for job in "2 1 1|check $FX/resnet.h5 --split layer --json f.json" \
    "2 1 0|check $FX/resnet.h5 --split layer --json f.json" \
    "2 0 1|check $FX/resnet.h5 --split layer --json f.json" \
    "3 2 1|check $FX/resnet.h5 --json f.json" \
    "3 1 1|reference $FX/resnet.h5 --out f.t.h5 --split layer" \
    "2 1 0|fast $FX/resnet.h5 --out f.t.h5" \
    "2 1 1|compare $W/shmT.h5 --source fastpath --split layer --json f.json"; do
    set -- ${job%%|*}
    cmd=${job#*|}
    rm -f f.json f.t.h5
    # shellcheck disable=SC2086
    LRP_MPI_SHARE=$3 LRP_MPI_TEST_SHARE_DIFF=$2 run $LRP_MPIRUN -x LRP_MPI_TEST_SHARE_DIFF \
        -x LRP_MPI_SHARE -n "$1" "$MPI" $cmd >f.out 2>f.err
    rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <f.err)" -eq 1 ] &&
        grep -q "layer '.*' .*: rank $(($2 > 0 ? $2 : 1)) read other values than rank 0" f.err &&
        { [ "${cmd%% *}" != compare ] || grep -q "/traces/fastpath: layer '.*' activation" f.err; } &&
        [ ! -s f.out ] && [ ! -e f.json ] && [ ! -e f.t.h5 ]; then
        ok "${cmd%% *} -n $1, rank $2 read other values (LRP_MPI_SHARE=$3): exit 2, one line, nothing written"
    else
        bad "${cmd%% *} -n $1, rank $2 read other values (LRP_MPI_SHARE=$3): exit $rc, $(wc -l <f.err) lines"
        cat f.err
    fi
done

echo "check_mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
