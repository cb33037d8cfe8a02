#!/usr/bin/env bash
# Print the trace hash of every seed of a fixed set of simulator runs, one
# line each, so that two builds can be compared seed by seed:
#
#   benches/sim_hashes.sh target/release/sim > before.txt
#   (change, rebuild)
#   benches/sim_hashes.sh target/release/sim > after.txt
#   cmp before.txt after.txt
#
# The set covers the echo scenario under every preset, with a liveness
# phase, with large messages, and every planted bug but the planted
# non-determinism (whose hash is meant to differ between processes).
set -euo pipefail
sim=${1:-${CARGO_TARGET_DIR:-target}/release/sim}
run() {
  echo "# $*"
  "$sim" run --hashes "$@" | grep '^seed=' || true
}
run --scenario echo --faults swarm --seeds 0..3000
run --scenario echo --faults all --seeds 0..500
run --scenario echo --faults none --seeds 0..200
run --scenario echo --faults swarm --seeds 0..500 --liveness-after-ms 20
run --scenario echo --faults swarm --seeds 0..100 --message-bytes 204800 --clients 3 --messages 3
for scenario in $("$sim" list | awk '$2 == "must" && $3 == "fail" { print $1 } $2 == "livelocks" { print $1 }'); do
  run --scenario "$scenario" --faults swarm --seeds 0..200
done
