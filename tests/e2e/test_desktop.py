"""The desktop path: a real qgis.bin under Xvfb loads the plugin and runs algorithms (the
TensorFlow ones through the worker) from Processing inside the desktop, without a crash."""

import datetime as dt
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import plain_raster
from tests.e2e.conftest import ROOT, qgis_env

pytestmark = [pytest.mark.e2e, pytest.mark.desktop]
SCRIPT = os.path.join(ROOT, "tests", "e2e", "desktop", "desktop_script.py")
ARTEFACTS = os.path.join(ROOT, "build", "test-artefacts")


def run_desktop(jobs, tmp_path, timeout=600, script=SCRIPT):
    if not (shutil.which("qgis.bin") and shutil.which("xvfb-run")):
        pytest.skip("qgis.bin or xvfb-run not installed")
    subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "build_plugin.sh")], check=True, capture_output=True
    )
    profiles = tmp_path / "profiles"
    ini = profiles / "profiles" / "default" / "QGIS"
    ini.mkdir(parents=True)
    (ini / "QGIS3.ini").write_text(
        "[PythonPlugins]\ndeformation_forecast=true\n[qgis]\ncheckVersion=false\nshowTips=false\n"
    )
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    n_jobs = len(jobs["jobs"] if isinstance(jobs, dict) else jobs)
    env = qgis_env(str(tmp_path / "unused"))
    env.pop("QGIS_CUSTOM_CONFIG_PATH")
    env.pop("QT_QPA_PLATFORM")
    env.update(DF_OUT=str(tmp_path), DF_JOBS=str(tmp_path / "jobs.json"))
    cmd = [
        "xvfb-run",
        "-a",
        "-s",
        "-screen 0 1280x900x24",
        "qgis.bin",
        "--profiles-path",
        str(profiles),
        "--nologo",
        "--noversioncheck",
        "--code",
        script,
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"qgis.bin exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    result = json.loads((tmp_path / "result.json").read_text())
    assert "error" not in result, result["error"]
    os.makedirs(ARTEFACTS, exist_ok=True)
    if (tmp_path / "desktop.png").exists():
        shutil.copy(tmp_path / "desktop.png", os.path.join(ARTEFACTS, f"desktop_{n_jobs}jobs.png"))
    return result


@pytest.mark.tf
def test_desktop_loads_plugin_and_runs_worker_and_stack_algorithms(tmp_path, write_stack):
    layers = [
        plain_raster(tmp_path / f"cum_{day}.tif", np.full((1, 3, 4), float(i)))
        for i, day in enumerate(["20200101", "20200113"])
    ]
    out = str(tmp_path / "stack.tif")
    jobs = [
        ["deformation_forecast:checkworker", {"DEVICE": 2}],
        ["deformation_forecast:buildstack", {"LAYERS": layers, "OUTPUT": out}],
    ]
    res = run_desktop(jobs, tmp_path)
    assert res["plugin_loaded"] and res["reloaded"]
    assert res["jobs"][0]["results"]["CHECKSUM"] == "394.0"
    assert os.path.exists(out)
    assert res["tf_in_qgis"] is False
    assert res["critical_log"] == []


@pytest.mark.tf
@pytest.mark.slow
def test_desktop_trains_and_forecasts_without_a_crash(tmp_path, write_stack):
    """trainmodel then forecast from Processing inside a real qgis.bin: TensorFlow runs in the
    worker, the desktop survives, and the forecast lands on disk with future dates."""
    from deformation_forecast.core.stack import read_info
    from tests.ml.scene import bowl_scene

    data, dates = bowl_scene(30, 24)
    stack = write_stack(data, dates)
    model, report, fc = (str(tmp_path / n) for n in ("m.dfmodel", "r.html", "fc.tif"))
    tiny = {"EPOCHS": 1, "GRU_EPOCHS": 2, "TEST_COUNT": 4, "DEVICE": 2, "WIDTH": 4}
    jobs = [
        [
            "deformation_forecast:trainmodel",
            {"INPUT": stack, **tiny, "OUTPUT_MODEL": model, "OUTPUT_REPORT": report},
        ],
        [
            "deformation_forecast:forecast",
            {"INPUT": stack, "MODEL": model, "STEPS": 5, "DEVICE": 2, "OUTPUT": fc},
        ],
    ]
    res = run_desktop(jobs, tmp_path, timeout=900)
    assert res["tf_in_qgis"] is False
    assert float(res["jobs"][0]["results"]["TEST_MAE"]) >= 0
    info = read_info(fc)
    assert info.count == 5 and info.dates[0] > dates[-1]
    assert res["critical_log"] == []


@pytest.mark.tf
@pytest.mark.slow
def test_desktop_docks_and_animation_screenshots(tmp_path):
    """The user's path in the desktop on a small sample scene: profiles, a tiny training and a
    two-year forecast from Processing, then the time-series dock (pinned pixels with the forecast
    continuation), the profile dock and a forecast animation frame; screenshots for the README."""
    import json as _json

    from deformation_forecast.core.sample import make_sample_scene

    scene = make_sample_scene(str(tmp_path / "scene"), size=80, seed=1)
    meta = _json.loads(open(scene["scene"]).read())
    points = [a["centre_xy"] for a in meta["areas"] if a["kind"] == "subsidence"][:2]
    prof, model, report, fc = (str(tmp_path / n) for n in ("profiles.gpkg", "m.dfmodel", "r.html", "fc.tif"))
    tiny = {"EPOCHS": 1, "GRU_EPOCHS": 3, "DEVICE": 2, "WIDTH": 4, "SAMPLES_PER_EPOCH": 16, "MAX_SECONDS": 60}
    spec = {
        "jobs": [
            [
                "deformation_forecast:extractprofiles",
                {"INPUT": scene["stack_asc"], "LINES": scene["profiles"], "ID_FIELD": "name", "OUTPUT": prof},
            ],
            [
                "deformation_forecast:trainmodel",
                {"INPUT": scene["stack_asc"], **tiny, "OUTPUT_MODEL": model, "OUTPUT_REPORT": report},
            ],
            [
                "deformation_forecast:forecast",
                {"INPUT": scene["stack_asc"], "MODEL": model, "STEPS": 0, "DEVICE": 2, "OUTPUT": fc},
            ],
        ],
        "views": {
            "stack": scene["stack_asc"],
            "future": fc,
            "future_name": "forecast",
            "points": points,
            "profiles": prof,
            "frame_date": "2022-10-01",
        },
    }
    res = run_desktop(spec, tmp_path, timeout=1200)
    assert res["tf_in_qgis"] is False
    views = res["views"]
    assert views["timeseries_lines"] == 2 * 2  # each pinned pixel: observed + forecast
    assert views["profile_curves"] > 0
    assert views["animated_layers"] == 61
    for name in ("timeseries_dock.png", "profile_dock.png", "forecast_animation.png"):
        assert (tmp_path / name).stat().st_size > 20000, name
        shutil.copy(tmp_path / name, os.path.join(ARTEFACTS, name))


def _forecast_stand_ins(scene, tmp_path):
    """Files with what `forecast` writes (its SOURCE tag; the annual rate in mm/yr with one dated
    band per forecast year), made from the scene's future truth without TensorFlow."""
    from deformation_forecast.core.stack import read_info, read_stack, write_stack

    info = read_info(scene["truth_future_asc"])
    data = read_stack(scene["truth_future_asc"])
    tags = {"SOURCE": "deformation_forecast forecast", "MODEL": "stand-in"}
    fc = write_stack(
        str(tmp_path / "forecast.tif"), data + 1.0, info.dates, info.crs, info.transform, tags=tags
    )
    years = [info.dates[len(info.dates) // 2], info.dates[-1]]
    rate = np.stack([data[len(info.dates) // 2] - data[0], data[-1] - data[len(info.dates) // 2]]) * 2
    rp = str(tmp_path / "forecast_rate.tif")
    write_stack(rp, rate, years, info.crs, info.transform, units="mm/yr", tags=tags)
    return fc, rp


def test_desktop_shows_styles_series_and_animation_as_a_person_sees_them(tmp_path):
    """A real qgis.bin: outputs loaded as the Toolbox loads them are styled on the band that
    carries their meaning with the unit in the legend; the time-series dock plots what was chosen
    for clicks of the toolbar's map tool on a stack and on a point layer; the animate action sets
    the Temporal Controller; no Python warning or traceback reaches the QGIS message log."""
    from deformation_forecast.core.sample import make_sample_scene

    scene = make_sample_scene(str(tmp_path / "scene"), size=60, seed=1)
    meta = json.loads(open(scene["scene"]).read())
    points = [a["centre_xy"] for a in meta["areas"] if a["kind"] == "subsidence"][:2]
    fc, rate = _forecast_stand_ins(scene, tmp_path)
    bench = json.loads(open(scene["benchmarks"]).read())["features"][0]["geometry"]["coordinates"]
    spec = {
        "jobs": [],
        "stack": scene["stack_asc"],
        "vectors": {"benchmarks": scene["benchmarks"], "faults": scene["faults"]},
        "runs": [
            [
                "deformation_forecast:deformationrate",
                {"INPUT": scene["stack_asc"], "MODE": 0, "OUTPUT": str(tmp_path / "rate.tif")},
            ],
            [
                "deformation_forecast:evaluateforecast",
                {
                    "PREDICTED": fc,
                    "OBSERVED": scene["truth_future_asc"],
                    "OUTPUT_ERRORS": str(tmp_path / "errors.tif"),
                    "OUTPUT_REPORT": str(tmp_path / "evaluation.html"),
                    "OUTPUT_TABLE": str(tmp_path / "metrics.csv"),
                },
            ],
        ],
        "by_hand": {"forecast": fc, "forecast rate": rate},
        "points": points,
        "benchmark_xy": bench,
        "dialogs": ["deformation_forecast:deformationrate", "deformation_forecast:forecast"],
        "profile_runs": [
            [
                "deformation_forecast:extractprofiles",
                {
                    "INPUT": scene["stack_asc"],
                    "LINES": scene["profiles"],
                    "ID_FIELD": "name",
                    "OUTPUT": str(tmp_path / "profiles.gpkg"),
                },
            ]
        ],
    }
    res = run_desktop(
        spec, tmp_path, timeout=600, script=os.path.join(ROOT, "tests", "e2e", "desktop", "screen_script.py")
    )
    with open(os.path.join(ARTEFACTS, "desktop_screen_result.json"), "w") as f:
        json.dump(res, f, indent=1)
    out = res["outputs"]
    (rate_r,) = out["deformation_forecast:deformationrate"]
    assert (rate_r["type"], rate_r["band"]) == ("singlebandpseudocolor", 1)  # velocity, not its error
    assert all(label.endswith(" mm/yr") for label in rate_r["legend"])
    errors = [r for r in out["deformation_forecast:evaluateforecast"] if r["type"] == "singlebandpseudocolor"]
    assert len(errors) == 1 and errors[0]["band"] == 61 and errors[0]["legend"][0] == "0.0 mm"
    assert out["forecast"][0]["band"] == 61 and out["forecast"][0]["legend"][-1].endswith(" mm")
    assert out["forecast rate"][0]["band"] == 2 and out["forecast rate"][0]["legend"][-1].endswith(" mm/yr")
    series = res["series"]
    assert series["offered"]["forecasts"] == ["forecast"]  # not its rate raster, not the stack
    assert series["offered"]["benchmarks"] == ["benchmarks"]
    assert "rate" not in " ".join(series["offered"]["source"])
    first, second, on_points = series["labels"]
    assert first[0].startswith("observed stack (") and first[1] == "forecast (forecast)"
    assert second[: len(first)] == first and second[len(first)].startswith("observed stack (")  # pinned
    assert on_points[-1].startswith("benchmarks ")
    assert series["markers"] == 3 and series["map_tool_is_dock"]
    anim = res["animation"]
    assert (anim["begin"], anim["end"], anim["step_days"]) == ("2014-10-14", "2021-04-28", 12.0)
    days = (dt.date(2021, 4, 28) - dt.date(2014, 10, 14)).days
    assert anim["animated"] and anim["panel_visible"] and anim["frames"] == -(-days // 12)  # 12-day frames
    assert anim["tree"][-1] == "observed stack (animation)"  # below the user's layers
    # mid-animation, as the screenshot shows it: the canvas on the frame's date, drawing that date only
    assert anim["frame_number"] == anim["frames"] // 2 and anim["frame"] > "2017-01-01"
    assert anim["canvas_range"] == anim["frame"]
    assert len(anim["drawn"]) == 1 and anim["drawn"][0].startswith("observed stack (animation) 20")
    assert anim["drawn"][0][-10:] <= anim["frame"]
    # the comparison dock at its docked size: charts one above the other, as wide as the chart area
    comp = res["comparison"]
    assert comp["visible"] and comp["stacked"], comp
    assert len(comp["axes_widths"]) == 2 and min(comp["axes_widths"]) > 0.6 * comp["figure_width"], comp
    # hovering the profile chart puts the marker on the map on that sample (canvas in the stack's CRS)
    hover = res["profile_hover"]
    assert hover["marker_visible"] and hover["hover_lines"] == 1
    assert hover["marker"] == pytest.approx(hover["sample"])
    # the Toolbox lists the groups in the order of the work, the shipped models after them; the menu
    # entries have icons
    groups = res["toolbox"]["groups"]
    assert groups[:4] == ["1. Stack preparation", "2. Analysis", "3. Validation", "4. Forecasting"], groups
    assert res["toolbox"]["menu"] and all(has_icon for _, has_icon in res["toolbox"]["menu"])
    assert res["log"] == [], res["log"]
    for name in (
        "timeseries_dock_clicked.png",
        "temporal_controller.png",
        "styled_outputs.png",
        "profile_dock_hover.png",
        "toolbox.png",
        "comparison_dock.png",
    ):
        assert (tmp_path / name).stat().st_size > 20000, name
    for name in os.listdir(tmp_path):
        if name.endswith(".png"):
            shutil.copy(tmp_path / name, os.path.join(ARTEFACTS, name))
