"""Tables, figures and the HTML report of the model comparison and of forecast evaluation.

Figures are drawn with ``matplotlib.figure.Figure`` (no pyplot, no GUI) and embedded in the HTML as
base64 PNGs by the package's one report engine (core.report), so a report is one self-contained file.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import metrics as mt
from .baselines import LABELS, Forecasts
from .report import figure_png, fmt, html_page, img
from .report import html_table as _table
from .run import QUIET, Run

TABLE_FIELDS = ("model", "mode", *mt.METRICS, "train_seconds", "predict_seconds", "device")
# the comparison report's columns: the table's, with the skill against persistence (comparemodels'
# SKILL = 1 - MAE / MAE of persistence in the same mode, core.comparison.add_skill) after the metrics
REPORT_FIELDS = ("model", "mode", *mt.METRICS, "SKILL", "train_seconds", "predict_seconds", "device")
MODES = ("one-step", "iterative")
PAPER_TABLE_III = {  # mt.TABLE_III's metrics and the time (He et al. 2022, Table III)
    "svr": (3.7414, 171.1836, 0.9878, 0.9979, 39.9095, "2h53min15s"),
    "mlp": (2.6725, 107.0679, 0.9868, 0.9981, 42.3854, "12h10min26s"),
    "cnn-lstm": (1.5269, 7.9471, 0.9942, 0.9993, 53.9144, "2h37min59s"),
    "cnn-phlstm": (1.4236, 7.3777, 0.9949, 0.9995, 54.4293, "3h48min37s"),
}


def label(model: str) -> str:
    return LABELS.get(model, model)


def per_date_rows(
    pred: np.ndarray, obs: np.ndarray, dates: Sequence[dt.date], data_range: float | None = None
) -> tuple[list[dict], dict, float]:
    """Rows ``date, MAE, ...`` per date and the overall row (``date = 'overall'``)."""
    L = data_range or mt.default_data_range(obs)
    per, overall = mt.stack_metrics(pred, obs, L)
    rows = []
    for d, m in zip(dates, per, strict=False):
        rows.append({"date": d.isoformat(), **{k: m[k] for k in mt.METRICS}, "N": m["N"]})
    total = {"date": "overall", **{k: overall[k] for k in mt.METRICS}, "N": overall["N"]}
    return rows, total, L


def write_csv(rows: Sequence[dict], path: str, fields: Sequence[str] | None = None) -> str:
    fields = list(fields or rows[0].keys())
    from .stack import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in fields})
    return path


def _csv_value(v):
    """A cell: floats (numpy's too) as the shortest text that reads back exactly, NaN empty; never
    repr() of a numpy scalar (numpy 2 spells it "np.float64(1.5)")."""
    if isinstance(v, float | np.floating):
        return "" if math.isnan(v) else repr(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}min{sec:02d}s"
    if m:
        return f"{m}min{sec:02d}s"
    return f"{seconds:.1f}s"


def text_table(rows: Sequence[dict], with_paper: bool = True) -> str:
    """Table III layout in plain text: this run's numbers, the paper's beside them where it has them."""
    head = f"{'model':<14}{'mode':<10}{'MAE':>9}{'MSE':>11}{'SSIM':>8}{'MS-SSIM':>9}{'PSNR':>9}{'R2':>8}"
    head += f"{'train':>12}{'predict':>10}  device"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{label(r['model']):<14}{r['mode']:<10}{r['MAE']:>9.4f}{r['MSE']:>11.4f}{r['SSIM']:>8.4f}"
            f"{r['MS_SSIM']:>9.4f}{r['PSNR']:>9.3f}{r['R2']:>8.4f}{duration(r['train_seconds']):>12}"
            f"{duration(r['predict_seconds']):>10}  {r['device']}"
        )
        if with_paper and r["mode"] == "one-step" and r["model"] in PAPER_TABLE_III:
            p = PAPER_TABLE_III[r["model"]]
            lines.append(
                f"{'  paper':<14}{'one-step':<10}{p[0]:>9.4f}{p[1]:>11.4f}{p[2]:>8.4f}{p[3]:>9.4f}"
                f"{p[4]:>9.3f}{'':>8}{p[5]:>12}"
            )
    return "\n".join(lines)


# -- figures ----------------------------------------------------------------------------------------
def pick_dates(n: int, k: int = 4) -> list[int]:
    """Up to `k` indexes spread over ``range(n)`` (ends included), as the paper's four dates."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


SCATTER_POINTS = 20000  # points per scatter panel
PREVIEW = 400  # pixels on the longer side of an error-map preview


@dataclass
class FrameFigures:
    """What the report's figures need from one (prediction, observation) frame: a few numbers, a
    random subsample of the valid pairs and a decimated error map. Small whatever the frame size."""

    obs_min: float = math.nan  # over the finite observations
    obs_max: float = math.nan
    pred_min: float = math.nan  # over the finite predictions
    pred_max: float = math.nan
    r2: float = math.nan
    pearson_r2: float = math.nan
    valid: int = 0
    lo: float = math.nan  # min and max of both over the valid pairs (the 1:1 line)
    hi: float = math.nan
    sample_obs: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_pred: np.ndarray = field(default_factory=lambda: np.empty(0))
    error_preview: np.ndarray | None = None


def preview_step(shape: tuple[int, ...], side: int = PREVIEW) -> int:
    return max(1, math.ceil(max(shape[-2:]) / side))


def frame_figures(
    pred: np.ndarray, obs: np.ndarray, sample: bool = True, preview: bool = True, seed: int = 0
) -> FrameFigures:
    """The :class:`FrameFigures` of one frame pair, computed in strips of rows (float32 frames
    are not copied whole); the subsample is a window-independent bottom-k (core.streaming)."""
    import warnings

    from .crossorbit import PairStats
    from .streaming import BottomK, hash_keys

    p, o = np.asarray(pred), np.asarray(obs)
    h, w = o.shape
    out = FrameFigures()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames
        out.obs_min, out.obs_max = float(np.nanmin(o)), float(np.nanmax(o))
        out.pred_min, out.pred_max = float(np.nanmin(p)), float(np.nanmax(p))
    st = PairStats()
    sums = mt.Sums()
    pick = BottomK(SCATTER_POINTS if sample else 0)
    lo, hi = math.inf, -math.inf
    step = mt.STRIP
    for r0 in range(0, h, step):
        ps, os_ = p[r0 : r0 + step], o[r0 : r0 + step]
        ok = np.isfinite(ps) & np.isfinite(os_)
        if not ok.any():
            continue
        sums.merge(mt.Sums.of(ps, os_, ok))
        pv, ov = ps[ok].astype("float64"), os_[ok].astype("float64")
        st.add(ov, pv)
        lo = min(lo, float(min(ov.min(), pv.min())))
        hi = max(hi, float(max(ov.max(), pv.max())))
        if sample:
            idx = (np.arange(r0, r0 + ps.shape[0], dtype=np.int64)[:, None] * w + np.arange(w))[ok]
            pick.add(hash_keys(idx, seed), o=ov, p=pv)
    out.valid = sums.n
    out.r2 = sums.r2
    if st.n >= 2 and st.cxx > 0 and st.cyy > 0:
        out.pearson_r2 = float(st.cxy**2 / (st.cxx * st.cyy))
    if sums.n:
        out.lo, out.hi = lo, hi
    if sample and pick.size:
        got = pick.result()
        out.sample_obs, out.sample_pred = got["o"], got["p"]
    if preview:
        s_ = preview_step(o.shape)
        with np.errstate(invalid="ignore"):
            out.error_preview = np.abs(
                p[::s_, ::s_].astype("float64") - o[::s_, ::s_].astype("float64")
            ).astype("float32")
    return out


class MeanErrorMap:
    """Mean |error| over dates on a decimated grid (the report's error maps), frame by frame."""

    def __init__(self) -> None:
        self.sum: np.ndarray | None = None
        self.count: np.ndarray | None = None

    def add(self, pred: np.ndarray, obs: np.ndarray) -> None:
        s_ = preview_step(np.shape(obs))
        with np.errstate(invalid="ignore"):
            e = np.abs(np.asarray(pred)[::s_, ::s_].astype("float64") - np.asarray(obs)[::s_, ::s_])
        ok = np.isfinite(e)
        if self.sum is None:
            self.sum, self.count = np.zeros(e.shape), np.zeros(e.shape, dtype=np.int64)
        self.sum += np.where(ok, e, 0.0)
        self.count += ok

    def value(self) -> np.ndarray:
        if self.sum is None or self.count is None:
            return np.full((1, 1), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum / np.maximum(self.count, 1), np.nan)


def scatter_figure(panels: dict[str, Sequence[FrameFigures]], dates: Sequence[dt.date]) -> str:
    """Fig. 19: predicted vs observed per chosen date (columns) and model (rows), with R^2;
    `panels[name]` holds the FrameFigures of the chosen `dates`."""
    from matplotlib.figure import Figure

    rows, cols = len(panels), len(dates)
    fig = Figure(figsize=(3.0 * max(cols, 1), 2.9 * max(rows, 1)))
    for r, (name, figs) in enumerate(panels.items()):
        for c, (d, f) in enumerate(zip(dates, figs, strict=True)):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.scatter(f.sample_obs, f.sample_pred, s=2, alpha=0.4, rasterized=True)
            if f.valid:
                ax.plot([f.lo, f.hi], [f.lo, f.hi], "k--", lw=0.8)
            ax.set_title(
                f"{label(name)} {d.isoformat()}\nR²={fmt(f.r2, 4)}  r²={fmt(f.pearson_r2, 4)}",
                fontsize=8,
            )
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("predicted (mm)", fontsize=8)
            if r == rows - 1:
                ax.set_xlabel("observed (mm)", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def extremes_figure(
    all_dates: Sequence[dt.date],
    observed_min: Sequence[float],
    observed_max: Sequence[float],
    test_dates: Sequence[dt.date],
    preds: Mapping[str, tuple[Sequence[float], Sequence[float]]],
) -> str:
    """Fig. 18: per-date minimum and maximum of the raw stack and of each model's prediction
    (`preds[name]` = (minima, maxima) over `test_dates`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.array(all_dates, dtype="datetime64[D]")
    ax.plot(x, np.asarray(observed_min, dtype="float64"), "k-", lw=1.5, label="raw min")
    ax.plot(x, np.asarray(observed_max, dtype="float64"), "k--", lw=1.5, label="raw max")
    xt = np.array(test_dates, dtype="datetime64[D]")
    for name, (lo, hi) in preds.items():
        (line,) = ax.plot(xt, np.asarray(lo, dtype="float64"), "-", lw=1, marker=".", label=f"{name} min")
        ax.plot(xt, np.asarray(hi, dtype="float64"), "--", lw=1, color=line.get_color(), label=f"{name} max")
    if len(test_dates):
        ax.axvspan(xt[0], xt[-1], color="0.9", zorder=0)
    ax.set_ylabel("deformation (mm)")
    ax.legend(fontsize=7, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    return figure_png(fig)


def error_maps_figure(
    errors: Mapping[str, np.ndarray | None], title: str = "mean |error| over the test set (mm)"
) -> str:
    """Per-model maps of the mean absolute error, on one colour scale (decimated maps)."""
    from matplotlib.figure import Figure

    n = len(errors)
    cols = min(n, 3)
    rows = int(math.ceil(n / cols))
    fig = Figure(figsize=(3.6 * cols, 3.2 * rows))
    with np.errstate(all="ignore"):
        maps = {k: np.full((1, 1), np.nan) if e is None else e for k, e in errors.items()}
        vals = np.concatenate([e[np.isfinite(e)].ravel() for e in maps.values()] or [np.zeros(1)])
    vmax = float(np.percentile(vals, 99)) if vals.size else 1.0
    for k, (name, err) in enumerate(maps.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        im = ax.imshow(err, vmin=0, vmax=vmax or 1.0, cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


# -- HTML -------------------------------------------------------------------------------------------
def _cell(field: str, value) -> str:
    return fmt(label(str(value)) if field == "model" else value)


def html_table(rows: Sequence[dict], fields: Sequence[str]) -> str:
    """core.report.html_table with the models' display names."""
    return _table(rows, fields, _cell)


@dataclass
class ModelFigures:
    """One model's figure data over the test dates, per mode (FrameFigures per test date, with a
    subsample and a preview only for the dates the report shows) and its mean error maps."""

    model: str
    notes: str = ""
    one_step: list[FrameFigures] = field(default_factory=list)
    iterative: list[FrameFigures] = field(default_factory=list)
    mean_error_one_step: np.ndarray | None = None
    mean_error_iterative: np.ndarray | None = None


def model_figures(f: Forecasts, observed_test: np.ndarray, shown: Sequence[int]) -> ModelFigures:
    """The ModelFigures of in-memory forecasts (the streamed comparison builds them frame by frame)."""
    out = ModelFigures(f.model, f.notes)
    for mode, pred in (("one_step", f.one_step), ("iterative", f.iterative)):
        err = MeanErrorMap()
        figs = []
        for i in range(observed_test.shape[0]):
            figs.append(frame_figures(pred[i], observed_test[i], sample=i in shown, preview=False))
            err.add(pred[i], observed_test[i])
        setattr(out, mode, figs)
        setattr(out, f"mean_error_{mode}", err.value())
    return out


@dataclass(frozen=True)
class Timeline:
    """The dates of a comparison and the per-date extremes of the observed stack (Fig. 18's raw
    curves): every date, its minimum and maximum, and the test dates."""

    all_dates: Sequence[dt.date]
    observed_min: Sequence[float]
    observed_max: Sequence[float]
    test_dates: Sequence[dt.date]

    @classmethod
    def of(
        cls, all_dates: Sequence[dt.date], observed: np.ndarray, test_dates: Sequence[dt.date]
    ) -> Timeline:
        """The Timeline of an in-memory (dates, rows, cols) observed stack."""
        import warnings

        lo, hi = [], []
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames
            for frame in observed:
                lo.append(float(np.nanmin(frame)))
                hi.append(float(np.nanmax(frame)))
        return cls(all_dates, lo, hi, test_dates)


def _comparison_notes(figures: Sequence[ModelFigures], data_range: float, split_text: str, notes) -> str:
    items = [
        f"<li>{html.escape(split_text)}</li>",
        f"<li>Data range L = {data_range:.4g} mm (max - min of the observed test frames): SSIM's "
        "constants and PSNR = 10 log10(L² / MSE) use it; R² is the coefficient of determination.</li>",
        "<li>SKILL is the skill against persistence in the same mode, 1 - MAE / MAE of persistence: "
        "above 0 the model beats holding the last observed date, 0 is persistence itself, n/a without "
        "persistence among the models.</li>",
        "<li>Metrics ignore pixels that are NaN in the observation or the prediction. SSIM: Gaussian "
        "window 11, σ 1.5; MS-SSIM as TensorFlow's ssim_multiscale (fewer scales on small images).</li>",
        f"<li>Scatter plots show a random subsample of at most {SCATTER_POINTS} pixels per panel; "
        f"error maps are decimated to at most {PREVIEW} pixels a side.</li>",
    ]
    items += [
        f"<li><b>{html.escape(label(f.model))}</b>: {html.escape(f.notes)}</li>" for f in figures if f.notes
    ]
    items += [f"<li>{html.escape(n)}</li>" for n in notes]
    return "<ul>" + "\n".join(items) + "</ul>"


def _paper_table() -> str:
    paper = [
        {"model": m, **dict(zip(mt.TABLE_III, v, strict=False)), "time": v[-1]}
        for m, v in PAPER_TABLE_III.items()
    ]
    return (
        html_table(paper, ["model", *mt.TABLE_III, "time"])
        + '<p class="note">Their scene and units differ: compare the ranking, not the values.</p>'
    )


def _comparison_figures(figures: Sequence[ModelFigures], t: Timeline) -> list[tuple[str, str]]:
    """The figure sections of the comparison report (Fig. 19, Fig. 18, error maps)."""
    idx = pick_dates(len(t.test_dates))
    shown = [t.test_dates[i] for i in idx]

    def extremes(mode: str, what: str) -> str:
        preds = {
            label(f.model): ([g.pred_min for g in getattr(f, mode)], [g.pred_max for g in getattr(f, mode)])
            for f in figures
        }
        fig = extremes_figure(t.all_dates, t.observed_min, t.observed_max, t.test_dates, preds)
        return img(fig, f"{mode.replace('_', '-')} extremes") + f'<p class="note">{what}</p>'

    scatter = scatter_figure({f.model: [f.one_step[i] for i in idx] for f in figures}, shown)
    one_step = error_maps_figure({label(f.model): f.mean_error_one_step for f in figures})
    iterative = error_maps_figure(
        {label(f.model): f.mean_error_iterative for f in figures},
        "mean |error| of the iterative forecast (mm)",
    )
    return [
        ("Predicted vs observed, one-step (Fig. 19)", img(scatter, "scatter")),
        (
            "Minimum and maximum of raw and predicted frames (Fig. 18)",
            extremes("one_step", "one-step-ahead predictions") + extremes("iterative", "iterative forecasts"),
        ),
        ("Error maps", img(one_step, "error maps") + img(iterative, "iterative error maps")),
    ]


def comparison_report_html(
    rows: Sequence[dict],
    figures: Sequence[ModelFigures],
    timeline: Timeline,
    data_range: float,
    split_text: str,
    notes: Sequence[str] = (),
) -> str:
    """The HTML report of `comparemodels` from the figure data gathered frame by frame."""
    sections = [
        (
            "Table III: one-step-ahead on the test set (the paper's protocol)",
            html_table([r for r in rows if r["mode"] == "one-step"], REPORT_FIELDS),
        ),
        (
            "Iterative forecast over the test horizon (each prediction fed back as input)",
            html_table([r for r in rows if r["mode"] == "iterative"], REPORT_FIELDS),
        ),
        ("How these numbers were made", _comparison_notes(figures, data_range, split_text, notes)),
        ("The paper's Table III (He et al. 2022, Jinchuan; their data, their hardware)", _paper_table()),
        *_comparison_figures(figures, timeline),
    ]
    return html_page("Comparison of forecasting models", sections)


def evaluation_report_html(
    rows: Sequence[dict],
    total: dict,
    figures: Sequence[FrameFigures],
    dates: Sequence[dt.date],
    data_range: float,
    notes: Sequence[str] = (),
) -> str:
    """The HTML report of `evaluateforecast` from the figure data of every date (gathered frame by
    frame; subsamples and previews are needed for the dates :func:`pick_dates` shows)."""
    fields = ["date", *mt.METRICS, "N"]
    idx = pick_dates(len(dates))
    items = [
        f"<li>Data range L = {data_range:.4g} (max - min of the observed frames compared).</li>",
        "<li>Overall: MAE/MSE/RMSE/R² pool every valid pixel, PSNR uses the pooled MSE, SSIM and MS-SSIM "
        "are the mean over dates. NaN pixels (either stack) are ignored.</li>",
        f"<li>Scatter plots show a random subsample of at most {SCATTER_POINTS} pixels; error maps are "
        f"decimated to at most {PREVIEW} pixels a side.</li>",
    ] + [f"<li>{html.escape(n)}</li>" for n in notes]
    shown = [dates[i] for i in idx]
    sections = [
        ("Metrics per date and overall", html_table([*rows, total], fields)),
        ("Notes", "<ul>" + "".join(items) + "</ul>"),
        (
            "Predicted vs observed (Fig. 19)",
            img(scatter_figure({"forecast": [figures[i] for i in idx]}, shown), "scatter"),
        ),
        (
            "Minimum and maximum per date (Fig. 18)",
            img(
                extremes_figure(
                    dates,
                    [f.obs_min for f in figures],
                    [f.obs_max for f in figures],
                    dates,
                    {"forecast": ([f.pred_min for f in figures], [f.pred_max for f in figures])},
                ),
                "extremes",
            ),
        ),
        (
            "Absolute error maps",
            img(
                error_maps_figure(
                    {dates[i].isoformat(): figures[i].error_preview for i in idx}, "|predicted - observed|"
                ),
                "errors",
            ),
        ),
    ]
    return html_page("Forecast evaluation", sections)


def match_dates(
    pred_dates: Sequence[dt.date], obs_dates: Sequence[dt.date], max_days: int
) -> list[tuple[int, int]]:
    """Pairs (predicted index, observed index): each predicted date with the nearest observed date
    within `max_days`; an observed date serves one predicted date only (the closest). Time order."""
    cand: list[tuple[int, int, int]] = []
    for i, d in enumerate(pred_dates):
        best = None
        for j, o in enumerate(obs_dates):
            gap = abs((o - d).days)
            if gap <= max_days and (best is None or gap < best[0]):
                best = (gap, j)
        if best is not None:
            cand.append((best[0], i, best[1]))
    used: dict[int, tuple[int, int]] = {}
    for gap, i, j in sorted(cand):
        if j not in used:
            used[j] = (i, gap)
    return sorted((i, j) for j, (i, _) in used.items())


@dataclass
class FileEvaluation:
    rows: list[dict]  # per date: date, observed_date, metrics, N
    total: dict  # the overall row
    data_range: float
    figures: list[FrameFigures]


def evaluate_files(
    pred_path: str,
    obs_path: str,
    pairs: Sequence[tuple[int, int]],
    data_range: float | None = None,
    errors_path: str | None = None,
    errors_meta: dict | None = None,
    run: Run = QUIET,
) -> FileEvaluation:
    """Metrics of the predicted stack at `pred_path` against the observed one at `obs_path` (same
    grid) for the band `pairs` (predicted index, observed index), frame by frame: a first pass
    finds the observed data range (unless `data_range` is given), the second scores each date,
    gathers the report's figure data and writes the absolute error band of `errors_path` (a stack
    with the predicted dates; `errors_meta`: crs, transform, units, tags). The second pass takes
    the first pass's frames from memory when they all fit in half the working memory, else reads
    them again. GDAL's block cache and the frames read at once are sized from the memory budget of
    `run` (core.budget); progress goes to `run` per frame pair, cancelling raises
    core.errors.Cancelled.
    """
    from .budget import gdal_env
    from .stack import read_info

    with gdal_env(run.budget_mb):  # GDAL's block cache sized from the memory budget
        passes = _FramePairs(pred_path, obs_path, pairs, run, 1 if data_range is not None else 2)
        if data_range is None:
            rng = mt.RangeAccumulator()
            for _, _, p, o in passes.frames():
                rng.add(p, o)
            data_range = rng.value()
        pred_info, obs_info = read_info(pred_path), read_info(obs_path)
        writer = _errors_writer(
            errors_path, [pred_info.dates[i] for i, _ in pairs], pred_info, obs_info, errors_meta
        )
        acc = mt.StackAccumulator(float(data_range))
        shown = set(pick_dates(len(pairs)))
        rows, figures = [], []
        with writer or contextlib.nullcontext():  # published when complete, removed on an exception
            for k, (i, j, p, o) in enumerate(passes.frames()):
                m = acc.add(p, o)
                rows.append(
                    {
                        "date": pred_info.dates[i].isoformat(),
                        **{key: m[key] for key in mt.METRICS},
                        "N": m["N"],
                        "observed_date": obs_info.dates[j].isoformat(),
                    }
                )
                figures.append(frame_figures(p, o, sample=k in shown, preview=k in shown))
                if writer is not None:
                    writer.write_band(k, mt.abs_error_stack(p, o))
    ov = acc.overall()
    total = {"date": "overall", **{key: ov[key] for key in mt.METRICS}, "N": ov["N"], "observed_date": ""}
    return FileEvaluation(rows, total, float(data_range), figures)


@dataclass
class _FramePairs:
    """The (predicted, observed) frame pairs of :func:`evaluate_files`, read `passes` times in all.

    When every pair fits in half the working memory, the first pass keeps the frames it read and
    the second takes them from memory: from a pixel-interleaved compressed file each pass decodes
    the whole file whatever the dates asked for (issue 22), and the second would decode it again.
    Each kept frame is released as the second pass hands it out."""

    pred_path: str
    obs_path: str
    pairs: Sequence[tuple[int, int]]
    run: Run
    passes: int
    done: int = 0
    kept: list | None = None

    def frames(self):
        steps = max(1, len(self.pairs) * self.passes)
        if self.kept is not None:  # the first pass's frames, in order
            kept, self.kept = self.kept, None
            kept.reverse()
            while kept:
                self.run.check_cancelled()
                yield kept.pop()
                self.done += 1
                self.run.progress(self.done / steps)
            return
        keep: list | None = [] if self.passes > 1 and self._fit_in_memory() else None
        for quad in self._read():
            self.run.check_cancelled()
            yield quad
            if keep is not None:
                keep.append(quad)
            self.done += 1
            self.run.progress(self.done / steps)
        self.kept = keep

    def _fit_in_memory(self) -> bool:
        from .stack import read_info

        info = read_info(self.obs_path)
        return 2 * len(self.pairs) * 4 * info.width * info.height <= self.run.working_bytes(2)

    def _read(self):
        from .validity import iter_dated_frames

        # frames read in groups from a pixel-interleaved file, one at a time otherwise (issue 22),
        # each with its spikes masked against its neighbouring dates as a read of all dates does
        max_bytes = self.run.working_bytes(4)
        preds = iter_dated_frames(self.pred_path, [i for i, _ in self.pairs], max_bytes)
        obs = iter_dated_frames(self.obs_path, [j for _, j in self.pairs], max_bytes)
        for (i, p), (j, o) in zip(preds, obs, strict=True):
            yield i, j, p, o


def _errors_writer(path: str | None, dates, pred_info, obs_info, meta: dict | None):
    """The StackWriter of the absolute error stack (None when not asked for)."""
    from .stack import StackWriter

    if not path:
        return None
    meta = dict(meta or {})
    return StackWriter(
        path,
        dates,
        meta.get("crs", pred_info.crs),
        meta.get("transform", pred_info.transform),
        pred_info.width,
        pred_info.height,
        units=meta.get("units", obs_info.units),
        tags=meta.get("tags"),
    )
