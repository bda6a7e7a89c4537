"""Fault and lithology control of a deformation raster (paper §V-B, Fig. 16), streamed.

One pass over the raster in windows sized from the memory budget (core.budget): per window, the
signed distance of its pixel centres to the faults (written to the distance raster), the unit
labels of its pixels (rasterized for the window only), and the values gathered per (fault, side,
distance bin) and per unit. With a unit history, the window holds every band of the stack; else
only the analysed one. Statistics are computed at the end from each group's sorted values, so they
do not depend on the windows (core.streaming).

Memory: the gathered values of the pixels that enter a statistic (float32: at most one band's
worth for the units and one for the faults, as every pixel belongs to one unit and one nearest
fault) are set aside from the budget first; the windows get the rest. When the values alone would
take more than half the budget, InputError says so before anything is read. The statistics and the
plot's boxes are computed from each group's sorted float32 values without a float64 copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .faults import (
    CHUNK_ELEMENTS,
    Fault,
    FaultProfile,
    fault_groups,
    n_bins,
    pixel_centres,
    profiles_from_groups,
    signed_distance,
)
from .lithology import UnitGroups, UnitHistory
from .stack import StackInfo, StackWriter, budget_gdal_cache, iter_windows, read_stack
from .streaming import BottomK, box_stats, hash_keys, pixel_index

# float32 arrays of a window's size (one band) alive at once besides the bands read: the float64
# values, the pixel centres (x, y), the distance, the nearest fault (int64), the labels, the groups
EXTRA_BANDS = 16


@dataclass
class ControlsResult:
    profiles: list[FaultProfile] = field(default_factory=list)
    # per fault: (fault index, signed distance, value) of a random subsample for the plot
    fault_samples: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    unit_rows: list[dict] = field(default_factory=list)
    unit_boxes: list[dict] = field(default_factory=list)  # core.streaming.box_stats per unit
    history_means: np.ndarray | None = None  # (dates, units)
    history_valid: np.ndarray | None = None


@budget_gdal_cache
def analyse_controls(
    path: str,
    info: StackInfo,
    band: int,
    faults: Sequence[Fault] = (),
    unit_geometries: Sequence[dict] = (),
    units: Sequence[str] = (),
    bin_width: float = 100.0,
    max_distance: float = 1000.0,
    threshold: float = 10.0,
    distance_path: str | None = None,
    distance_units: str = "m",
    history: bool = False,
    plot_samples: int = 0,
    unit_values: bool = False,
    progress: Callable[[float], None] | None = None,
    mb: float | None = None,
    max_bytes: int | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
) -> tuple[ControlsResult, list[str]]:
    """Fault profiles (`faults`: lists of (N, 2) parts in the raster's CRS) and unit statistics
    (`unit_geometries` GeoJSON-like polygons with their `units`) of band `band` (0-based) of the
    raster at `path`; with `history`, the mean per unit and date of every band.

    `distance_path`: where to write the signed distance raster (faults only). `plot_samples`:
    points per fault kept for a plot; `unit_values`: compute each unit's box for a box plot.
    `scale`: metres per CRS unit along x and y (core.metric): distances, `bin_width` and
    `max_distance` are then metres on the ground (a geographic stack).
    Returns (result, unit names in first-seen order).
    """
    from rasterio import features
    from rasterio.windows import transform as window_transform

    from .budget import budget_for, budget_mb, working_bytes
    from .lithology import unit_codes
    from .streaming import GroupValues

    if faults:
        n_bins(bin_width, max_distance)  # refuses bad bins before anything is read
        if tuple(scale) != (1.0, 1.0):  # distances in metres: the faults' vertices in scaled units
            sxy = np.array(scale, dtype="float64")
            faults = [[np.asarray(part, dtype="float64") * sxy for part in f] for f in faults]
    shapes, names = unit_codes(unit_geometries, units) if unit_geometries else ([], [])
    history = history and bool(names) and info.count > 1
    bands = list(range(info.count)) if history else [band]
    read_bands = len(bands)
    usable = working_bytes(1.0, mb)
    # every pixel enters at most one unit group and one fault group (its nearest fault)
    reserve = 4 * info.width * info.height * (bool(names) + bool(faults))
    if reserve > usable / 2:
        need = budget_for(2 * reserve)
        raise InputError(
            f"The fault and unit statistics keep the value of every pixel they use: "
            f"{reserve / 2**20:.0f} MB for this {info.width} x {info.height} raster, more than half the "
            f"memory budget ({budget_mb(mb):.0f} MB) allows; raise the budget to at least {need} MB "
            "(plugin setting or DEFORMATION_FORECAST_MEMORY_MB), or clip the raster to the area of interest."
        )
    # the signed distances are computed before the window's bands are read, (pixels x segments)
    # at a time with about a dozen float64 temporaries: an eighth of what is left, at most
    avail = usable - reserve
    chunk_elements = max(4096, min(CHUNK_ELEMENTS, avail // (8 * 12 * 8)))
    windows = iter_windows(
        info,
        max_bytes if max_bytes is not None else int(avail * 7 / 8 / 1.25),
        bands=read_bands + EXTRA_BANDS,
    )

    res = ControlsResult()
    fault_values = GroupValues()
    unit_acc = UnitGroups(len(names)) if names else None
    hist = UnitHistory(len(names), info.count) if history else None
    samples = [BottomK(plot_samples) for _ in faults] if plot_samples else []
    writer = None
    if faults and distance_path:
        writer = StackWriter(
            distance_path,
            ["signed distance to fault"],
            info.crs,
            info.transform,
            info.width,
            info.height,
            units=distance_units,
            tags={"DESCRIPTION": "signed distance to the nearest fault, negative on the left"},
        )
    try:
        for k, win in enumerate(windows):
            h, w = int(win.height), int(win.width)
            if faults:  # before the bands are read: its temporaries never meet the window's pixels
                x, y = pixel_centres(info.transform, info.width, info.height, win)
                x, y = x * scale[0], y * scale[1]
                dist, nearest, along = signed_distance(x, y, faults, chunk_elements)
                del x, y
                if writer is not None:
                    writer.write(dist.reshape(1, h, w), window=win)
            block = read_stack(path, window=win, bands=bands)
            values = block[bands.index(band)]
            if faults:
                sel, groups, vals = fault_groups(values, dist, nearest, along, bin_width, max_distance)
                fault_values.add(groups, vals)
                if samples:
                    pix = pixel_index(win, info.width).ravel()[sel]
                    fsel = nearest[sel]
                    for f, bk in enumerate(samples):
                        m = fsel == f
                        bk.add(hash_keys(pix[m], f), d=dist[sel][m], v=vals[m].astype("float64"))
                del dist, nearest, along, sel, groups, vals
            if unit_acc is not None:
                labels = features.rasterize(
                    shapes,
                    out_shape=(h, w),
                    transform=window_transform(win, info.transform),
                    fill=0,
                    dtype="int32",
                    all_touched=False,
                )
                unit_acc.add(values, labels)
                if hist is not None:
                    hist.add(block, labels)
                del labels
            del block, values
            if progress is not None:
                progress((k + 1) / len(windows))
        if writer is not None:
            writer.close()
            writer = None
    except BaseException as e:
        if writer is not None:
            writer.abort(e)
        raise
    if faults:
        res.profiles = profiles_from_groups(fault_values, len(faults), bin_width, max_distance)
        for f, bk in enumerate(samples):
            got = bk.result()
            res.fault_samples.append((f, got.get("d", np.empty(0)), got.get("v", np.empty(0))))
    if unit_acc is not None:

        def keep(name, vals):
            if vals.size:
                res.unit_boxes.append(box_stats(vals, str(name)))

        area = info.res[0] * info.res[1]
        res.unit_rows = unit_acc.rows(names, area, threshold, keep if unit_values else None)
        if hist is not None:
            res.history_means, res.history_valid = hist.means(), hist.valid()
    return res, names
