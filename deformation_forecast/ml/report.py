"""The training report: one HTML file with the test metrics, the iterative backtest per horizon
against persistence and the trend (issue 17), the loss/SSIM curves (Fig. 17), the min/max trends
(Fig. 18) and a map of the last test date; built with the package's one report engine
(core/report.py: matplotlib Figures without pyplot, images embedded as base64 PNG)."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from ..core.metrics import METRICS
from ..core.report import figure_png
from ..core.stack import atomic_path
from .modelfile import ModelMeta


def _png(fig) -> str:
    return "data:image/png;base64," + figure_png(fig)


def _figure(cols: int, size: tuple[float, float]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(1, cols)


def _curves(history: dict[str, list[float]]) -> str:
    fig, axes = _figure(2, (10, 3.5))
    for ax, key, title in ((axes[0], "loss", "Loss (eq. 11)"), (axes[1], "ssim", "SSIM (compressed frames)")):
        for k, style in ((key, "-"), ("val_" + key, "--")):
            if history.get(k):
                ax.plot(range(1, len(history[k]) + 1), history[k], style, label=k)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    return _png(fig)


def _extremes(ext: dict[str, Any], test_dates: list[str]) -> str:
    dates = np.array(ext["dates"], dtype="datetime64[D]")
    td = np.array(test_dates, dtype="datetime64[D]")
    fig, axes = _figure(2, (10, 3.5))
    for ax, which in ((axes[0], "min"), (axes[1], "max")):
        ax.plot(dates, ext[which], "k-", lw=1, label=f"observed {which}")
        if f"gru_one_step_{which}" in ext:
            ax.plot(td, ext[f"gru_one_step_{which}"], "b.", label="GRU one step")
            ax.plot(td, ext[f"gru_iterative_{which}"], "c-", label="GRU iterative")
            ax.plot(td, ext[f"pred_{which}"], "r+", label="network prediction")
        ax.set_title(f"Per-date {which} (Fig. 18)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
    return _png(fig)


def _maps(pred: np.ndarray, obs: np.ndarray, label: str) -> str:
    lo, hi = np.nanmin(obs), np.nanmax(obs)
    fig, axes = _figure(3, (12, 3.8))
    for ax, img, title in ((axes[0], obs, "observed"), (axes[1], pred, "predicted (one step)")):
        im = ax.imshow(img, vmin=lo, vmax=hi, cmap="jet_r")
        ax.set_title(f"{title} {label}")
        fig.colorbar(im, ax=ax, shrink=0.8, label="mm")
    im = axes[2].imshow(pred - obs, cmap="RdBu")
    axes[2].set_title("predicted - observed")
    fig.colorbar(im, ax=axes[2], shrink=0.8, label="mm")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return _png(fig)


def _table(metrics: dict[str, dict[str, float]]) -> str:
    keys = list(METRICS)  # core.metrics: the one list and order
    rows = [
        "<tr><th>test set</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>",
    ]
    names = {
        "test_one_step": "network, one step ahead",
        "test_iterative": "network, iterative (Fig. 8)",
        "persistence": "persistence (previous frame)",
    }
    for key, label in names.items():
        m = metrics.get(key) or {}
        if not m:
            continue
        cells = "".join(
            f"<td>{m[k]:.5g}</td>" if isinstance(m.get(k), float) and math.isfinite(m[k]) else "<td>-</td>"
            for k in keys
        )
        rows.append(f"<tr><td>{label}</td>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _backtest(hz: dict[str, Any] | None) -> str:
    """The iterative backtest (the way 'forecast' is used): MAE per horizon of the network,
    persistence and the trend line, the overall MAE and the skills; '' without a backtest."""
    if not hz or not hz.get("horizon"):
        return ""
    names = ("network", "persistence", "trend")

    def cell(v: Any) -> str:
        return f"<td>{v:.4g}</td>" if isinstance(v, float) and math.isfinite(v) else "<td>-</td>"

    head = "<tr><th>horizon (dates ahead)</th>" + "".join(f"<th>MAE {n}</th>" for n in names) + "</tr>"
    rows = [
        f"<tr><td>{h}</td>" + "".join(cell(hz[f"{n}_mae"][i]) for n in names) + "</tr>"
        for i, h in enumerate(hz["horizon"])
    ]
    rows.append("<tr><td>all horizons</td>" + "".join(cell(hz[f"{n}_overall_mae"]) for n in names) + "</tr>")
    skills = (
        f"Skill (1 - MAE / MAE of the baseline; above 0, the network is better): vs persistence "
        f"{hz['skill_vs_persistence']:.3f}, vs the trend over the last {hz.get('trend_window', '?')} "
        f"dates {hz['skill_vs_trend']:.3f}."
    )
    return "<table>" + head + "".join(rows) + "</table><p>" + html.escape(skills) + "</p>"


def write_report(path: str, meta: ModelMeta, one_step: np.ndarray, targets: np.ndarray, test: Any) -> str:
    backtest = _backtest(meta.backtest)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>CNN-PhLSTM training report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:3px 8px;text-align:right}</style></head><body>",
        f"<h1>Training report: {html.escape(meta.architecture)}</h1>",
        "<p>"
        + html.escape(
            f"{len(meta.source_dates)} acquisitions resampled to {len(meta.dates)} dates every "
            f"{meta.interval_days} days; time step {meta.time_step}; tile {meta.tile}; "
            f"{meta.train['epochs_run']} epochs on {meta.device} in {meta.train_seconds:.1f} s."
        )
        + "</p>",
        f"<h2>Test metrics ({len(meta.test_dates)} dates, {html.escape(meta.units)})</h2>",
        _table(meta.metrics),
        *(("<h2>Iterative backtest over the test dates, per horizon</h2>", backtest) if backtest else ()),
        "<h2>Loss and SSIM during training (Fig. 17)</h2>",
        f"<img src='{_curves(meta.history)}'>",
        "<h2>Minimum and maximum of the raw and predicted data (Fig. 18)</h2>",
        f"<img src='{_extremes(meta.extremes, meta.test_dates)}'>",
    ]
    if len(test):
        parts += [
            "<h2>Last test date</h2>",
            f"<img src='{_maps(one_step[-1], targets[-1], meta.test_dates[-1])}'>",
        ]
    parts.append("</body></html>")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
