#!/usr/bin/env bash
# System calls per echoed message, counted exactly with perf on the server
# process only: ioloop (with 64 KiB reads; as shipped, with 1 KiB first
# reads; and over IOStream), raw mio and tokio, same load, same run.
# Usage: benches/syscalls.sh [CONNECTIONS] [BYTES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-16}
bytes=${2:-64}
rounds=${3:-20000}
cargo build -q --release --example echo_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/echo_bench
printf '%-14s %12s %10s %14s\n' server messages syscalls syscalls/msg
for kind in ioloop ioloop_default ioloop_stream raw_mio tokio; do
  out=$(mktemp)
  "$bin" serve "$kind" > "$out" &
  server=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  addr=$(awk '/listening on/ { print $3 }' "$out")
  counts=$(mktemp)
  perf stat -x, -e raw_syscalls:sys_enter -p "$server" -o "$counts" &
  perf=$!
  sleep 0.2
  load=$("$bin" load "$addr" "$connections" "$bytes" "$rounds")
  kill -INT "$perf"; wait "$perf" || true
  kill "$server"; wait "$server" 2>/dev/null || true
  syscalls=$(awk -F, '/raw_syscalls/ { print $1 }' "$counts")
  messages=$(echo "$load" | sed -n 's/.*messages=\([0-9]*\).*/\1/p')
  printf '%-14s %12s %10s %14.2f   (%s)\n' "$kind" "$messages" "$syscalls" \
    "$(awk -v s="$syscalls" -v m="$messages" 'BEGIN { print s / m }')" "$load"
  rm -f "$out" "$counts"
done
