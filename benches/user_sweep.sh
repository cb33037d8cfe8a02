#!/usr/bin/env bash
# A user's seed sweep, built three ways: what `cargo test` gives a crate
# that depends on ioloop and ioloop-sim by path (no optimisation), the same
# with the three `[profile.dev.package.*]` lines the README suggests, and
# `cargo test --release`. Prints the user CPU time of each run, the three
# builds alternated, RUNS times:
#
#   benches/user_sweep.sh [RUNS] [SEEDS]
#
# The "user" is sim/tests/membership.rs (a UDP membership service tested
# through the public harness only), copied into a throwaway crate outside
# this workspace, so that profile settings apply as they do to a user's
# crate: to the dependencies, not to the test itself.
set -euo pipefail
runs=${1:-3}
seeds=${2:-300}
here=$(cd "$(dirname "$0")/.." && pwd)
crate=$(mktemp -d "${TMPDIR:-/tmp}/ioloop-user-sweep.XXXXXX")
trap 'rm -rf "$crate"' EXIT
mkdir -p "$crate/src" "$crate/tests"
cat > "$crate/Cargo.toml" <<EOF
[package]
name = "user_sweep"
version = "0.1.0"
edition = "2021"

[dependencies]
ioloop = { path = "$here" }

[dev-dependencies]
ioloop-sim = { path = "$here/sim", default-features = false }
log = "0.4"

[workspace]
EOF
: > "$crate/src/lib.rs"
cp "$here/sim/tests/membership.rs" "$crate/tests/sim.rs"
cp -r "$here/sim/tests/subprocess" "$crate/tests/"
cp "$here/Cargo.lock" "$crate/Cargo.lock"

optimised_deps=(
  --config 'profile.dev.package.ioloop.opt-level=3'
  --config 'profile.dev.package.ioloop-sim.opt-level=3'
  --config 'profile.dev.package.rand_chacha.opt-level=3'
)
build() { # name, cargo args...
  local name=$1
  shift
  (cd "$crate" && cargo test --quiet --test sim --no-run --message-format json \
    --target-dir "target-$name" "$@" | grep -o '"executable":"[^"]*/deps/sim-[0-9a-f]*"' |
    head -1 | cut -d'"' -f4)
}
dev=$(build dev)
opt=$(build opt "${optimised_deps[@]}")
rel=$(build rel --release)
for run in $(seq 1 "$runs"); do
  for name in dev opt rel; do
    binary=${!name}
    seconds=$(cd "$crate" && IOLOOP_SIM_SEEDS=$seeds /usr/bin/time -f %U \
      "$binary" membership_survives_faults --exact --quiet 2>&1 >/dev/null | tail -1)
    echo "run $run $name: ${seconds}s user CPU, $seeds seeds"
  done
done
