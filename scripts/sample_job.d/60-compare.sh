#!/usr/bin/env bash
# Main-job step (paper Table III, Fig. 18-19): compare persistence, the per-pixel linear trend, SVR,
# MLP, CNN-LSTM and CNN-PhLSTM on the sample scene's ascending stack (last 20 frames of the regular
# 12-day grid for test, time step 5). The networks get a small budget (COMPARE_EPOCHS epochs, at most
# COMPARE_MAX_SECONDS of training each) to keep the step short; their
# scores are those of briefly trained networks, the report says how many epochs ran. The worker also
# fits its GRU extremum compressor and predicts every tile, so each network takes several minutes of
# wall time on 2 shared cores (measured: ~10 min for CNN-LSTM with 2 epochs while others ran).
# Then evaluateforecast scores the sample's noise-free truth against the observations (a check of the
# algorithm on a forecast made outside the plugin).
set -euo pipefail
STACK="$SAMPLE/stack_asc.tif"
EPOCHS=${COMPARE_EPOCHS:-1}
MAX_SECONDS=${COMPARE_MAX_SECONDS:-60}

"$QP" run deformation_forecast:comparemodels -- \
  "INPUT=$STACK" MODELS=0,1,2,3,4,5 TIME_STEP=5 TEST_COUNT=20 "EPOCHS=$EPOCHS" DEVICE=0 SEED=42 \
  "MAX_SECONDS=$MAX_SECONDS" \
  "OUTPUT_TABLE=$OUT/compare_models.csv" "OUTPUT_REPORT=$OUT/compare_models.html" \
  "OUTPUT_ERRORS=$OUT/compare_errors"
echo "[compare] wrote $OUT/compare_models.csv, $OUT/compare_models.html, $OUT/compare_errors/"

"$PY" - "$OUT/compare_models.csv" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
cols = ["MAE", "MSE", "SSIM", "MS_SSIM", "PSNR", "R2", "train_seconds"]
print(f"{'model':<14}{'mode':<11}" + "".join(f"{c:>12}" for c in cols))
for r in rows:
    print(f"{r['model']:<14}{r['mode']:<11}" + "".join(f"{float(r[c] or 'nan'):>12.4f}" for c in cols))
PYEOF

if [ -f "$SAMPLE/truth_asc.tif" ]; then
  "$QP" run deformation_forecast:evaluateforecast -- \
    "PREDICTED=$SAMPLE/truth_asc.tif" "OBSERVED=$STACK" MAX_DAYS=0 \
    "OUTPUT_TABLE=$OUT/evaluate_truth.csv" "OUTPUT_ERRORS=$OUT/evaluate_truth_errors.tif" \
    "OUTPUT_REPORT=$OUT/evaluate_truth.html"
  echo "[compare] wrote $OUT/evaluate_truth.csv, $OUT/evaluate_truth.html (noise-free truth vs observations)"
fi
