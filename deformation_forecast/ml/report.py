"""The training report: one HTML file with the loss/SSIM curves (Fig. 17), the min/max trends
(Fig. 18), the test metrics and a map of the last test date; images embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np

from ..core.stack import atomic_path
from .modelfile import ModelMeta


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _curves(history: dict[str, list[float]]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
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
    import matplotlib.pyplot as plt

    dates = np.array(ext["dates"], dtype="datetime64[D]")
    td = np.array(test_dates, dtype="datetime64[D]")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
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
    import matplotlib.pyplot as plt

    lo, hi = np.nanmin(obs), np.nanmax(obs)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
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
    keys = ["MAE", "MSE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2"]
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


def write_report(path: str, meta: ModelMeta, one_step: np.ndarray, targets: np.ndarray, test: Any) -> str:
    import matplotlib

    matplotlib.use("Agg")
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
