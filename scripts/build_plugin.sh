#!/usr/bin/env bash
# Builds build/deformation_forecast (what QGIS loads) and, with --zip, dist/deformation_forecast.zip
# (what "Install from ZIP" accepts). Compiles resources.qrc with pyrcc5.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/deformation_forecast
rm -rf build/.tmp && mkdir -p build/.tmp
tmp=build/.tmp/deformation_forecast
mkdir -p "$tmp"
# copy the package without caches; the metadata symlink is dereferenced
tar -C deformation_forecast --exclude='__pycache__' --exclude='*.pyc' -chf - . | tar -C "$tmp" -xf -
cp -L metadata.txt "$tmp/metadata.txt"
cp LICENSE "$tmp/LICENSE" 2>/dev/null || true
if command -v pyrcc5 >/dev/null 2>&1; then
  pyrcc5 -o "$tmp/resources_rc.py" resources.qrc
else
  echo "pyrcc5 not found (apt-get install pyqt5-dev-tools); resources not compiled" >&2
fi
rm -rf "$out" && mv "$tmp" "$out" && rm -rf build/.tmp
if [ "${1:-}" = "--zip" ]; then
  mkdir -p dist
  rm -f dist/deformation_forecast.zip.part
  (cd build && python3 -c "
import os, zipfile
with zipfile.ZipFile('../dist/deformation_forecast.zip.part', 'w', zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk('deformation_forecast'):
        for f in sorted(files):
            z.write(os.path.join(root, f))
")
  mv dist/deformation_forecast.zip.part dist/deformation_forecast.zip
  echo "dist/deformation_forecast.zip"
fi
