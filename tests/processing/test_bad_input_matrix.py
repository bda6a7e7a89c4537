"""The bad-input matrix (issue 9): every algorithm x every bad input a user gives. Each case must
raise a QgsProcessingException whose message names the problem, write no file, and leave QGIS
alive (the next case runs in the same process). The README's "Bad input" table mirrors this."""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from tests.conftest import make_dates

X0, Y0, RES = 500000.0, 4300000.0, 20.0
N = 14  # dates of the good stack


def _bowl(n=N, h=20, w=30):
    yy, xx = np.mgrid[0:h, 0:w]
    shape = np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / 40.0)
    return (-np.linspace(0, 50, n)[:, None, None] * shape).astype("float32")


def _geojson(path, geoms, props=None, crs="EPSG:32647"):
    feats = [
        {"type": "Feature", "properties": (props or [{}] * len(geoms))[i], "geometry": g}
        for i, g in enumerate(geoms)
    ]
    doc = {"type": "FeatureCollection", "features": feats}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:{crs.replace(':', '::')}"}}
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


def _junk(path):
    path.write_bytes(b"PK\x03\x04 this is not a model")
    return str(path)


@pytest.fixture
def inputs(tmp_path, write_stack):
    d = tmp_path / "in"
    d.mkdir()
    good = write_stack(_bowl(), name="in/good.tif")
    line = {"type": "LineString", "coordinates": [[X0 + 30, Y0 - 200], [X0 + 570, Y0 - 200]]}
    point = {"type": "Point", "coordinates": [X0 + 300, Y0 - 200]}
    poly = {
        "type": "Polygon",
        "coordinates": [[[X0, Y0], [X0 + 600, Y0], [X0 + 600, Y0 - 400], [X0, Y0 - 400], [X0, Y0]]],
    }
    bm_props = [{"id": "BM1", "D20180101": 0.0, "D20180125": -1.0, "D20180218": -2.0}]
    return {
        "good": good,
        "lines": _geojson(d / "lines.geojson", [line], [{"name": "I"}]),
        "points": _geojson(d / "points.geojson", [point], [{"name": "P"}]),
        "polys": _geojson(d / "polys.geojson", [poly], [{"unit": "A"}]),
        "bench": _geojson(d / "bench.geojson", [point], bm_props),
        "empty_lines": _geojson(d / "empty.geojson", [], []),
        "junk_model": _junk(d / "junk.dfmodel"),
        "dir": tmp_path,
    }


def out(inputs, name):
    o = inputs["dir"] / "out"
    o.mkdir(exist_ok=True)
    return str(o / name)


# the valid parameters of each algorithm, given the stack to test in `s`
ALGS = {
    "deformationrate": lambda i, s: {"INPUT": s, "OUTPUT": out(i, "rate.tif")},
    "losvertical": lambda i, s: {"INPUT": s, "INCIDENCE": 34.17, "OUTPUT": out(i, "v.tif")},
    "extractprofiles": lambda i, s: {"INPUT": s, "LINES": i["lines"], "OUTPUT": out(i, "p.gpkg")},
    "faultlithology": lambda i, s: {
        "INPUT": s,
        "FAULTS": i["lines"],
        "LITHOLOGY": i["polys"],
        "LITHOLOGY_FIELD": "unit",
        "OUTPUT_FAULTS": out(i, "f.csv"),
        "OUTPUT_LITHOLOGY": out(i, "l.csv"),
    },
    "benchmarkcompare": lambda i, s: {"INPUT": s, "BENCHMARKS": i["bench"], "OUTPUT": out(i, "b.csv")},
    "crossorbit": lambda i, s: {"INPUT": s, "INPUT_B": i["good"], "OUTPUT": out(i, "c.csv")},
    "decompose": lambda i, s: {
        "ASCENDING": s,
        "DESCENDING": i["good"],
        "OUTPUT_VERTICAL": out(i, "u.tif"),
        "OUTPUT_EAST": out(i, "e.tif"),
    },
    "comparemodels": lambda i, s: {
        "INPUT": s,
        "MODELS": [0, 1],
        "TIME_STEP": 2,
        "TEST_COUNT": 2,
        "OUTPUT_TABLE": out(i, "t.csv"),
    },
    "evaluateforecast": lambda i, s: {"PREDICTED": s, "OBSERVED": i["good"], "OUTPUT_TABLE": out(i, "e.csv")},
    "trainmodel": lambda i, s: {
        "INPUT": s,
        "EPOCHS": 1,
        "TEST_COUNT": 2,
        "TIME_STEP": 2,
        "DEVICE": 2,
        "OUTPUT_MODEL": out(i, "m.dfmodel"),
        "OUTPUT_REPORT": out(i, "m.html"),
    },
    "forecast": lambda i, s: {"INPUT": s, "MODEL": i["junk_model"], "DEVICE": 2, "OUTPUT": out(i, "f.tif")},
    "failuretime": lambda i, s: {
        "STACK": s,
        "VELOCITY_WINDOW": 3,
        "FIT_WINDOW": 3,
        "OUTPUT": out(i, "ft.gpkg"),
        "OUTPUT_RASTER": out(i, "ft.tif"),
    },
}
# trained and run for real in test_train_forecast.py / tests/ml (TensorFlow): not re-run here
GOOD_RUN_ELSEWHERE = {"trainmodel", "forecast"}
# algorithms that accept a raster without dates (a single rate map, an incidence-free conversion)
DATELESS_OK = {"losvertical", "faultlithology"}


