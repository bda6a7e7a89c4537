#!/usr/bin/env bash
# Idempotent setup on Debian 12/13: QGIS from apt, a .venv from Debian's python3 with
# --system-site-packages, the pinned Python dependencies, the built plugin in build/.
# Safe to run again: every step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

apt_pkgs=(qgis python3-qgis qgis-providers xvfb xauth python3-venv python3-pip python3-dev pyqt5-dev-tools libgdal-dev build-essential)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv from $PY (--system-site-packages)"
  "$PY" -m venv --system-site-packages .venv
fi

qgis_version=$(.venv/bin/python -c "from qgis.core import Qgis; print(Qgis.QGIS_VERSION_INT)" 2>/dev/null)
if [ "${qgis_version:-0}" -ge 33400 ]; then pq="pytest-qgis==5.0.2"; else pq="pytest-qgis==2.1.0"; fi

stamp=.venv/.requirements.sha
want=$(cat requirements.txt <(echo "$pq") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing Python requirements into .venv (QGIS $qgis_version -> $pq)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt "$pq"
  echo "$want" > "$stamp"
fi

# The plugin as QGIS installs it (compiled resources, metadata inside the folder).
bash scripts/build_plugin.sh >/dev/null
echo "[setup] ready: QGIS $qgis_version, venv $ROOT/.venv, plugin $ROOT/build/deformation_forecast"
