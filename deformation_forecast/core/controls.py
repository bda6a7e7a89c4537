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

from collections.abc import Sequence
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
from .run import QUIET, Run
from .stack import StackInfo, StackReader, StackWriter, iter_windows
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


@dataclass(frozen=True)
class ControlOptions:
    """How to analyse: distance bins (`bin_width` up to `max_distance`), the unit share's
    `threshold`; `distance_path` where to write the signed distance raster (faults only) in
    `distance_units`; `history` the mean per unit and date of every band; `plot_samples` points per
    fault kept for a plot; `unit_values` each unit's box for a box plot; `scale` metres per CRS
    unit along x and y (core.metric: distances, `bin_width` and `max_distance` are then metres on
    the ground, a geographic stack); `max_bytes` float32 bytes of a window (tests and benchmarks;
    default: from the run's memory budget)."""

    bin_width: float = 100.0
    max_distance: float = 1000.0
    threshold: float = 10.0
    distance_path: str | None = None
    distance_units: str = "m"
    history: bool = False
    plot_samples: int = 0
    unit_values: bool = False
    scale: tuple[float, float] = (1.0, 1.0)
    max_bytes: int | None = None


def analyse_controls(
    path: str,
    info: StackInfo,
    band: int,
    faults: Sequence[Fault] = (),
    unit_geometries: Sequence[dict] = (),
    units: Sequence[str] = (),
    options: ControlOptions = ControlOptions(),
    run: Run = QUIET,
) -> tuple[ControlsResult, list[str]]:
    """Fault profiles (`faults`: lists of (N, 2) parts in the raster's CRS) and unit statistics
    (`unit_geometries` GeoJSON-like polygons with their `units`) of band `band` (0-based) of the
    raster at `path`, as `options` says (ControlOptions); `run` takes the progress (one step per
    window), the cancel button and the memory budget (GDAL's block cache sized from it).
    Returns (result, unit names in first-seen order).
    """
    from .budget import gdal_env
    from .lithology import unit_codes

    if faults:
        n_bins(options.bin_width, options.max_distance)  # refuses bad bins before anything is read
        if tuple(options.scale) != (1.0, 1.0):  # distances in metres: the faults' vertices in scaled units
            sxy = np.array(options.scale, dtype="float64")
            faults = [[np.asarray(part, dtype="float64") * sxy for part in f] for f in faults]
    shapes, names = unit_codes(unit_geometries, units) if unit_geometries else ([], [])
    history = options.history and bool(names) and info.count > 1
    bands = list(range(info.count)) if history else [band]
    windows, chunk_elements = _windows(info, len(bands), bool(faults), bool(names), options, run)
    state = _Pass(info, faults, names, history, options)
    with gdal_env(run.budget_mb), StackReader(path) as stack:
        state.open_writer()
        try:
            for k, win in enumerate(windows):
                state.add(stack, win, bands, band, shapes, chunk_elements)
                run.progress((k + 1) / len(windows))
                run.check_cancelled()
            state.close_writer()
        except BaseException as e:
            state.abort_writer(e)
            raise
    return state.result(), names


