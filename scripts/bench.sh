#!/bin/sh
# bench.sh BUILD [--quick] -- the end-to-end float32 LRP benchmark against
# the PyTorch baseline, measured in the same session:
#   bench_lrp (the f32 engine: exactly what `lrp-oracle fast` runs; also the
#   full audit run of `check`) and bench/torch_baseline.py (autograd LRP,
#   same composite, same shapes) in two forms: z+ as Zennit runs it (both
#   a+ W+ and a- W- terms: it does not know a >= 0) and a lean form that
#   drops the a- term as our engine does; EpsilonPlusFlat, 2 threads,
#   median of 3 after a warm-up.
# The machine may be shared, so the two sides are interleaved case by case
# (each pair runs within seconds of each other) and the load average is
# printed; the RATIO is the meaningful number.  BENCH_KERNELS=1 also runs
# the kernel-level bench_fastpath first.
set -u
build=${1:-build-bench}
quick=${2:-}
bin="$build/bench/bench_lrp"
py=/usr/bin/python3
if [ ! -x "$bin" ]; then
    echo "bench.sh: $bin not built" >&2
    exit 1
fi
out=$(mktemp)
tout=$(mktemp)
trap 'rm -f "$out" "$tout"' EXIT

if [ "${BENCH_KERNELS:-0}" = 1 ] && [ -x "$build/bench/bench_fastpath" ]; then
    echo "== fast path kernels ($build/bench/bench_fastpath $quick)"
    "$build/bench/bench_fastpath" $quick
    echo
fi

have_torch=0
if "$py" -c "import torch" 2>/dev/null; then
    have_torch=1
else
    echo "== PyTorch baseline skipped: $py cannot import torch (apt-get install python3-torch)"
fi

if [ -n "$quick" ]; then
    cases="vgg16_224_b1 resnet50_224_b1"
else
    cases="vgg16_224_b1 vgg16_112_b1 vgg16_224_b8 resnet50_224_b1"
fi
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for c in $cases; do
    echo "== $c: bench_lrp"
    "$bin" --case "$c" | tee -a "$out"
    if [ "$have_torch" = 1 ]; then
        echo "== $c: PyTorch baseline, lean z+"
        "$py" bench/torch_baseline.py --case "$c" | tee -a "$tout"
        echo "== $c: PyTorch baseline, z+ as Zennit runs it"
        "$py" bench/torch_baseline.py --case "$c" --form zennit | tee -a "$tout"
    fi
done
echo "== determinism"
"$bin" --det-only | tee -a "$out"
det=0
grep -q "^RESULT determinism .* ok" "$out" || det=1

echo
echo "== EpsilonPlusFlat LRP end to end (forward + LRP backward), median of 3"
printf '%-16s %9s %9s %6s %9s %9s %9s %9s %8s %8s %8s %9s %7s\n' case "ours 1t" "ours 2t" \
    "1t/2t" "cold 2t" "audit 2t" "torch" "zennit" "torch fwd" "ratio" "ratio z" "conv GF/s" "RSS MB"
for c in $cases; do
    l=$(grep "^RESULT lrp $c " "$out")
    t1=$(echo "$l" | sed -n 's/.* t1_s \([0-9.]*\).*/\1/p')
    t2=$(echo "$l" | sed -n 's/.* t2_s \([0-9.]*\).*/\1/p')
    sp=$(echo "$l" | sed -n 's/.* speedup \([0-9.]*\).*/\1/p')
    cold=$(echo "$l" | sed -n 's/.* cold2_s \([0-9.]*\).*/\1/p')
    gf=$(echo "$l" | sed -n 's/.* conv_gflops \([0-9.]*\).*/\1/p')
    rss=$(echo "$l" | sed -n 's/.* peak_rss_mb \([0-9.]*\).*/\1/p')
    full=$(echo "$l" | sed -n 's/.* full2_s \([0-9.]*\).*/\1/p')
    t=$(sed -n "s/^RESULT torch $c .*lrp_s \([0-9.]*\).*/\1/p" "$tout")
    tz=$(sed -n "s/^RESULT torch_zennit $c .*lrp_s \([0-9.]*\).*/\1/p" "$tout")
    tf=$(sed -n "s/^RESULT torch $c forward_s \([0-9.]*\).*/\1/p" "$tout")
    r=$(awk -v a="${t2:-0}" -v b="${t:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", a / b; else print "-" }')
    rz=$(awk -v a="${t2:-0}" -v b="${tz:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", a / b; else print "-" }')
    printf '%-16s %9s %9s %6s %9s %9s %9s %9s %8s %8s %8s %9s %7s\n' "$c" "${t1:--}" "${t2:--}" \
        "x${sp:--}" "${cold:--}" "${full:--}" "${t:--}" "${tz:--}" "${tf:--}" "$r" "$rz" \
        "${gf:--}" "${rss:--}"
done
echo "measured FMA peak per case (GFLOP/s, 1 and 2 threads; low values = a busy machine):" \
    $(sed -n 's/^RESULT peak gflops1 \([0-9.]*\) gflops2 \([0-9.]*\).*/\1\/\2/p' "$out")
echo "ours = the engine (\`lrp-oracle fast\`), 2 threads, warm median; audit = the full run of"
echo "       \`check\` (gauges, absorbed relevance, conservation residuals), same relevance bits"
echo "ratio = ours / torch (lean z+); ratio z = ours / zennit (z+ as Zennit runs it, the"
echo "       baseline the issue names); target <= 0.5"
echo "cold = our first run in a fresh context (empty weight cache and tensor pool),"
echo "       what one \`lrp-oracle fast\` invocation pays"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $det
