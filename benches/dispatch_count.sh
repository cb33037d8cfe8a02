#!/usr/bin/env bash
# Dispatch overhead in instructions per event, counted by callgrind (user
# space only): `examples/dispatch_count.rs` run at ROUNDS_SMALL and
# ROUNDS_BIG rounds of 100 events, the difference divided by the extra
# events, for ioloop and for a raw mio loop doing the same system calls.
#
#   benches/dispatch_count.sh [IDLE...]        (default: 10 1000 10000)
#
# Environment: ROUNDS_SMALL (100), ROUNDS_BIG (300), OUT (a directory to
# keep the callgrind files in; a temporary one otherwise), BREAKDOWN=1 to
# print ioloop's instructions per event by function and by source line
# (benches/callgrind_lines.py), NO_BUILD=1 to skip the build.
set -euo pipefail

cd "$(dirname "$0")/.."
idle_counts=("$@")
[ ${#idle_counts[@]} -eq 0 ] && idle_counts=(10 1000 10000)
rounds_small=${ROUNDS_SMALL:-100}
rounds_big=${ROUNDS_BIG:-300}
active=100
events=$(( (rounds_big - rounds_small) * active ))

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --example dispatch_count >&2
fi
binary=${CARGO_TARGET_DIR:-target}/release/examples/dispatch_count
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

# Instructions of one run: KIND IDLE ROUNDS.
count() {
    local file="$out/$1.$2.$3.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$binary" "$1" "$2" "$3" >/dev/null 2>"$out/$1.$2.$3.log"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/$1.$2.$3.log"
}

# Instructions per event of KIND at IDLE idle fds, one decimal.
per_event() {
    local small big
    small=$(count "$1" "$2" "$rounds_small")
    big=$(count "$1" "$2" "$rounds_big")
    echo "scale=1; ($big - $small) / $events" | bc
}

echo "| idle fds | ioloop instr/event | raw mio instr/event | above raw mio |"
echo "|---|---|---|---|"
for idle in "${idle_counts[@]}"; do
    ioloop=$(per_event ioloop "$idle")
    raw=$(per_event raw_mio "$idle")
    above=$(echo "scale=1; $ioloop - $raw" | bc)
    echo "| $idle | $ioloop | $raw | $above |"
done

if [ -n "${BREAKDOWN:-}" ]; then
    idle=${idle_counts[0]}
    for by in function line; do
        echo
        echo "ioloop, $idle idle fds, instructions per event by $by:"
        python3 benches/callgrind_lines.py --by "$by" --top 40 \
            "$out/ioloop.$idle.$rounds_big.out" "$out/ioloop.$idle.$rounds_small.out" "$events"
    done
fi
