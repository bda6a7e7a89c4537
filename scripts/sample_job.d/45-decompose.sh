#!/usr/bin/env bash
# Main-job step (the paper's future work, issue 19): vertical and east-west motion from the
# ascending and descending stacks of the scene's 3-D model (generated with --horizontal), and how
# far dLOS / cos(theta) is from the true vertical next to the decomposed one.
set -euo pipefail
if [ ! -f "$SAMPLE/stack_asc_3d.tif" ]; then
  echo "[decompose] $SAMPLE has no 3-D model (generate it with --horizontal); step skipped"
  exit 0
fi
"$QP" run deformation_forecast:decompose -- \
  "ASCENDING=$SAMPLE/stack_asc_3d.tif" "INCIDENCE_ASC_RASTER=$SAMPLE/incidence_asc.tif" HEADING_ASC=-13 \
  "DESCENDING=$SAMPLE/stack_desc_3d.tif" "INCIDENCE_DESC_RASTER=$SAMPLE/incidence_desc.tif" HEADING_DESC=193 \
  DATES=0 "OUTPUT_VERTICAL=$OUT/decompose_up.tif" "OUTPUT_EAST=$OUT/decompose_east.tif" \
  "OUTPUT_RATES=$OUT/decompose_rates.tif"
"$PY" "$(dirname "$0")/../../bench/bench_decompose_sample.py" --scene "$SAMPLE" \
  --up "$OUT/decompose_up.tif" --east "$OUT/decompose_east.tif" > "$OUT/decompose_vs_los.md"
cat "$OUT/decompose_vs_los.md"
echo "[analysis] wrote $OUT/decompose_up.tif, $OUT/decompose_east.tif, $OUT/decompose_rates.tif, $OUT/decompose_vs_los.md"
