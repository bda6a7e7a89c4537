#!/usr/bin/env bash
# The README's test command: sets everything up (idempotent), lints, then runs the suite in two
# pytest processes: (1) the TensorFlow tests (tests/ml: TensorFlow may be imported there), and
# (2) everything that runs QGIS: core, processing (pytest-qgis), gui, and the end-to-end tests
# through qgis_process.bin and a real qgis.bin under Xvfb. They are kept apart so that process (2)
# can assert that TensorFlow never entered a QGIS process. Extra arguments go to both pytest runs.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh || exit 1
PY=.venv/bin/python
export QT_QPA_PLATFORM=offscreen
export PYTHONDONTWRITEBYTECODE=1
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT

echo "== ruff"
.venv/bin/ruff check deformation_forecast tests bench scripts || lint_failed=1

echo "== pytest: TensorFlow side (tests/ml)"
$PY -m pytest tests/ml -p no:pytest_qgis --junitxml="$reports/ml.xml" "$@"
rc_ml=$?
echo "== pytest: QGIS side (core, processing, gui, e2e)"
$PY -m pytest tests/core tests/processing tests/gui tests/e2e --junitxml="$reports/qgis.xml" "$@"
rc_qgis=$?

# one closing line over both runs
$PY - "$reports" <<'PYEOF'
import glob, sys
import xml.etree.ElementTree as ET
t = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for f in glob.glob(sys.argv[1] + "/*.xml"):
    root = ET.parse(f).getroot()
    for s in ([root] if root.tag == "testsuite" else root.findall("testsuite")):
        for k in t:
            t[k] += int(s.get(k, 0))
failed = t["failures"] + t["errors"]
print(f"{t['tests'] - failed - t['skipped']} passed, {failed} failed, {t['skipped']} skipped")
PYEOF
# pytest exits 5 when a folder has no tests yet: that is not a failure of the suite
for rc in $rc_ml $rc_qgis; do
  if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then exit 1; fi
done
[ -z "${lint_failed:-}" ] || { echo "ruff found problems (see above)"; exit 1; }
exit 0
