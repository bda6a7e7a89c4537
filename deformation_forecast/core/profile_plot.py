"""The Fig. 11-style profile chart: one panel per profile, one curve per date, colour ramp in time.

Draws on a `matplotlib.figure.Figure` given by the caller (an Agg figure for files, the dock's Qt
canvas figure in the GUI); pyplot and its global state are never used, so nothing leaks into QGIS.
matplotlib is imported lazily: the rest of the core does not need it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

import numpy as np

from .dates import to_decimal_year
from .errors import InputError
from .profiles import Profile
from .stack import atomic_path

CMAP = "viridis"
CURVE_GID = "profile-curve"  # the gid of every profile curve (count them with it)


def default_date_indexes(n: int, max_curves: int = 12) -> list[int]:
    """At most `max_curves` evenly spread indexes of `n` dates, always the first and the last."""
    if n <= max_curves:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, max_curves)})


def _with_breaks(p: Profile, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN between parts so a multipart line is not drawn across its gaps."""
    cut = np.flatnonzero(np.diff(p.part)) + 1
    if cut.size == 0:
        return p.distance, values
    return np.insert(p.distance, cut, np.nan), np.insert(values, cut, np.nan)


def draw_profiles(
    fig,
    profiles: Sequence[Profile],
    dates: Sequence[dt.date],
    date_indexes: Sequence[int] | None = None,
    units: str = "mm",
    distance_units: str = "m",
    title: str | None = None,
) -> int:
    """Draw the chart on `fig` (cleared first); returns the number of curves drawn.

    `date_indexes` index `dates` and the rows of each profile's values (default: all).
    """
    import matplotlib
    from matplotlib import cm, colors

    fig.clear()
    idx = list(range(len(dates))) if date_indexes is None else list(date_indexes)
    if not profiles or not idx:
        ax = fig.add_subplot(111)
        ax.text(0.5, 0.5, "No profile or no date selected", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return 0
    years = to_decimal_year([dates[i] for i in idx])
    lo, hi = float(years.min()), float(years.max())
    norm = colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    cmap = matplotlib.colormaps[CMAP]
    n = len(profiles)
    axes = fig.subplots(n, 1, squeeze=False, sharex=False)[:, 0]
    curves = 0
    for ax, p in zip(axes, profiles, strict=False):
        for k, year in zip(idx, years, strict=False):
            dist, vals = _with_breaks(p, p.values[k])
            ax.plot(dist, vals, color=cmap(norm(year)), lw=1.0, label=dates[k].isoformat(), gid=CURVE_GID)
            curves += 1
        ax.axhline(0.0, color="0.6", lw=0.5, zorder=0)
        ax.set_title(f"Profile {p.name}", fontsize=9, loc="left")
        ax.set_ylabel(f"Deformation ({units})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, lw=0.3, alpha=0.5)
    axes[-1].set_xlabel(f"Distance along the profile ({distance_units})", fontsize=8)
    if len(idx) <= 8:
        axes[0].legend(fontsize=6, ncol=4, loc="best")
    else:
        sm = cm.ScalarMappable(norm=norm, cmap=cmap)
        sm.set_array([])
        cb = fig.colorbar(sm, ax=list(axes), fraction=0.04, pad=0.02)
        cb.set_label("Acquisition date (year)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return curves


def save_profile_plot(
    path: str,
    profiles: Sequence[Profile],
    dates: Sequence[dt.date],
    date_indexes: Sequence[int] | None = None,
    units: str = "mm",
    distance_units: str = "m",
    dpi: int = 150,
) -> int:
    """Write the chart to `path` (.png, .svg or .pdf by extension); returns the number of curves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ("png", "svg", "pdf"):
        raise InputError(f"OUTPUT_PLOT: {path!r} must end with .png, .svg or .pdf.")
    fig = Figure(figsize=(8.0, 2.4 * max(1, len(profiles)) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    curves = draw_profiles(fig, profiles, dates, date_indexes, units, distance_units)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=ext, dpi=dpi)
    return curves
