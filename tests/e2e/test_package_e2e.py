"""`make package` builds a zip that QGIS's "Install from ZIP" accepts: unpacked into a profile's
python/plugins folder (what the installer does), qgis_process finds and loads it."""

import os
import subprocess
import zipfile

import pytest

from tests.e2e.conftest import BIN, ROOT, qgis_env

pytestmark = pytest.mark.e2e


def test_zip_installs_into_a_profile(tmp_path):
    if not os.path.exists(BIN):
        pytest.skip("qgis_process.bin not installed")
    subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "build_plugin.sh"), "--zip"], check=True, capture_output=True
    )
    zpath = os.path.join(ROOT, "dist", "deformation_forecast.zip")
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        assert {
            "deformation_forecast/metadata.txt",
            "deformation_forecast/__init__.py",
            "deformation_forecast/resources_rc.py",
        } <= set(names)
        assert all(n.startswith("deformation_forecast/") for n in names)
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        meta = z.read("deformation_forecast/metadata.txt").decode()
        assert "qgisMinimumVersion=3.22" in meta and "hasProcessingProvider=yes" in meta
        plugins = tmp_path / "profiles" / "default" / "python" / "plugins"
        plugins.mkdir(parents=True)
        z.extractall(plugins)
    env = qgis_env(str(tmp_path))
    env.pop("QGIS_PLUGINPATH")
    subprocess.run(
        [BIN, "plugins", "enable", "deformation_forecast"],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    out = subprocess.run([BIN, "list"], env=env, capture_output=True, text=True, timeout=120).stdout
    assert "deformation_forecast:buildstack" in out
