#!/usr/bin/env bash
# Main-job step (paper Fig. 9, 11, 12): profiles I-III through the subsidence bowls of the sample
# scene (point layer, long CSV and the Fig. 11-style chart), the linear velocity map and the annual
# rate maps, both converted to vertical with the per-pixel incidence raster, and the vertical stack.
set -euo pipefail
STACK="$SAMPLE/stack_asc.tif"
INC="$SAMPLE/incidence_asc.tif"

"$QP" run deformation_forecast:extractprofiles -- \
  "INPUT=$STACK" "LINES=$SAMPLE/profiles.geojson" ID_FIELD=name INTERPOLATION=1 \
  "OUTPUT=$OUT/profiles.gpkg" "OUTPUT_CSV=$OUT/profiles.csv" "OUTPUT_PLOT=$OUT/profiles_fig11.png"
echo "[profiles] wrote $OUT/profiles.gpkg, $OUT/profiles.csv, $OUT/profiles_fig11.png"

# a Fig. 11(b)-(d)-style chart with one curve per year: the acquisitions closest to each 1 September
DATES=$("$PY" - "$STACK" <<'PYEOF'
import sys
from deformation_forecast.core.stack import read_info
dates = read_info(sys.argv[1]).dates
picks = []
for year in range(dates[0].year, dates[-1].year + 1):
    import datetime as dt
    target = dt.date(year, 9, 1)
    best = min(dates, key=lambda d: abs((d - target).days))
    if abs((best - target).days) <= 60 and best not in picks:
        picks.append(best)
picks = picks or [dates[-1]]
if dates[-1] not in picks:
    picks.append(dates[-1])
print(",".join(d.isoformat() for d in picks))
PYEOF
)
"$QP" run deformation_forecast:extractprofiles -- \
  "INPUT=$STACK" "LINES=$SAMPLE/profiles.geojson" ID_FIELD=name INTERPOLATION=1 "DATES=$DATES" \
  "OUTPUT=$OUT/profiles_yearly.gpkg" "OUTPUT_PLOT=$OUT/profiles_fig11_yearly.png"
echo "[profiles] wrote $OUT/profiles_fig11_yearly.png (dates $DATES)"

"$QP" run deformation_forecast:deformationrate -- \
  "INPUT=$STACK" MODE=0 VERTICAL=true "INCIDENCE_RASTER=$INC" "OUTPUT=$OUT/velocity_vertical.tif"
"$QP" run deformation_forecast:deformationrate -- \
  "INPUT=$STACK" MODE=0 VERTICAL=false "OUTPUT=$OUT/velocity_los.tif"
"$QP" run deformation_forecast:deformationrate -- \
  "INPUT=$STACK" MODE=1 VERTICAL=true "INCIDENCE_RASTER=$INC" "OUTPUT=$OUT/annual_rate_vertical.tif"
echo "[rates] wrote $OUT/velocity_vertical.tif, $OUT/velocity_los.tif, $OUT/annual_rate_vertical.tif"

"$QP" run deformation_forecast:losvertical -- \
  "INPUT=$STACK" "INCIDENCE_RASTER=$INC" "OUTPUT=$OUT/stack_vertical.tif"
echo "[rates] wrote $OUT/stack_vertical.tif"
