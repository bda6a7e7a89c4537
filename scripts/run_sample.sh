#!/usr/bin/env bash
# The main job on the bundled sample scene: sets everything up (idempotent), generates the sample
# scene, then runs each step of scripts/sample_job.d/ (in name order) through qgis_process.bin.
# Results land in ${1:-sample_out}/ ; the last line says where.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
OUT=$(realpath -m "${1:-sample_out}")
mkdir -p "$OUT"
export OUT
export SAMPLE="$OUT/scene"
export QP="$ROOT/scripts/qgis_process.sh"
export PY="$ROOT/.venv/bin/python"
export QGIS_CUSTOM_CONFIG_PATH="$OUT/.qgis_profile"
mkdir -p "$QGIS_CUSTOM_CONFIG_PATH"
echo "[sample] generating the sample scene in $SAMPLE"
"$PY" -m deformation_forecast.core.sample "$SAMPLE" --horizontal
for step in scripts/sample_job.d/*.sh; do
  echo "[sample] step $(basename "$step")"
  bash "$step"
done
echo "[sample] done: results in $OUT"