def _stack_case(case, write_stack):
    data = _bowl()
    dates = make_dates(N)
    if case == "nodates":
        import rasterio
        from affine import Affine

        path = write_stack(data, name="in/nodates_tmp.tif")
        with rasterio.open(path) as src:
            prof = src.profile
            arr = src.read()
        p2 = path.replace("nodates_tmp", "nodates")
        prof.update(transform=Affine(RES, 0, X0, 0, -RES, Y0))
        with rasterio.open(p2, "w", **prof) as dst:
            dst.write(arr)
        os.unlink(path)
        return p2
    if case == "unsorted":
        dates[3], dates[4] = dates[4], dates[3]
    elif case == "duplicate":
        dates[4] = dates[3]
    elif case == "allnan":
        data[:] = np.nan
    elif case == "inf":
        data[-1, 5, 5] = np.inf
    elif case == "huge":
        data[-1, 5, 5] = 3.0e7
    return write_stack(data, dates, name=f"in/{case}.tif")


STACK_CASES = {
    "nodates": "carry no date",
    "unsorted": "not in time order",
    "duplicate": "Duplicate date",
    "allnan": "no valid pixel",
    "inf": "infinite values",
    "huge": "not a plausible displacement",
}


def _no_outputs(inputs):
    o = inputs["dir"] / "out"
    return [] if not o.exists() else sorted(os.listdir(o))


@pytest.mark.parametrize("alg", sorted(ALGS))
def test_good_input_runs(run_alg, inputs, alg):
    """The reference: with the good stack each algorithm runs (so the failures below are the inputs')."""
    if alg in GOOD_RUN_ELSEWHERE:
        pytest.skip("runs TensorFlow: see tests/processing/test_train_forecast.py")
    run_alg(alg, ALGS[alg](inputs, inputs["good"]))
    assert _no_outputs(inputs)


@pytest.mark.parametrize("case", sorted(STACK_CASES))
@pytest.mark.parametrize("alg", sorted(ALGS))
def test_bad_stack(run_alg, inputs, write_stack, alg, case):
    if case in ("nodates", "unsorted", "duplicate") and alg in DATELESS_OK:
        pytest.skip(f"{alg} takes rasters without dates")
    stack = _stack_case(case, write_stack)
    with pytest.raises(QgsProcessingException, match=STACK_CASES[case]):
        run_alg(alg, ALGS[alg](inputs, stack))
    assert _no_outputs(inputs) == []


@pytest.mark.parametrize("alg", sorted(ALGS))
def test_output_over_the_input_is_refused(run_alg, inputs, write_stack, alg):
    stack = write_stack(_bowl(), name="in/victim.tif")
    before = open(stack, "rb").read()
    params = ALGS[alg](inputs, stack)
    key = next(k for k in params if k.startswith("OUTPUT"))
    params[key] = stack
    with pytest.raises(QgsProcessingException, match="would destroy the input"):
        run_alg(alg, params)
    assert open(stack, "rb").read() == before


@pytest.mark.parametrize(
    "alg,key,layer,message",
    [
        ("extractprofiles", "LINES", "points", "line"),
        ("extractprofiles", "LINES", "empty_lines", "no feature|empty|no line"),
        ("faultlithology", "FAULTS", "points", "line"),
        ("faultlithology", "LITHOLOGY", "lines", "polygon"),
        ("benchmarkcompare", "BENCHMARKS", "lines", "point"),
    ],
)
def test_wrong_vector_layers(run_alg, inputs, alg, key, layer, message):
    params = ALGS[alg](inputs, inputs["good"])
    params[key] = inputs[layer]
    with pytest.raises(QgsProcessingException, match=f"(?i){message}"):
        run_alg(alg, params)
    assert _no_outputs(inputs) == []


