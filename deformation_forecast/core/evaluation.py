"""Tables, figures and the HTML report of the model comparison and of forecast evaluation.

Figures are drawn with ``matplotlib.figure.Figure`` (no pyplot, no GUI) and embedded in the HTML as
base64 PNGs, so a report is one self-contained file.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import math
from collections.abc import Sequence

import numpy as np

from . import metrics as mt
from .baselines import LABELS, Forecasts

TABLE_FIELDS = (
    "model",
    "mode",
    "MAE",
    "MSE",
    "RMSE",
    "SSIM",
    "MS_SSIM",
    "PSNR",
    "R2",
    "train_seconds",
    "predict_seconds",
    "device",
)
MODES = ("one-step", "iterative")
PAPER_TABLE_III = {  # MAE, MSE, SSIM, MS-SSIM, PSNR, time (He et al. 2022, Table III)
    "svr": (3.7414, 171.1836, 0.9878, 0.9979, 39.9095, "2h53min15s"),
    "mlp": (2.6725, 107.0679, 0.9868, 0.9981, 42.3854, "12h10min26s"),
    "cnn-lstm": (1.5269, 7.9471, 0.9942, 0.9993, 53.9144, "2h37min59s"),
    "cnn-phlstm": (1.4236, 7.3777, 0.9949, 0.9995, 54.4293, "3h48min37s"),
}


def label(model: str) -> str:
    return LABELS.get(model, model)


def comparison_rows(
    forecasts: Sequence[Forecasts], observed: np.ndarray, data_range: float | None = None
) -> tuple[list[dict], float]:
    """One row per (model, mode) with every metric over the test set; and the data range used.

    The data range is the observed test stack's (unless given), the same for every model.
    """
    L = data_range or mt.default_data_range(observed)
    rows = []
    for f in forecasts:
        for mode in MODES:
            pred = f.one_step if mode == "one-step" else f.iterative
            _, overall = mt.stack_metrics(pred, observed, L)
            row = {"model": f.model, "mode": mode}
            row.update({k: overall[k] for k in mt.METRICS})
            row.update(
                train_seconds=round(f.train_seconds, 3),
                predict_seconds=round(f.predict_seconds, 3),
                device=f.device,
            )
            rows.append(row)
    return rows, L


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
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def fmt(v, digits: int = 4) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return html.escape(str(v))


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
def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"/>'


def pick_dates(n: int, k: int = 4) -> list[int]:
    """Up to `k` indexes spread over ``range(n)`` (ends included), as the paper's four dates."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def scatter_figure(
    preds: dict[str, np.ndarray], obs: np.ndarray, dates: Sequence[dt.date], idx: Sequence[int], seed: int = 0
) -> str:
    """Fig. 19: predicted vs observed per chosen date (columns) and model (rows), with R^2."""
    from matplotlib.figure import Figure

    rows, cols = len(preds), len(idx)
    fig = Figure(figsize=(3.0 * cols, 2.9 * rows))
    rng = np.random.default_rng(seed)
    for r, (name, pred) in enumerate(preds.items()):
        for c, i in enumerate(idx):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            o, p = obs[i].ravel(), pred[i].ravel()
            ok = np.isfinite(o) & np.isfinite(p)
            o, p = o[ok], p[ok]
            if o.size > 20000:
                sel = rng.choice(o.size, 20000, replace=False)
                o_s, p_s = o[sel], p[sel]
            else:
                o_s, p_s = o, p
            ax.scatter(o_s, p_s, s=2, alpha=0.4, rasterized=True)
            if o.size:
                lo, hi = float(min(o.min(), p.min())), float(max(o.max(), p.max()))
                ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_title(
                f"{label(name)} {dates[i].isoformat()}\nR²={fmt(mt.r2(p, o), 4)}  r²={fmt(mt.pearson_r2(p, o), 4)}",
                fontsize=8,
            )
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("predicted (mm)", fontsize=8)
            if r == rows - 1:
                ax.set_xlabel("observed (mm)", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def extremes_figure(
    all_dates: Sequence[dt.date],
    observed_all: np.ndarray,
    test_dates: Sequence[dt.date],
    preds: dict[str, np.ndarray],
) -> str:
    """Fig. 18: per-date minimum and maximum of the raw stack and of each model's prediction."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    import warnings

    x = np.array(all_dates, dtype="datetime64[D]")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a model without any finite prediction
        ax.plot(x, np.nanmin(observed_all.reshape(len(x), -1), axis=1), "k-", lw=1.5, label="raw min")
        ax.plot(x, np.nanmax(observed_all.reshape(len(x), -1), axis=1), "k--", lw=1.5, label="raw max")
        xt = np.array(test_dates, dtype="datetime64[D]")
        for name, pred in preds.items():
            flat = pred.reshape(len(xt), -1)
            (line,) = ax.plot(xt, np.nanmin(flat, axis=1), "-", lw=1, marker=".", label=f"{name} min")
            ax.plot(xt, np.nanmax(flat, axis=1), "--", lw=1, color=line.get_color(), label=f"{name} max")
    if len(test_dates):
        ax.axvspan(xt[0], xt[-1], color="0.9", zorder=0)
    ax.set_ylabel("deformation (mm)")
    ax.legend(fontsize=7, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


def error_maps_figure(
    errors: dict[str, np.ndarray], title: str = "mean |error| over the test set (mm)"
) -> str:
    """Per-model maps of the mean absolute error, on one colour scale."""
    from matplotlib.figure import Figure

    n = len(errors)
    cols = min(n, 3)
    rows = int(math.ceil(n / cols))
    fig = Figure(figsize=(3.6 * cols, 3.2 * rows))
    with np.errstate(all="ignore"):
        vals = np.concatenate([e[np.isfinite(e)].ravel() for e in errors.values()] or [np.zeros(1)])
    vmax = float(np.percentile(vals, 99)) if vals.size else 1.0
    for k, (name, err) in enumerate(errors.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        im = ax.imshow(err, vmin=0, vmax=vmax or 1.0, cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def mean_abs_error(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    import warnings

    err = mt.abs_error_stack(pred, obs)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return np.nanmean(err, axis=0)


# -- HTML -------------------------------------------------------------------------------------------
_CSS = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
    "td:first-child,td:nth-child(2){text-align:left}.note{color:#444;font-size:90%}img{max-width:100%}"
)


def html_table(rows: Sequence[dict], fields: Sequence[str]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(f)}</th>" for f in fields) + "</tr>"]
    for r in rows:
        cells = []
        for f in fields:
            v = r.get(f, "")
            if f == "model":
                v = label(str(v))
            cells.append(f"<td>{fmt(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>"
    )


def comparison_report(
    rows: Sequence[dict],
    forecasts: Sequence[Forecasts],
    all_dates: Sequence[dt.date],
    observed_all: np.ndarray,
    test_dates: Sequence[dt.date],
    observed_test: np.ndarray,
    data_range: float,
    split_text: str,
    notes: Sequence[str] = (),
) -> str:
    """The HTML report of `comparemodels`."""
    fields = [f for f in TABLE_FIELDS]
    sections = [
        (
            "Table III: one-step-ahead on the test set (the paper's protocol)",
            html_table([r for r in rows if r["mode"] == "one-step"], fields),
        ),
        (
            "Iterative forecast over the test horizon (each prediction fed back as input)",
            html_table([r for r in rows if r["mode"] == "iterative"], fields),
        ),
    ]
    paper = [
        {"model": m, "MAE": v[0], "MSE": v[1], "SSIM": v[2], "MS_SSIM": v[3], "PSNR": v[4], "time": v[5]}
        for m, v in PAPER_TABLE_III.items()
    ]
    items = [
        f"<li>{html.escape(split_text)}</li>",
        f"<li>Data range L = {data_range:.4g} mm (max - min of the observed test frames): SSIM's "
        "constants and PSNR = 10 log10(L² / MSE) use it; R² is the coefficient of determination.</li>",
        "<li>Metrics ignore pixels that are NaN in the observation or the prediction. SSIM: Gaussian "
        "window 11, σ 1.5; MS-SSIM as TensorFlow's ssim_multiscale (fewer scales on small images).</li>",
    ]
    items += [
        f"<li><b>{html.escape(label(f.model))}</b>: {html.escape(f.notes)}</li>" for f in forecasts if f.notes
    ]
    items += [f"<li>{html.escape(n)}</li>" for n in notes]
    sections.append(("How these numbers were made", "<ul>" + "\n".join(items) + "</ul>"))
    sections.append(
        (
            "The paper's Table III (He et al. 2022, Jinchuan; their data, their hardware)",
            html_table(paper, ["model", "MAE", "MSE", "SSIM", "MS_SSIM", "PSNR", "time"])
            + '<p class="note">Their scene and units differ: compare the ranking, not the values.</p>',
        )
    )
    idx = pick_dates(len(test_dates))
    one = {label(f.model): f.one_step for f in forecasts}
    sections.append(
        (
            "Predicted vs observed, one-step (Fig. 19)",
            _img(
                scatter_figure({f.model: f.one_step for f in forecasts}, observed_test, test_dates, idx),
                "scatter",
            ),
        )
    )
    sections.append(
        (
            "Minimum and maximum of raw and predicted frames (Fig. 18)",
            _img(extremes_figure(all_dates, observed_all, test_dates, one), "one-step extremes")
            + '<p class="note">one-step-ahead predictions</p>'
            + _img(
                extremes_figure(
                    all_dates, observed_all, test_dates, {label(f.model): f.iterative for f in forecasts}
                ),
                "iterative extremes",
            )
            + '<p class="note">iterative forecasts</p>',
        )
    )
    sections.append(
        (
            "Error maps",
            _img(
                error_maps_figure(
                    {label(f.model): mean_abs_error(f.one_step, observed_test) for f in forecasts}
                ),
                "error maps",
            )
            + _img(
                error_maps_figure(
                    {label(f.model): mean_abs_error(f.iterative, observed_test) for f in forecasts},
                    "mean |error| of the iterative forecast (mm)",
                ),
                "iterative error maps",
            ),
        )
    )
    return html_page("Comparison of forecasting models", sections)


def evaluation_report(
    rows: Sequence[dict],
    total: dict,
    pred: np.ndarray,
    obs: np.ndarray,
    dates: Sequence[dt.date],
    data_range: float,
    notes: Sequence[str] = (),
) -> str:
    """The HTML report of `evaluateforecast`."""
    fields = ["date", *mt.METRICS, "N"]
    idx = pick_dates(len(dates))
    err = mt.abs_error_stack(pred, obs)
    items = [
        f"<li>Data range L = {data_range:.4g} (max - min of the observed frames compared).</li>",
        "<li>Overall: MAE/MSE/RMSE/R² pool every valid pixel, PSNR uses the pooled MSE, SSIM and MS-SSIM "
        "are the mean over dates. NaN pixels (either stack) are ignored.</li>",
    ] + [f"<li>{html.escape(n)}</li>" for n in notes]
    sections = [
        ("Metrics per date and overall", html_table([*rows, total], fields)),
        ("Notes", "<ul>" + "".join(items) + "</ul>"),
        (
            "Predicted vs observed (Fig. 19)",
            _img(scatter_figure({"forecast": pred}, obs, dates, idx), "scatter"),
        ),
        (
            "Minimum and maximum per date (Fig. 18)",
            _img(extremes_figure(dates, obs, dates, {"forecast": pred}), "extremes"),
        ),
        (
            "Absolute error maps",
            _img(
                error_maps_figure({dates[i].isoformat(): err[i] for i in idx}, "|predicted - observed|"),
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
