#!/usr/bin/env bash
# Main-job step (paper §III-B, Fig. 14): train the default CNN-PhLSTM on the sample scene's ascending
# stack (resampled to 12 days) with a budget that fits a few minutes on 2 CPU cores
# (FORECAST_EPOCHS epochs of FORECAST_SAMPLES tiles, at most FORECAST_MAX_SECONDS of training), then
# forecast two years (61 steps of 12 days) and draw Fig. 14-style maps of the forecast cumulative
# deformation at 6, 12, 18 and 24 months, plus the annual rate of each forecast year.
# The default network (ARCHITECTURE=0, cnn-phlstm) predicts the residual over a per-pixel linear
# trend (deformation_forecast/ml/trend.py); bench/bench_forecast.py scores it against the baselines.
set -euo pipefail
STACK="$SAMPLE/stack_asc.tif"
EPOCHS=${FORECAST_EPOCHS:-12}
SAMPLES=${FORECAST_SAMPLES:-256}
MAX_SECONDS=${FORECAST_MAX_SECONDS:-150}

"$QP" run deformation_forecast:trainmodel -- \
  "INPUT=$STACK" ARCHITECTURE=0 TIME_STEP=5 TEST_COUNT=20 INTERVAL_DAYS=12 "EPOCHS=$EPOCHS" \
  "SAMPLES_PER_EPOCH=$SAMPLES" "MAX_SECONDS=$MAX_SECONDS" TILE_SIZE=64 DEVICE=0 SEED=42 \
  "OUTPUT_MODEL=$OUT/forecast_model.dfmodel" "OUTPUT_REPORT=$OUT/forecast_training.html"
echo "[forecast] wrote $OUT/forecast_model.dfmodel, $OUT/forecast_training.html"

"$QP" run deformation_forecast:forecast -- \
  "INPUT=$STACK" "MODEL=$OUT/forecast_model.dfmodel" STEPS=0 DEVICE=0 \
  "OUTPUT=$OUT/forecast_2y.tif" "OUTPUT_RATE=$OUT/forecast_rate.tif"
echo "[forecast] wrote $OUT/forecast_2y.tif, $OUT/forecast_rate.tif"

"$PY" - "$STACK" "$OUT/forecast_2y.tif" "$OUT/forecast_rate.tif" "$OUT" <<'PYEOF'
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from deformation_forecast.core.stack import read_info, read_stack

stack, fc_path, rate_path, out = sys.argv[1:5]
obs_info, fc_info = read_info(stack), read_info(fc_path)
obs, fc = read_stack(stack, bands=[obs_info.count - 1])[0], read_stack(fc_path)
picks = [min(fc_info.count, k) - 1 for k in (15, 30, 46, 61)]  # ~6, 12, 18, 24 months
panels = [(obs, f"observed {obs_info.dates[-1]}")] + [(fc[i], f"forecast {fc_info.dates[i]}") for i in picks]
lo = float(np.nanmin([np.nanmin(p) for p, _ in panels]))
hi = max(0.0, float(np.nanmax([np.nanmax(p) for p, _ in panels])))
fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), constrained_layout=True)
for ax, (img, title) in zip(axes, panels, strict=True):
    im = ax.imshow(img, cmap="jet_r", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]); ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.8, label="cumulative LOS deformation (mm)")
fig.suptitle("CNN-PhLSTM forecast of the sample scene (Fig. 14 style)")
fig.savefig(f"{out}/forecast_maps.png", dpi=110)
rates, rinfo = read_stack(rate_path), read_info(rate_path)
fig, axes = plt.subplots(1, len(rates), figsize=(4.5 * len(rates), 4.2), constrained_layout=True, squeeze=False)
lim = float(np.nanmax(np.abs(rates)))
for ax, r, d in zip(axes[0], rates, rinfo.dates, strict=True):
    im = ax.imshow(r, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_title(f"forecast annual rate, year ending {d}", fontsize=10)
    ax.set_xticks([]); ax.set_yticks([])
fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="mm/yr")
fig.savefig(f"{out}/forecast_rates.png", dpi=110)
print(f"[forecast] wrote {out}/forecast_maps.png, {out}/forecast_rates.png; deepest forecast "
      f"{np.nanmin(fc[-1]):.0f} mm on {fc_info.dates[-1]} (observed {np.nanmin(obs):.0f} mm on {obs_info.dates[-1]})")
PYEOF
