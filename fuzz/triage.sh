#!/bin/sh
# fuzz/triage.sh BUILD TARGET -- replays every crash/timeout artifact of a
# harness and prints one line per input: the sanitizer's error kind, the top
# frame, and the first frame in our own sources (where libhdf5 was called
# from, or where our bug is).
B=$1
t=$2
export HDF5_USE_FILE_LOCKING=FALSE
export LSAN_OPTIONS="suppressions=$(pwd)/fuzz/lsan.supp"
for f in "$B/artifacts/$t"/crash-* "$B/artifacts/$t"/timeout-*; do
    [ -f "$f" ] || continue
    out=$(timeout 30 "$B/fuzz_$t" -timeout=10 "$f" 2>&1)
    kind=$(echo "$out" | grep -m1 -oE 'ERROR: [A-Za-z]+: [a-z-]+|runtime error: .*|ALARM: .*|libFuzzer: deadly signal|HDF5 identifiers left open|message is empty or not one line|failed .* but returned a net|accepted net fails')
    top=$(echo "$out" | grep -E '^ +#[0-9]+ ' | grep -vE '__interceptor|__sanitizer|fuzzer::|libc.so|__asan|PrintStack|AlarmCallback' | head -1 | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in //; s/ \(BuildId.*//; s/^ +#[0-9]+ 0x[0-9a-f]+ +//')
    ours=$(echo "$out" | grep -E '^ +#[0-9]+ .*/work/main/(core|fixtures)/' | head -1 | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in //; s/ \(BuildId.*//')
    echo "$(basename "$f") | ${kind:-?} | top: $top | ours: $ours"
done
