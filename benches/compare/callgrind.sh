#!/usr/bin/env bash
# Instructions per pick under callgrind, independent of machine load.
# Usage: benches/compare/callgrind.sh POLICY N [failover]
# Prints: POLICY N ITERS Ir/pick. Build first:
#   (cd benches/compare && cargo build --release --bin callgrind_pick)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${CARGO_TARGET_DIR:-$here/target}/release/callgrind_pick"
iters=20000
out="$(mktemp)"
valgrind --tool=callgrind --callgrind-out-file="$out" \
    --toggle-collect='*timed_picks*' --toggle-collect='*timed_bare*' \
    "$bin" "$1" "$2" "$iters" "${3:-}" 2>/dev/null
total="$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
# The warm-up call runs 1000 picks inside the same function.
echo "$1 $2 ${3:-} Ir/pick=$(( total / (iters + 1000) ))"
rm -f "$out"
