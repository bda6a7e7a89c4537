"""crossorbit through processing.run: a 1.2 factor gives slope 1.2, grids may differ, bad inputs."""

import csv
import datetime as dt
import os

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from tests.conftest import make_dates

INC_A, INC_B = 34.17, 41.42


def orbits(write_stack, factor=1.2, noise=0.0, b_res=20.0):
    rng = np.random.default_rng(4)
    n, h, w = 10, 40, 40
    yy, xx = np.mgrid[0:h, 0:w]
    rate = -80 * np.exp(-((xx - 20) ** 2 + (yy - 18) ** 2) / (2 * 9.0**2)) + 0.2 * xx  # smooth, mm/yr
    vert = rate[None] * (np.arange(n) * 12 / 365.25)[:, None, None]
    a = vert * np.cos(np.radians(INC_A))
    pa = write_stack(a.astype("float32"), name="asc.tif")
    # noise on B only, so that the least-squares slope of B on A stays unbiased
    b = factor * vert * np.cos(np.radians(INC_B)) - 3.0 + rng.normal(0, noise, vert.shape)
    if b_res != 20.0:  # B on a coarser grid covering the same area
        k = int(b_res // 20)
        b = b.reshape(n, h // k, k, w // k, k).mean(axis=(2, 4))
    pb = write_stack(
        b.astype("float32"), dates=make_dates(n, start=dt.date(2018, 1, 4)), name="desc.tif", res=b_res
    )
    return pa, pb


def test_factor_gives_slope(run_alg, tmp_path, write_stack):
    pa, pb = orbits(write_stack)
    res = run_alg(
        "crossorbit",
        {
            "INPUT": pa,
            "INPUT_B": pb,
            "OUTPUT": str(tmp_path / "t.csv"),
            "OUTPUT_PLOT": str(tmp_path / "s.png"),
        },
    )
    assert res["SLOPE"] == pytest.approx(1.2, rel=1e-4)
    assert res["R"] == pytest.approx(1.0, abs=1e-6)
    assert res["PAIRS"] == 10 and res["N"] == 40 * 40 * 9
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and rows[-1]["date_a"] == ""  # 9 pairs + overall
    assert os.path.getsize(tmp_path / "s.png") > 1000
    vel = run_alg("crossorbit", {"INPUT": pa, "INPUT_B": pb, "MODE": 1})
    assert vel["SLOPE"] == pytest.approx(1.2, rel=1e-4) and vel["N"] == 40 * 40


def test_noise_lowers_r_and_other_grid(run_alg, write_stack):
    pa, pb = orbits(write_stack, factor=1.0, noise=3.0, b_res=40.0)
    res = run_alg("crossorbit", {"INPUT": pa, "INPUT_B": pb})
    assert 0.8 < res["R"] < 0.999
    assert res["SLOPE"] == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"INCIDENCE": 90}, "INCIDENCE: the incidence angle must lie strictly between 0 and 90"),
        ({"INCIDENCE_B": -3}, "INCIDENCE_B: the incidence angle must lie strictly between 0 and 90"),
        ({"MAX_DAYS": 1}, "within 1 days"),
    ],
)
def test_bad_inputs_write_nothing(run_alg, tmp_path, write_stack, params, match):
    pa, pb = orbits(write_stack)
    out, plot = tmp_path / "t.csv", tmp_path / "s.png"
    with pytest.raises(QgsProcessingException, match=match):
        run_alg(
            "crossorbit", {"INPUT": pa, "INPUT_B": pb, "OUTPUT": str(out), "OUTPUT_PLOT": str(plot), **params}
        )
    assert not out.exists() and not plot.exists()
