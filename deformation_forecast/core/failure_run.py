"""Running the failure-time analysis (core.failure) on point series and on stacks, and the
inverse-velocity chart.

Points are analysed all at once (a PS export fits in memory: core.points reads it). A stack is
streamed window by window (windows sized from the memory budget, core.budget); each window is one
scene for the calibration of the acceleration test (core.failure.null_scale). The raster output
holds four bands: velocity (mm/yr), acceleration (mm/yr^2), days from the last acquisition to the
forecast failure (NaN where none) and the alert class (0-3; NaN where the pixel has no data).
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .failure import (
    ALERT_NAMES,
    FailureResult,
    Params,
    analyse,
    days_from_last,
    local_velocities,
    to_date,
)
from .run import QUIET, Run
from .stack import StackWriter, atomic_path, iter_windows, read_info, read_windows

RASTER_BANDS = ["velocity_mm_per_yr", "acceleration_mm_per_yr2", "days_to_failure", "alert"]
RASTER_UNITS = ["mm/yr", "mm/yr2", "days", "class"]
# float32-sized arrays of a window (all dates) alive at once in core.failure.analyse: the float64
# values and their mask, the least-squares residuals and design products, the cumulative sums of
# the local velocities, the de-seasoned directional copy and the scene calibration's subsample
FAILURE_COPIES = 24
PLOT_POINTS = 6


@dataclass
class PointRecord:
    """One analysed point or alerted pixel, for the vector output."""

    x: float
    y: float
    values: dict  # field -> value (None = NULL)


@dataclass
class Critical:
    """The most critical points kept for the chart (a bounded heap)."""

    size: int = PLOT_POINTS
    heap: list = field(default_factory=list)
    count: int = 0

    def offer(self, key: tuple, label: str, series: np.ndarray, row: dict) -> None:
        self.count += 1
        item = (key, self.count, label, np.array(series, dtype="float64"), row)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif key > self.heap[0][0]:
            heapq.heapreplace(self.heap, item)

    def items(self) -> list:
        return sorted(self.heap, key=lambda it: it[:2], reverse=True)


def criticality(res: FailureResult, i: int) -> tuple:
    """Sort key, larger = more critical: alert class, then sooner failure, then the acceleration's
    t statistic."""
    tf = res.t_fail[i]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = abs(res.acceleration[i] / res.acceleration_se[i])
    return (int(res.alert[i]), -tf if np.isfinite(tf) else -1e12, t if np.isfinite(t) else -1.0)


def row_values(res: FailureResult, i: int, last: dt.date) -> dict:
    """The output fields of point `i` (dates as datetime.date, None = NULL)."""

    def num(a: np.ndarray) -> float | None:
        v = float(a[i])
        return v if np.isfinite(v) else None

    return {
        "velocity": num(res.velocity),
        "velocity_se": num(res.velocity_se),
        "acceleration": num(res.acceleration),
        "acceleration_se": num(res.acceleration_se),
        "significant": int(bool(res.significant[i])),
        "failure_date": to_date(last, res.t_fail[i]),
        "failure_early": to_date(last, res.t_early[i]),
        "failure_late": to_date(last, res.t_late[i]),
        "days_to_failure": num(res.t_fail),
        "failure_fit_short": to_date(last, res.t_fail_short[i]),
        "failure_fit_long": to_date(last, res.t_fail_long[i]),
        "alert": int(res.alert[i]),
    }


def summary_of(alerts: np.ndarray, t_fail: np.ndarray, last: dt.date) -> dict:
    """Counts per alert class and the earliest forecast date."""
    counts = np.bincount(alerts.astype("int64"), minlength=4)[:4] if alerts.size else np.zeros(4, int)
    finite = t_fail[np.isfinite(t_fail)]
    earliest = to_date(last, float(finite.min())) if finite.size else None
    return {"counts": [int(c) for c in counts], "earliest": earliest}


def analyse_points(
    values: np.ndarray,
    xy: tuple[np.ndarray, np.ndarray],
    dates: Sequence[dt.date],
    params: Params,
    ids: Sequence[int] | None = None,
    run: Run = QUIET,
) -> tuple[list[PointRecord], Critical, dict]:
    """Analyse point series (points, dates) in mm at `xy` = (x, y); one record per point with
    enough data (its `ids` entry, default 1..N, in the field point_id). Points are taken in blocks
    sized from the run's memory budget; each block is one scene for the calibration of the
    acceleration test. `run` takes the progress (one step per block) and the cancel button."""
    if values.shape[0] == 0:
        raise InputError("No point to analyse (AREA may exclude them all).")
    params.check(len(dates))
    ids = list(range(1, values.shape[0] + 1)) if ids is None else list(ids)
    block = min(50_000, max(2000, run.working_bytes(FAILURE_COPIES) // (4 * max(1, len(dates)))))
    last = dates[-1]
    x, y = xy
    records, crit = [], Critical()
    alerts, tfs, kappas, analysed = [], [], [], 0
    for a in range(0, values.shape[0], block):
        run.check_cancelled()
        part = values[a : a + block]
        res = analyse(part, dates, params)
        kappas.append(res.kappa)
        analysed += int(res.analysed.sum())
        ok = np.isfinite(res.velocity)
        alerts.append(res.alert[ok])
        tfs.append(res.t_fail)
        for i in np.flatnonzero(ok):
            row = row_values(res, i, last)
            row["point_id"] = int(ids[a + i])
            records.append(PointRecord(float(x[a + i]), float(y[a + i]), row))
            crit.offer(criticality(res, i), f"point {ids[a + i]}", part[i], _chart_row(res, i))
        run.progress(min(1.0, (a + block) / values.shape[0]))
    summary = summary_of(np.concatenate(alerts), np.concatenate(tfs), last)
    summary.update(kappa=max(kappas), analysed=analysed, points=len(records))
    return records, crit, summary


def _chart_row(res: FailureResult, i: int) -> dict:
    return {
        "t_fail": float(res.t_fail[i]),
        "t_early": float(res.t_early[i]),
        "t_late": float(res.t_late[i]),
        "k": float(res.k[i]) if res.k is not None else float("nan"),
        "direction": float(res.direction[i]) if res.direction is not None else 1.0,
        "alert": int(res.alert[i]),
    }


def _area_mask(geoms, win, info) -> np.ndarray | None:
    """True inside the AREA polygons (GeoJSON dicts in the stack's CRS) for one window."""
    if not geoms:
        return None
    from rasterio import features, windows

    tr = windows.transform(win, info.transform)
    return features.geometry_mask(
        geoms, out_shape=(int(win.height), int(win.width)), transform=tr, invert=True
    )


def analyse_stack(
    path: str,
    out_path: str | None,
    params: Params,
    geoms: Sequence[dict] | None = None,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> tuple[list[PointRecord], Critical, dict]:
    """Analyse a stack window by window; write the 4-band raster to `out_path` (if given) and
    return one record per alerted pixel centre, the most critical pixels and a summary. The
    windows are sized from the run's memory budget (`max_bytes`, float32 bytes of a window's
    dates, overrides it: tests); `run` takes the progress (one step per window) and the cancel
    button."""
    from .budget import gdal_env

    info = read_info(path)
    params.check(info.count)
    windows = iter_windows(info, max_bytes, copies=FAILURE_COPIES, mb=run.budget_mb)
    acc = _StackResults(info)
    with gdal_env(run.budget_mb):
        writer = _raster_writer(out_path, info)
        try:
            for k, (win, block) in enumerate(read_windows(path, windows)):
                run.check_cancelled()
                out = acc.add(block, win, _area_mask(geoms, win, info), params)
                if writer is not None:
                    writer.write(out, window=win)
                run.progress((k + 1) / len(windows))
            run.check_cancelled()
        except BaseException as e:
            if writer is not None:
                writer.abort(e)
            raise
        if writer is not None:
            writer.close()
    return acc.records, acc.crit, acc.summary()


def _raster_writer(out_path: str | None, info) -> StackWriter | None:
    """The writer of the 4-band raster, None without `out_path`."""
    if not out_path:
        return None
    dates, last = info.dates, info.dates[-1]
    tags = {
        "LAST_ACQUISITION": last.isoformat(),
        "FIRST_ACQUISITION": dates[0].isoformat(),
        "DAYS_TO_FAILURE": f"days from {last.isoformat()} to the forecast failure date",
        "ALERT_CLASSES": "; ".join(f"{k} = {v}" for k, v in ALERT_NAMES.items()),
    }
    writer = StackWriter(
        out_path, RASTER_BANDS, info.crs, info.transform, info.width, info.height, "mixed", tags
    )
    writer.set_band_units(RASTER_UNITS)
    return writer


class _StackResults:
    """What the windows of a stack add up to: records of the alerted pixels, the most critical
    ones, the alert classes and failure times for the summary."""

    def __init__(self, info):
        self.info = info
        self.records: list[PointRecord] = []
        self.crit = Critical()
        self.alerts: list[np.ndarray] = []
        self.tfs: list[np.ndarray] = []
        self.kappas: list[float] = []
        self.analysed = 0

    def add(self, data: np.ndarray, win, inside: np.ndarray | None, params: Params) -> np.ndarray:
        """Analyse one window's (dates, rows, cols) values; returns its 4 output bands."""
        info = self.info
        h, w = int(win.height), int(win.width)
        vals = data.reshape(info.count, -1).T.astype("float64")
        del data
        if inside is not None:
            vals[~inside.ravel()] = np.nan
        rows = np.flatnonzero(np.isfinite(vals).sum(axis=1) >= params.velocity_window + 5)
        out = np.full((4, h * w), np.nan, dtype="float32")
        if rows.size:
            res = analyse(vals[rows], info.dates, params)
            self.kappas.append(res.kappa)
            ok = np.isfinite(res.velocity)
            self.analysed += int(res.analysed.sum())
            out[0, rows] = res.velocity
            out[1, rows] = res.acceleration
            out[2, rows] = res.t_fail
            out[3, rows] = np.where(ok, res.alert, np.nan)
            self.alerts.append(res.alert[ok])
            self.tfs.append(res.t_fail)
            _collect(res, rows, vals, win, info, self.records, self.crit)
        return out.reshape(4, h, w)

    def summary(self) -> dict:
        alerts = np.concatenate(self.alerts) if self.alerts else np.zeros(0)
        tfs = np.concatenate(self.tfs) if self.tfs else np.zeros(0)
        summary = summary_of(alerts, tfs, self.info.dates[-1])
        summary.update(analysed=self.analysed, points=int(alerts.size), kappa=max(self.kappas, default=1.0))
        return summary


def _collect(res: FailureResult, rows, vals, win, info, records, crit) -> None:
    """Records of the alerted pixels of a window, and candidates for the chart."""
    w = int(win.width)
    tr = info.transform
    for j in np.flatnonzero(res.alert > 0):
        idx = int(rows[j])
        r, c = int(win.row_off) + idx // w, int(win.col_off) + idx % w
        x, y = tr * (c + 0.5, r + 0.5)
        row = row_values(res, j, info.dates[-1])
        row["point_id"] = r * info.width + c + 1
        records.append(PointRecord(float(x), float(y), row))
        crit.offer(criticality(res, j), f"pixel row {r} col {c}", vals[idx], _chart_row(res, j))


def chart_data(values: np.ndarray, dates: Sequence[dt.date], params: Params, row: dict) -> dict:
    """Inverse velocities of one series for the chart: local velocities in the direction of
    motion (days/mm, positive ones only) at their window times, and the fitted line
    1/v = (t_fail - t) / k from the start of the fit span to the forecast date."""
    t_days = days_from_last(dates)
    span = params.velocity_window + params.fit_window - 1
    v, tau, _ = local_velocities(values[None, :] * row["direction"], t_days, params.velocity_window)
    v, tau = v[0], tau[0]
    # the fit span and as long again before it: the chart is about the recent trend
    start = t_days[max(0, len(dates) - 2 * span)]
    keep = np.isfinite(v) & (v > 0) & (tau >= start)
    out = {"tau": tau[keep], "inv_v": 1.0 / v[keep], "line": None}
    if np.isfinite(row["t_fail"]) and row["k"] > 0:
        t0 = t_days[max(0, len(dates) - span)]
        tl = np.array([t0, row["t_fail"]])
        out["line"] = (tl, (row["t_fail"] - tl) / row["k"])
    return out


def draw_chart(fig, items: list, dates: Sequence[dt.date], params: Params) -> int:
    """The inverse-velocity chart of the `items` of a :class:`Critical` on `fig`; returns curves."""
    import matplotlib.dates as mdates

    fig.clear()
    ax = fig.add_subplot(111)
    last = dates[-1]
    if not items:
        ax.text(0.5, 0.5, "No point to draw", ha="center", va="center", transform=ax.transAxes)
        return 0

    def when(days):
        return [dt.datetime.combine(last, dt.time()) + dt.timedelta(days=float(d)) for d in days]

    colours = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    tops = []
    for n, (_, _, label, series, row) in enumerate(items):
        c = colours[n % len(colours)]
        d = chart_data(series, dates, params, row)
        if d["inv_v"].size:
            tops.append(float(np.percentile(d["inv_v"], 90)))
        ax.plot(when(d["tau"]), d["inv_v"], "o", ms=3, color=c, label=f"{label} (alert {row['alert']})")
        if d["line"] is not None:
            tl, ul = d["line"]
            tops.append(float(ul[0]))
            ax.plot(when(tl), ul, "-", color=c, lw=1.2)
            ax.axvline(when([row["t_fail"]])[0], color=c, ls="--", lw=0.8)
            if np.isfinite(row["t_early"]) and np.isfinite(row["t_late"]):
                ax.axvspan(*when([row["t_early"], row["t_late"]]), color=c, alpha=0.08)
    ax.axvline(when([0.0])[0], color="k", lw=0.8, ls=":", label=f"last acquisition {last}")
    ax.set_ylim(0, 1.3 * max(tops) if tops else None)
    ax.set_ylabel("inverse velocity 1/v (day/mm)")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    ax.set_title(
        "Inverse velocity (points: local velocities; lines: Voight fit; dashed: forecast failure, "
        "shaded: early-late range)",
        fontsize=8,
    )
    ax.legend(fontsize=7, loc="best")
    return len(items)


def save_chart(path: str, items: list, dates: Sequence[dt.date], params: Params, dpi: int = 150) -> int:
    """Write the chart to `path` (.png, .svg or .pdf) atomically; returns the number of points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ("png", "svg", "pdf"):
        raise InputError(f"OUTPUT_PLOT: {path!r} must end with .png, .svg or .pdf.")
    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    count = draw_chart(fig, items, dates, params)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=ext, dpi=dpi)
    return count


__all__ = ["ALERT_NAMES", "RASTER_BANDS", "analyse_points", "analyse_stack", "save_chart"]
