#!/usr/bin/env bash
# Runs every fuzz target (func Fuzz*) of the module for FUZZTIME each.
# `go test -fuzz` takes one target per run, so the targets are found with
# `go test -list`, package by package; a new Fuzz function anywhere is
# picked up without editing this file. A failing input is written to the
# package's testdata/fuzz/<target>/ and the script fails.
#   scripts/fuzz.sh [FUZZTIME]   e.g. 10s (make test) or 5m (make fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
go=${GO:-go}

# "go test -list" prints the matching names, then "ok <package> <time>".
targets=$($go test -list '^Fuzz' -run '^$' ./... | awk '
  /^Fuzz/ { names = names " " $1; next }
  /^ok/   { if (names != "") print $2 names; names = "" }')
if [ -z "$targets" ]; then
  echo "fuzz: no Fuzz functions found" >&2
  exit 1
fi
n=0
while read -r pkg names; do
  for name in $names; do
    echo "fuzz: $pkg $name for $fuzztime"
    $go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
    n=$((n + 1))
  done
done <<<"$targets"
echo "fuzz: $n targets, $fuzztime each, no failures"
