#!/usr/bin/env bash
# Runs /usr/bin/qgis_process.bin with this repository's built plugin enabled, in a throw-away
# (or given) QGIS profile: ./scripts/qgis_process.sh list | run deformation_forecast:ALG -- K=V ...
# (/usr/bin/qgis_process adds --noversioncheck, which QGIS 3.22 rejects; measured on these machines.)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export QGIS_PLUGINPATH=${QGIS_PLUGINPATH:-$ROOT/build}
if [ -z "${QGIS_CUSTOM_CONFIG_PATH:-}" ]; then
  QGIS_CUSTOM_CONFIG_PATH=$(mktemp -d -t df-qgis-profile.XXXXXX)
  trap 'rm -rf "$QGIS_CUSTOM_CONFIG_PATH"' EXIT
fi
export QGIS_CUSTOM_CONFIG_PATH
export DEFORMATION_FORECAST_PYTHON=${DEFORMATION_FORECAST_PYTHON:-$ROOT/.venv/bin/python}
/usr/bin/qgis_process.bin plugins enable deformation_forecast >/dev/null 2>&1 || true
exec /usr/bin/qgis_process.bin "$@"
