#!/usr/bin/env bash
# Main-job step: grid the real StaMPS SBAS export of the Maoxian landslide (608 points, 38 dates)
# into a deformation stack, $OUT/maoxian_stack.tif (20 m, IDW, UTM 48N chosen automatically).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CSV="$ROOT/../shared/data/maoxian_stamps/Maoxian_SBAS.csv"
if [ ! -f "$CSV" ]; then
  echo "[points] $CSV not found; skipping the point time series step"
  exit 0
fi
"$QP" run deformation_forecast:pointstostack -- \
  "INPUT_CSV=$CSV" PIXEL_SIZE=20 METHOD=1 "OUTPUT=$OUT/maoxian_stack.tif"
echo "[points] wrote $OUT/maoxian_stack.tif"
