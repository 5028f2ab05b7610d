#!/bin/sh
# bench.sh BUILD [--quick] -- runs the fast-path kernel benchmark and the
# PyTorch baseline in the same session and prints a comparison table:
# estimated EpsilonPlusFlat LRP pass of the fast path (convs: forward + z+
# forward + backward-data; dense: forward + backward-data; 2 threads) against
# PyTorch's autograd LRP pass (2 threads).  The per-layer tables of the fast
# path are printed first.  The machine may be shared: numbers are noisy.
set -u
build=${1:-build-bench}
quick=${2:-}
bin="$build/bench/bench_fastpath"
py=/usr/bin/python3
if [ ! -x "$bin" ]; then
    echo "bench.sh: $bin not built" >&2
    exit 1
fi
out=$(mktemp)
tout=$(mktemp)
trap 'rm -f "$out" "$tout"' EXIT

echo "== fast path kernels ($bin $quick)"
"$bin" $quick | tee "$out"

echo
if "$py" -c "import torch" 2>/dev/null; then
    echo "== PyTorch baseline (bench/torch_baseline.py $quick)"
    "$py" bench/torch_baseline.py $quick | tee "$tout"
else
    echo "== PyTorch baseline skipped: $py cannot import torch (apt-get install python3-torch)"
fi

echo
echo "== EpsilonPlusFlat LRP pass, 2 threads"
printf '%-18s %12s %14s %14s %10s\n' case "fast path s" "torch LRP s" "torch fwd s" "ratio"
for c in vgg16_224_b1 vgg16_112_b1 vgg16_224_b8 resnet50_224_b1; do
    f=$(sed -n "s/^RESULT $c .*est_lrp_s \([0-9.]*\).*/\1/p" "$out")
    t=$(sed -n "s/^RESULT torch $c .*lrp_s \([0-9.]*\).*/\1/p" "$tout")
    tf=$(sed -n "s/^RESULT torch $c forward_s \([0-9.]*\).*/\1/p" "$tout")
    [ -z "$f" ] && [ -z "$t" ] && continue
    r=$(awk -v a="${f:-0}" -v b="${t:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", a / b; else print "-" }')
    printf '%-18s %12s %14s %14s %10s\n' "$c" "${f:--}" "${t:--}" "${tf:--}" "$r"
done
sed -n 's/^RESULT peak_rss_mb \(.*\)/fast path benchmark peak RSS: \1 MB/p' "$out"
echo "(ratio = fast path estimate / torch LRP; target <= 0.5)"
