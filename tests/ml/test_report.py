"""The training report's backtest table (issue 17) and its engine (core/report.py, no pyplot)."""

import math

from deformation_forecast.ml.report import _backtest, _curves


def test_backtest_table_lists_every_horizon_and_the_skills():
    hz = {
        "horizon": [1, 2, 3],
        "trend_window": 12,
        "network_mae": [0.5, 1.0, 1.5],
        "persistence_mae": [1.0, 2.0, 3.0],
        "trend_mae": [0.6, math.nan, 1.2],
        "network_overall_mae": 1.0,
        "persistence_overall_mae": 2.0,
        "trend_overall_mae": 0.9,
        "skill_vs_persistence": 0.5,
        "skill_vs_trend": 1.0 - 1.0 / 0.9,
    }
    page = _backtest(hz)
    assert page.count("<tr>") == 1 + 3 + 1  # header, three horizons, all horizons
    assert "<td>3</td><td>1.5</td><td>3</td><td>1.2</td>" in page
    assert "<td>2</td><td>1</td><td>2</td><td>-</td>" in page  # NaN shown as '-'
    assert "vs persistence 0.500" in page and "last 12 dates -0.111" in page
    assert _backtest(None) == "" and _backtest({"horizon": []}) == ""


def test_figures_are_png_without_pyplot():
    import subprocess
    import sys

    png = _curves({"loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.5, 2.0], "ssim": [0.5, 0.7, 0.8]})
    assert png.startswith("data:image/png;base64,iVBOR")
    code = (
        "import sys; from deformation_forecast.ml.report import _curves; _curves({'loss': [1.0, 0.5]}); "
        "sys.exit('matplotlib.pyplot' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0  # a fresh process
