"""End-to-end tests: the built plugin in /usr/bin/qgis_process.bin (a separate program).

`qgis_process("run", "deformation_forecast:alg", "--", "INPUT=...")` returns the parsed JSON of
`qgis_process.bin --json`, or raises with the program's output.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = "/usr/bin/qgis_process.bin"


@pytest.fixture(scope="session")
def qgis_profile(tmp_path_factory):
    if not os.path.exists(BIN):
        pytest.skip("qgis_process.bin not installed")
    subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "build_plugin.sh")], check=True, capture_output=True
    )
    return str(tmp_path_factory.mktemp("qgis_profile"))


def qgis_env(profile: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=os.path.join(ROOT, "build"),
        QGIS_CUSTOM_CONFIG_PATH=profile,
        DEFORMATION_FORECAST_PYTHON=os.path.join(ROOT, ".venv", "bin", "python"),
    )
    # qgis_process runs Debian's python, not the venv's: drop the venv from the environment
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def run_sample_step(step: str, scene: str, out: str, profile: str):
    """Run scripts/sample_job.d/`step` as the main job does (qgis_process, the venv's Python) on
    sample scene `scene`, writing into `out`; the finished process."""
    import subprocess

    env = qgis_env(profile)
    env.update(
        OUT=str(out),
        SAMPLE=str(scene),
        QP=os.path.join(ROOT, "scripts", "qgis_process.sh"),
        PY=os.path.join(ROOT, ".venv", "bin", "python"),
    )
    return subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "sample_job.d", step)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def qgis_process(qgis_profile):
    env = qgis_env(qgis_profile)
    subprocess.run(
        [BIN, "plugins", "enable", "deformation_forecast"], env=env, capture_output=True, timeout=120
    )

    def call(*args: str, timeout: int = 600, check: bool = True):
        args = list(args)
        cmd = [BIN, "--json", *args] if args and args[0] == "run" else [BIN, *args]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
            )
        if args and args[0] == "run" and p.returncode == 0:
            start = p.stdout.find("{")
            return json.loads(p.stdout[start:])
        return p

    return call
