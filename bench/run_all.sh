#!/usr/bin/env bash
# Runs every benchmark in bench/ (bench_*.py) with the venv's python; each prints its own table.
# BENCH_QUICK=1 runs the small variants (a smoke test of the benchmarks themselves).
# BENCH_FULL=1 also runs the 6000 x 6000 x 156 stack (about 22 GB generated on disk, hours on 2 cores):
# bench_memory.py in full (every algorithm within the 2 GB budget) and bench_scaling.py up to 6000^2.
# Without it, `make bench` runs bench_memory.py --small and bench_scaling.py on 1000^2 and 3000^2 only.
# bench_backtest_real.py backtests the 90 % band on the real exports in ../shared/data (Maoxian StaMPS,
# Amsterdam DePSI; a few minutes) and says "skipped" where that folder is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(lscpu | sed -n 's/^Model name: *//p'), $(. /etc/os-release; echo "$PRETTY_NAME")"
args_for() {  # the arguments of a benchmark's default (not quick) run
  if [ "${BENCH_FULL:-0}" != 1 ]; then
    case "$(basename "$1")" in
      bench_memory.py) echo "--small" ;;
      bench_scaling.py) echo "--sizes 1000,3000" ;;
    esac
  fi
}
for b in bench/bench_*.py; do
  echo "== $b"
  # shellcheck disable=SC2046
  if [ "${BENCH_QUICK:-0}" = 1 ]; then .venv/bin/python "$b" --small; else .venv/bin/python "$b" $(args_for "$b"); fi
done
