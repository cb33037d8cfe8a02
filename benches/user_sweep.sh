#!/usr/bin/env bash
# A user's seed sweep, built four ways: what `cargo test` gives a crate
# that depends on ioloop and ioloop-sim by path (no optimisation), the same
# with the three `[profile.dev.package.*]` lines the README suggests, those
# and the user's own crate at opt-level 3 too, and `cargo test --release`.
# Prints the user CPU time of each run, the builds alternated, RUNS times:
#
#   benches/user_sweep.sh [RUNS] [SEEDS] [membership|kv]
#
# The "user" is sim/tests/membership.rs (a UDP membership service on the
# loop's own calls, tested through the public harness only) or, with `kv`,
# sim/tests/kv.rs with examples/kv (a key-value service on `IOStream`),
# copied into a throwaway crate outside this workspace, so that profile
# settings apply as they do to a user's crate: to the dependencies, not to
# the test itself -- nor to the generic code the test instantiates with
# its own types (an `IOStream<P, S>` of its state `S`).
set -euo pipefail
runs=${1:-3}
seeds=${2:-300}
user=${3:-membership}
case $user in
  membership) test_name=membership_survives_faults ;;
  kv) test_name=kv_answers_pipelined_requests_under_faults ;;
  *) echo "unknown user sweep $user (membership or kv)" >&2; exit 2 ;;
esac
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
cp "$here/sim/tests/$user.rs" "$crate/tests/sim.rs"
if [ "$user" = kv ]; then
  mkdir -p "$crate/examples/kv"
  cp "$here/examples/kv/service.rs" "$crate/examples/kv/service.rs"
  # From sim/tests/ the service is two levels up; from the crate's tests/, one.
  sed -i 's|#\[path = "../../examples/kv/service.rs"\]|#[path = "../examples/kv/service.rs"]|' "$crate/tests/sim.rs"
fi
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
all=$(build all "${optimised_deps[@]}" --config 'profile.dev.package.user_sweep.opt-level=3')
rel=$(build rel --release)
for run in $(seq 1 "$runs"); do
  for name in dev opt all rel; do
    binary=${!name}
    seconds=$(cd "$crate" && IOLOOP_SIM_SEEDS=$seeds /usr/bin/time -f %U \
      "$binary" "$test_name" --exact --quiet 2>&1 >/dev/null | tail -1)
    echo "run $run $name: ${seconds}s user CPU, $seeds seeds"
  done
done