@pytest.mark.parametrize("alg", ["losvertical", "deformationrate", "benchmarkcompare"])
@pytest.mark.parametrize("angle", [0.0, 90.0, 95.0])
def test_incidence_outside_0_90(run_alg, inputs, alg, angle):
    params = ALGS[alg](inputs, inputs["good"])
    params["INCIDENCE"] = angle
    if alg == "deformationrate":
        params["VERTICAL"] = True
    with pytest.raises(QgsProcessingException, match=r"(?i)incidence|\(0, 90\)|0 and 90"):
        run_alg(alg, params)
    assert _no_outputs(inputs) == []


def test_too_few_dates(run_alg, inputs, write_stack):
    one = write_stack(_bowl(1), [dt.date(2020, 1, 1)], name="in/one.tif")
    with pytest.raises(QgsProcessingException, match=r"(?i)at least|too few|two dates|2 dates"):
        run_alg("deformationrate", ALGS["deformationrate"](inputs, one))
    short = write_stack(_bowl(4), make_dates(4), name="in/short.tif")
    with pytest.raises(QgsProcessingException, match=r"(?i)dates|TIME_STEP|TEST_COUNT"):
        run_alg("comparemodels", ALGS["comparemodels"](inputs, short))
    assert _no_outputs(inputs) == []


@pytest.mark.tf
def test_networks_refuse_too_few_dates_and_foreign_models(run_alg, inputs, write_stack):
    short = write_stack(_bowl(4), make_dates(4), name="in/short4.tif")
    with pytest.raises(QgsProcessingException, match=r"(?i)dates|TIME_STEP|TEST_COUNT"):
        run_alg("trainmodel", ALGS["trainmodel"](inputs, short))
    with pytest.raises(QgsProcessingException, match=r"(?i)not a .*model|deformation_forecast model"):
        run_alg("forecast", ALGS["forecast"](inputs, inputs["good"]))
    assert _no_outputs(inputs) == []


# inputs that must be observations (training, validation, comparison); the descriptive algorithms
# (profiles, rates, LOS, fault/lithology) also take forecast stacks, whose dates are in the future
OBSERVED_KEY = {
    "benchmarkcompare": "INPUT",
    "comparemodels": "INPUT",
    "crossorbit": "INPUT",
    "decompose": "ASCENDING",
    "evaluateforecast": "OBSERVED",
    "forecast": "INPUT",
    "trainmodel": "INPUT",
}


@pytest.mark.parametrize("alg", sorted(OBSERVED_KEY))
def test_observation_dates_in_the_future(run_alg, inputs, write_stack, alg):
    future = write_stack(
        _bowl(), make_dates(N, start=dt.date.today() + dt.timedelta(days=400)), name="in/fut.tif"
    )
    params = ALGS[alg](inputs, inputs["good"])
    params[OBSERVED_KEY[alg]] = future
    with pytest.raises(QgsProcessingException, match=rf"{OBSERVED_KEY[alg]} .*in the future"):
        run_alg(alg, params)
    assert _no_outputs(inputs) == []


@pytest.mark.parametrize("alg", sorted(set(ALGS) - GOOD_RUN_ELSEWHERE))
def test_tiny_raster_runs_or_is_refused_clearly(run_alg, inputs, write_stack, alg):
    """A 2 x 2 pixel stack: each algorithm either gives complete outputs or names the size problem."""
    tiny = write_stack(_bowl(h=2, w=2), name="in/tiny.tif")
    params = ALGS[alg](inputs, tiny)
    if alg == "crossorbit":
        params["INPUT_B"] = tiny
    if alg == "evaluateforecast":
        params["OBSERVED"] = tiny
    try:
        res = run_alg(alg, params)
    except QgsProcessingException as e:
        assert _no_outputs(inputs) == []
        TINY_REFUSED[alg] = str(e)
        print(f"tiny {alg}: refused: {e}")
        assert any(w in str(e).lower() for w in ("pixel", "size", "small", "outside", "no ")), str(e)
    else:
        for key, value in res.items():
            if key.startswith("OUTPUT") and isinstance(value, str) and value:
                assert os.path.getsize(value) > 0, key


TINY_REFUSED: dict[str, str] = {}


@pytest.mark.tf
def test_tiny_raster_is_padded_for_the_network(run_alg, inputs, write_stack):
    """A 3 x 3 stack is smaller than the network's tile: it is padded, trained on and forecast."""
    from deformation_forecast.core.stack import read_info, read_stack

    tiny = write_stack(_bowl(n=24, h=3, w=3), make_dates(24), name="in/tiny3.tif")
    params = ALGS["trainmodel"](inputs, tiny)
    res = run_alg("trainmodel", params)
    fc = out(inputs, "tiny_fc.tif")
    run_alg("forecast", {"INPUT": tiny, "MODEL": res["OUTPUT_MODEL"], "STEPS": 3, "DEVICE": 2, "OUTPUT": fc})
    info = read_info(fc)
    assert (info.width, info.height, info.count) == (3, 3, 3)
    assert np.isfinite(read_stack(fc)).all()
