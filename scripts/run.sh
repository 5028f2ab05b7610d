#!/bin/sh
# run.sh BUILD -- `make run`: the oracle over the whole fixture suite.
# `lrp-oracle suite` generates missing fixtures into BUILD/fixtures, checks
# every fixture under its rule sets and the reproductions of real reports
# (docs/REPRODUCTIONS.md), prints one table, and exits 0 only when every run
# behaves as documented.  Machine-readable copies: BUILD/suite.json and
# BUILD/suite.xml (JUnit); the HTML report BUILD/report/index.html.
set -eu
build=$1
exec "$build/lrp-oracle" suite --dir "$build/fixtures" --json "$build/suite.json" \
    --junit "$build/suite.xml" --html "$build/report"
