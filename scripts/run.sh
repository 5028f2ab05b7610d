#!/bin/sh
# run.sh BUILD -- `make run`: generate the fixture suite if missing, then
# run the oracle over it.  Until the oracle lands (issue 5) this prints each
# fixture's network; the summary table replaces it then.
set -eu
build=$1
cli="$build/lrp-oracle"
dir="$build/fixtures"
missing=0
for name in $("$cli" gen --list | awk '{print $1}'); do
    [ -f "$dir/$name.h5" ] || missing=1
done
if [ "$missing" -eq 1 ]; then
    "$cli" gen --out "$dir"
fi
for f in "$dir"/*.h5; do
    "$cli" info "$f"
    echo
done
