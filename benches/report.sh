#!/usr/bin/env bash
# The side-by-side benches, RUNS times (default 3), then BENCHMARKS.md's
# plots and ratio tables from them (benches/plot.py: medians over the runs,
# each ratio taken within one run, with its range).
# Usage: benches/report.sh [RUNS]
# Writes target/bench-runs/run-*/{criterion/,latency.txt} and benches/plots/*.svg;
# criterion's HTML report of the last run is target/criterion/report/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
target=${CARGO_TARGET_DIR:-target}
out=$target/bench-runs
rm -rf "$out"
cargo bench --bench echo --no-run
cargo bench --bench latency --no-run
for run in $(seq "$runs"); do
  echo "=== run $run of $runs"
  mkdir -p "$out/run-$run"
  cargo bench --bench echo
  cp -r "$target/criterion" "$out/run-$run/criterion"
  cargo bench --bench latency | tee "$out/run-$run/latency.txt"
done
python3 benches/plot.py --runs "$out" --out benches/plots