def _windows(
    info: StackInfo, read_bands: int, faults: bool, units: bool, options: ControlOptions, run: Run
) -> tuple[list, int]:
    """The windows and the pixels x segments of one distance chunk, from the budget left once the
    kept values are set aside; refuses a raster whose kept values alone need over half of it."""
    from .budget import budget_for

    usable = run.working_bytes(1.0)
    # every pixel enters at most one unit group and one fault group (its nearest fault)
    reserve = 4 * info.width * info.height * (units + faults)
    if reserve > usable / 2:
        need = budget_for(2 * reserve)
        raise InputError(
            f"The fault and unit statistics keep the value of every pixel they use: "
            f"{reserve / 2**20:.0f} MB for this {info.width} x {info.height} raster, more than half the "
            f"memory budget ({run.mb:.0f} MB) allows; raise the budget to at least {need} MB "
            "(plugin setting or DEFORMATION_FORECAST_MEMORY_MB), or clip the raster to the area of interest."
        )
    # the signed distances are computed before the window's bands are read, (pixels x segments)
    # at a time with about a dozen float64 temporaries: an eighth of what is left, at most
    avail = usable - reserve
    chunk_elements = max(4096, min(CHUNK_ELEMENTS, avail // (8 * 12 * 8)))
    max_bytes = options.max_bytes if options.max_bytes is not None else int(avail * 7 / 8 / 1.25)
    windows = iter_windows(info, max_bytes, bands=read_bands + EXTRA_BANDS, mb=run.budget_mb)
    return windows, chunk_elements


class _Pass:
    """The accumulators of one pass over the raster's windows."""

    def __init__(self, info: StackInfo, faults, names: list[str], history: bool, options: ControlOptions):
        from .streaming import GroupValues

        self.info, self.faults, self.names, self.options = info, faults, names, options
        self.fault_values = GroupValues()
        self.unit_acc = UnitGroups(len(names)) if names else None
        self.hist = UnitHistory(len(names), info.count) if history else None
        n = options.plot_samples
        self.samples = [BottomK(n) for _ in faults] if n else []
        self.writer: StackWriter | None = None

    def open_writer(self) -> None:
        info, o = self.info, self.options
        if self.faults and o.distance_path:
            self.writer = StackWriter(
                o.distance_path,
                ["signed distance to fault"],
                info.crs,
                info.transform,
                info.width,
                info.height,
                units=o.distance_units,
                tags={"DESCRIPTION": "signed distance to the nearest fault, negative on the left"},
            )

    def close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def abort_writer(self, e: BaseException) -> None:
        if self.writer is not None:
            self.writer.abort(e)

    def add(self, stack: StackReader, win, bands: list[int], band: int, shapes, chunk_elements: int) -> None:
        """Gather one window's values per fault group and per unit."""
        info, o = self.info, self.options
        h, w = int(win.height), int(win.width)
        if self.faults:  # before the bands are read: its temporaries never meet the window's pixels
            x, y = pixel_centres(info.transform, info.width, info.height, win)
            x, y = x * o.scale[0], y * o.scale[1]
            dist, nearest, along = signed_distance(x, y, self.faults, chunk_elements)
            del x, y
            if self.writer is not None:
                self.writer.write(dist.reshape(1, h, w), window=win)
        block = stack.read(win, bands)
        values = block[bands.index(band)]
        if self.faults:
            self._add_faults(win, values, dist, nearest, along)
            del dist, nearest, along
        if self.unit_acc is not None:
            from rasterio import features
            from rasterio.windows import transform as window_transform

            labels = features.rasterize(
                shapes,
                out_shape=(h, w),
                transform=window_transform(win, info.transform),
                fill=0,
                dtype="int32",
                all_touched=False,
            )
            self.unit_acc.add(values, labels)
            if self.hist is not None:
                self.hist.add(block, labels)

    def _add_faults(self, win, values, dist, nearest, along) -> None:
        o = self.options
        sel, groups, vals = fault_groups(values, dist, nearest, along, o.bin_width, o.max_distance)
        self.fault_values.add(groups, vals)
        if self.samples:
            pix = pixel_index(win, self.info.width).ravel()[sel]
            fsel = nearest[sel]
            for f, bk in enumerate(self.samples):
                m = fsel == f
                bk.add(hash_keys(pix[m], f), d=dist[sel][m], v=vals[m].astype("float64"))

    def result(self) -> ControlsResult:
        res = ControlsResult()
        o = self.options
        if self.faults:
            res.profiles = profiles_from_groups(
                self.fault_values, len(self.faults), o.bin_width, o.max_distance
            )
            for f, bk in enumerate(self.samples):
                got = bk.result()
                res.fault_samples.append((f, got.get("d", np.empty(0)), got.get("v", np.empty(0))))
        if self.unit_acc is not None:

            def keep(name, vals):
                if vals.size:
                    res.unit_boxes.append(box_stats(vals, str(name)))

            area = self.info.res[0] * self.info.res[1]
            res.unit_rows = self.unit_acc.rows(self.names, area, o.threshold, keep if o.unit_values else None)
            if self.hist is not None:
                res.history_means, res.history_valid = self.hist.means(), self.hist.valid()
        return res
