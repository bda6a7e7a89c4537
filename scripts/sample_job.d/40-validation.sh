#!/usr/bin/env bash
# Main-job step (paper §V, Fig. 15 and 16): leveling benchmarks vs InSAR (Fig. 15a), ascending vs
# descending vertical deformation (Fig. 15b), and the control of faults and lithology on the final
# cumulative deformation (Fig. 16): tables (CSV), plots (PNG) and the signed fault-distance raster.
set -euo pipefail
STACK="$SAMPLE/stack_asc.tif"

"$QP" run deformation_forecast:benchmarkcompare -- \
  "INPUT=$STACK" "BENCHMARKS=$SAMPLE/benchmarks.csv" "INCIDENCE_RASTER=$SAMPLE/incidence_asc.tif" RADIUS=20 \
  "OUTPUT=$OUT/benchmarks_pairs.csv" "OUTPUT_SUMMARY=$OUT/benchmarks_summary.csv" \
  "OUTPUT_PLOT=$OUT/benchmarks_fig15a.png"
echo "[validation] wrote $OUT/benchmarks_pairs.csv, $OUT/benchmarks_summary.csv, $OUT/benchmarks_fig15a.png"

"$QP" run deformation_forecast:crossorbit -- \
  "INPUT=$STACK" "INCIDENCE_RASTER=$SAMPLE/incidence_asc.tif" \
  "INPUT_B=$SAMPLE/stack_desc.tif" "INCIDENCE_RASTER_B=$SAMPLE/incidence_desc.tif" MODE=0 \
  "OUTPUT=$OUT/crossorbit.csv" "OUTPUT_PLOT=$OUT/crossorbit_fig15b.png"
echo "[validation] wrote $OUT/crossorbit.csv, $OUT/crossorbit_fig15b.png"

"$QP" run deformation_forecast:faultlithology -- \
  "INPUT=$STACK" "FAULTS=$SAMPLE/faults.geojson" FAULT_FIELD=name \
  "LITHOLOGY=$SAMPLE/lithology.geojson" LITHOLOGY_FIELD=unit BIN_WIDTH=60 MAX_DISTANCE=600 \
  "OUTPUT_LITHOLOGY=$OUT/lithology_stats.csv" "OUTPUT_HISTORY=$OUT/lithology_history.csv" \
  "OUTPUT_FAULTS=$OUT/fault_stats.csv" "OUTPUT_DISTANCE=$OUT/fault_distance.tif" \
  "OUTPUT_PLOT=$OUT/faults_lithology_fig16.png"
echo "[analysis] wrote $OUT/lithology_stats.csv, $OUT/lithology_history.csv, $OUT/fault_stats.csv," \
  "$OUT/fault_distance.tif, $OUT/faults_lithology_fig16.png"
