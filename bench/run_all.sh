#!/usr/bin/env bash
# Runs every benchmark in bench/ (bench_*.py) with the venv's python; each prints its own table.
# BENCH_QUICK=1 runs the small variants (a smoke test of the benchmarks themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(lscpu | sed -n 's/^Model name: *//p'), $(. /etc/os-release; echo "$PRETTY_NAME")"
for b in bench/bench_*.py; do
  echo "== $b"
  if [ "${BENCH_QUICK:-0}" = 1 ]; then .venv/bin/python "$b" --small; else .venv/bin/python "$b"; fi
done
