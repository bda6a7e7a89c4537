"""Faults and deformation (paper §V-B-2, Fig. 16a): signed distance of pixels to fault lines,
deformation binned by distance on each side of a fault, and the step across it.

Faults are plain coordinate arrays in the raster's CRS: one fault = a list of parts, one part = an
(N, 2) array of vertices in the line's direction. The signed distance is negative on the LEFT of
the line's direction and positive on its right. Distances are computed with numpy only, in chunks
of pixels so that memory stays bounded whatever the raster size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .streaming import sorted_stats

Part = np.ndarray  # (N, 2) vertices, N >= 2
Fault = Sequence[Part]

CHUNK_ELEMENTS = 4_000_000  # pixels x segments handled at once


@dataclass
class Segments:
    """All segments of a set of faults, flattened, with what is needed to sign distances."""

    ax: np.ndarray
    ay: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    length2: np.ndarray
    fault: np.ndarray  # index of the fault of each segment
    # next segment of the same part (for the sign at a shared vertex), -1 at the part's end
    next_seg: np.ndarray
    prev_seg: np.ndarray


def _segments(faults: Sequence[Fault]) -> Segments:
    ax, ay, dx, dy, fid, nxt, prv = [], [], [], [], [], [], []
    n = 0
    for f, parts in enumerate(faults):
        for part in parts:
            v = np.asarray(part, dtype="float64")
            if v.ndim != 2 or v.shape[1] < 2:
                raise InputError(f"Fault #{f + 1}: a line part must be a list of (x, y) vertices.")
            v = v[:, :2]
            v = v[np.all(np.isfinite(v), axis=1)]
            # drop repeated vertices: zero-length segments have no direction
            keep = np.ones(len(v), dtype=bool)
            keep[1:] = np.any(np.diff(v, axis=0) != 0, axis=1)
            v = v[keep]
            if len(v) < 2:
                continue
            m = len(v) - 1
            ax.append(v[:-1, 0])
            ay.append(v[:-1, 1])
            dx.append(np.diff(v[:, 0]))
            dy.append(np.diff(v[:, 1]))
            fid.append(np.full(m, f))
            idx = np.arange(n, n + m)
            nxt.append(np.where(np.arange(m) < m - 1, idx + 1, -1))
            prv.append(np.where(np.arange(m) > 0, idx - 1, -1))
            n += m
    if n == 0:
        raise InputError("The fault layer holds no line with at least two distinct vertices.")
    cat = np.concatenate
    dxa, dya = cat(dx), cat(dy)
    return Segments(cat(ax), cat(ay), dxa, dya, dxa**2 + dya**2, cat(fid), cat(nxt), cat(prv))


def signed_distance(
    x: np.ndarray, y: np.ndarray, faults: Sequence[Fault], chunk_elements: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance from points (x, y) to the nearest fault.

    Returns (distance, fault index, alongside): distance < 0 on the left of the nearest fault's
    direction, > 0 on its right; `alongside` is False where the nearest point of the fault is one
    of its free ends (the point lies beyond the fault's tip, where "side" means little).
    At a vertex shared by two segments the side follows the bisector of their normals, so that
    bends do not flip the sign. Pixels x segments are handled `chunk_elements` at a time (default
    4 million, less when the memory budget is small: core.budget).
    """
    x = np.asarray(x, dtype="float64").ravel()
    y = np.asarray(y, dtype="float64").ravel()
    s = _segments(faults)
    nseg = len(s.ax)
    dist = np.empty(x.size)
    which = np.empty(x.size, dtype=np.int64)
    along = np.empty(x.size, dtype=bool)
    if chunk_elements is None:
        from .budget import working_bytes

        # about a dozen float64 (pixels x segments) temporaries live at once
        chunk_elements = min(CHUNK_ELEMENTS, working_bytes(24) // 8)
    chunk = max(1, int(chunk_elements) // nseg)
    ln = np.sqrt(s.length2)
    nx, ny = s.dy / ln, -s.dx / ln  # unit normal pointing to the RIGHT of the direction
    for i0 in range(0, x.size, chunk):
        px = x[i0 : i0 + chunk, None]
        py = y[i0 : i0 + chunk, None]
        rx, ry = px - s.ax, py - s.ay
        t = np.clip((rx * s.dx + ry * s.dy) / s.length2, 0.0, 1.0)
        ex, ey = rx - t * s.dx, ry - t * s.dy
        d2 = ex**2 + ey**2
        k = np.argmin(d2, axis=1)
        rows = np.arange(len(k))
        tk = t[rows, k]
        # side relative to the nearest segment; at a vertex, average with the neighbour's normal
        side = rx[rows, k] * nx[k] + ry[rows, k] * ny[k]
        at_end = tk >= 1.0
        at_start = tk <= 0.0
        nb = np.where(at_end, s.next_seg[k], np.where(at_start, s.prev_seg[k], -1))
        shared = nb >= 0
        if np.any(shared):
            kk = k[shared]
            vx = s.ax[kk] + tk[shared] * s.dx[kk]
            vy = s.ay[kk] + tk[shared] * s.dy[kk]
            qx = px[shared, 0] - vx
            qy = py[shared, 0] - vy
            bx = nx[kk] + nx[nb[shared]]
            by = ny[kk] + ny[nb[shared]]
            side[shared] = qx * bx + qy * by
        free_end = (at_end | at_start) & ~shared
        d = np.sqrt(d2[rows, k])
        dist[i0 : i0 + chunk] = np.where(side < 0, -d, d)
        which[i0 : i0 + chunk] = s.fault[k]
        along[i0 : i0 + chunk] = ~free_end | (d == 0)
    return dist, which, along


def pixel_centres(transform, width: int, height: int, window=None) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (x, y) of the pixel centres, each (rows, cols), of a grid or a window of it."""
    r0, c0, h, w = 0, 0, height, width
    if window is not None:
        r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    cols = np.arange(c0, c0 + w) + 0.5
    rows = np.arange(r0, r0 + h) + 0.5
    cc, rr = np.meshgrid(cols, rows)
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    return a * cc + b * rr + c, d * cc + e * rr + f


def distance_grid(
    faults: Sequence[Fault], transform, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`signed_distance` for every pixel centre of a grid: three (height, width) arrays."""
    x, y = pixel_centres(transform, width, height)
    d, f, a = signed_distance(x, y, faults)
    return d.reshape(height, width), f.reshape(height, width), a.reshape(height, width)


@dataclass
class FaultProfile:
    """Deformation near one fault: per side and distance bin, and the step across the fault."""

    fault: int
    rows: list[dict]  # side, bin, dist_from, dist_to, n, mean, median, std, min, max
    step: float  # mean(right, nearest bin) - mean(left, nearest bin)
    step_se: float  # standard error of the step
    n_left: int
    n_right: int


def n_bins(bin_width: float, max_distance: float) -> int:
    """Distance bins on each side of a fault; refuses bad bin widths and distances."""
    if not bin_width > 0:
        raise InputError(f"The bin width must be positive, not {bin_width}.")
    if not max_distance >= bin_width:
        raise InputError(
            f"The maximum distance ({max_distance}) must be at least one bin width ({bin_width})."
        )
    return int(np.ceil(max_distance / bin_width - 1e-9))


def fault_groups(
    values: np.ndarray,
    distance: np.ndarray,
    fault_index: np.ndarray,
    alongside: np.ndarray,
    bin_width: float,
    max_distance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels that count for the fault statistics and their group (fault, side, bin):
    ``group = (fault * 2 + side) * nbins + bin`` with side 0 = left, 1 = right. Returns (selected
    pixel indexes into the flattened arrays, groups, values)."""
    nbins = n_bins(bin_width, max_distance)
    v = np.asarray(values).ravel()
    d = np.asarray(distance, dtype="float64").ravel()
    f = np.asarray(fault_index).ravel()
    ok = np.isfinite(v) & np.isfinite(d) & np.asarray(alongside).ravel() & (np.abs(d) < max_distance)
    sel = np.flatnonzero(ok)
    ds = d[sel]
    b = np.minimum((np.abs(ds) // bin_width).astype(np.int64), nbins - 1)
    side = (ds >= 0).astype(np.int64)
    return sel, (f[sel].astype(np.int64) * 2 + side) * nbins + b, v[sel]


def profiles_from_groups(groups, n_faults: int, bin_width: float, max_distance: float) -> list[FaultProfile]:
    """Fault profiles from the values gathered per group (core.streaming.GroupValues)."""
    nbins = n_bins(bin_width, max_distance)
    out = []
    for k in range(n_faults):
        rows = []
        nearest = {}
        for s_, side in enumerate(("left", "right")):
            for i in range(nbins):
                st = sorted_stats(groups.pop((k * 2 + s_) * nbins + i))
                rows.append(
                    dict(
                        side=side,
                        bin=i,
                        dist_from=i * bin_width,
                        dist_to=min((i + 1) * bin_width, max_distance),
                        **st,
                    )
                )
                if i == 0:
                    nearest[side] = st
        lft, rgt = nearest["left"], nearest["right"]
        step = rgt["mean"] - lft["mean"] if lft["n"] and rgt["n"] else float("nan")
        if lft["n"] > 1 and rgt["n"] > 1:
            se = float(np.sqrt(lft["std"] ** 2 / lft["n"] + rgt["std"] ** 2 / rgt["n"]))
        else:
            se = float("nan")
        out.append(FaultProfile(k, rows, float(step), se, int(lft["n"]), int(rgt["n"])))
    return out


def fault_profiles(
    values: np.ndarray,
    distance: np.ndarray,
    fault_index: np.ndarray,
    alongside: np.ndarray,
    n_faults: int,
    bin_width: float,
    max_distance: float,
) -> list[FaultProfile]:
    """Bin `values` by distance to their nearest fault, on each side, up to `max_distance`.

    Pixels beyond a fault's tips (`alongside` False) and NaN values are left out. The step across
    a fault is the difference of the side means in the nearest bin (right minus left), with the
    standard error sqrt(s_l^2/n_l + s_r^2/n_r). (Whole arrays; core.controls streams a raster.)
    """
    from .streaming import GroupValues

    gv = GroupValues()
    _, groups, vals = fault_groups(values, distance, fault_index, alongside, bin_width, max_distance)
    gv.add(groups, vals)
    return profiles_from_groups(gv, n_faults, bin_width, max_distance)


def plot_controls(
    path: str,
    fault_samples: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
    profiles: Sequence[FaultProfile] = (),
    unit_boxes: Sequence[dict] = (),
    units: str = "mm",
) -> str:
    """Deformation vs signed distance per fault (points and bin means, step annotated) and a box
    plot per lithological unit. `fault_samples`: (name, distance, value) per fault; `unit_boxes`:
    one :func:`core.streaming.box_stats` per unit with values (the values themselves are not
    kept: a unit may cover the whole raster). Format by extension (png, svg, pdf); written
    atomically."""
    import os

    from matplotlib.figure import Figure

    from .stack import atomic_path

    panels = len(fault_samples) + (1 if unit_boxes else 0)
    ncol = min(3, max(1, panels))
    nrow = max(1, -(-panels // ncol))
    fig = Figure(figsize=(5 * ncol, 4 * nrow), dpi=100)
    p = 0
    for (name, dist, val), prof in zip(fault_samples, profiles, strict=True):
        p += 1
        ax = fig.add_subplot(nrow, ncol, p)
        ax.scatter(dist, val, s=2, alpha=0.25, color="0.5")
        for side, colour in (("left", "tab:blue"), ("right", "tab:red")):
            rs = [r for r in prof.rows if r["side"] == side and r["n"]]
            sign = -1 if side == "left" else 1
            ax.plot(
                [sign * (r["dist_from"] + r["dist_to"]) / 2 for r in rs],
                [r["mean"] for r in rs],
                "o-",
                color=colour,
                ms=3,
                label=f"{side} bin mean",
            )
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("signed distance to the fault (m, left < 0)")
        ax.set_ylabel(f"deformation ({units})")
        ax.set_title(f"{name}: step {prof.step:.1f} ± {prof.step_se:.1f} {units}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if unit_boxes:
        p += 1
        ax = fig.add_subplot(nrow, ncol, p)
        ax.bxp(list(unit_boxes), showfliers=False)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_ylabel(f"deformation ({units})")
        ax.set_title("Deformation per lithological unit", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=ext)
    return path
