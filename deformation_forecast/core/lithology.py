"""Lithology and deformation (paper §V-B-3, Fig. 16b): zonal statistics of deformation per
lithological unit, from a label array rasterized on the deformation grid.

The polygons arrive as GeoJSON-like geometry dicts in the raster's CRS (the Processing adapter
reprojects them); `rasterize_units` burns them with rasterio.features.rasterize (a pixel belongs to
a unit when its centre falls inside; later polygons win where they overlap).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError


def unit_codes(geometries: Sequence[dict], units: Sequence[str]) -> tuple[list[tuple[dict, int]], list[str]]:
    """(geometry, label) shapes to burn and the unit names: 0 = no unit, i = `names[i - 1]`.

    Polygons that share a unit name share a label; names in first-seen order.
    """
    if len(geometries) != len(units):
        raise ValueError("one unit per geometry")
    names: list[str] = []
    code: dict[str, int] = {}
    shapes = []
    for g, u in zip(geometries, units, strict=True):
        if g is None:
            continue
        key = str(u)
        if key not in code:
            names.append(key)
            code[key] = len(names)
        shapes.append((g, code[key]))
    if not shapes:
        raise InputError("The lithology layer holds no polygon.")
    return shapes, names


def rasterize_units(
    geometries: Sequence[dict], units: Sequence[str], transform, width: int, height: int
) -> tuple[np.ndarray, list[str]]:
    """Burn polygons into an int32 label array: 0 = no unit, i = `names[i - 1]`.

    Polygons that share a unit name share a label. Returns (labels, names), names in first-seen
    order. (A whole grid; core.controls burns one window at a time.)
    """
    from rasterio import features

    shapes, names = unit_codes(geometries, units)
    labels = features.rasterize(
        shapes, out_shape=(height, width), transform=transform, fill=0, dtype="int32", all_touched=False
    )
    return labels, names


def unit_stats(
    values: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    pixel_area: float,
    threshold: float = 10.0,
) -> list[dict]:
    """Statistics of `values` (one band, NaN = incoherent) per unit label (1..len(names)).

    Each row: unit, pixels (all pixels of the unit), valid (coherent ones), area (pixels x pixel
    area), mean, median, min, p5, p95, std, and share_subsiding: the share of the unit's coherent
    area where the value is below -|threshold| (subsiding more than `threshold` mm).
    (Whole arrays; core.controls streams a raster with :class:`UnitGroups`.)
    """
    v = np.asarray(values).ravel()
    lab = np.asarray(labels).ravel()
    if v.shape != lab.shape:
        raise ValueError("values and labels differ in shape")
    acc = UnitGroups(len(names))
    acc.add(v, lab)
    return acc.rows(names, pixel_area, threshold)


class UnitGroups:
    """The values of each unit (and its pixel count), gathered window by window."""

    def __init__(self, n_units: int):
        from .streaming import GroupValues

        self.n_units = n_units
        self.pixels = np.zeros(n_units + 1, dtype=np.int64)
        self.values = GroupValues()

    def add(self, values: np.ndarray, labels: np.ndarray) -> None:
        v = np.asarray(values).ravel()
        lab = np.asarray(labels).ravel()
        n = self.n_units + 1
        self.pixels += np.bincount(lab[(lab > 0) & (lab < n)], minlength=n)[:n]
        ok = (lab > 0) & (lab < n) & np.isfinite(v)
        self.values.add(lab[ok], v[ok])

    def rows(self, names: Sequence[str], pixel_area: float, threshold: float = 10.0, keep=None) -> list[dict]:
        """One row per unit (see :func:`unit_stats`); `keep(unit, values)` receives each unit's
        sorted values (e.g. for a plot's box) before they are dropped."""
        from .streaming import count_below, sorted_percentiles, sorted_stats

        limit = -abs(float(threshold))
        nan = float("nan")
        rows = []
        for i, name in enumerate(names, start=1):
            vals = self.values.pop(i)
            n_all = int(self.pixels[i])
            row = dict(unit=name, pixels=n_all, valid=int(vals.size), area=n_all * float(pixel_area))
            if vals.size:
                p5, p95 = sorted_percentiles(vals, [5, 95])
                st = sorted_stats(vals)
                row.update(
                    mean=st["mean"],
                    median=st["median"],
                    min=st["min"],
                    p5=float(p5),
                    p95=float(p95),
                    std=st["std"],
                    share_subsiding=count_below(vals, limit) / vals.size,
                )
            else:
                row.update(mean=nan, median=nan, min=nan, p5=nan, p95=nan, std=nan, share_subsiding=nan)
            if keep is not None:
                keep(name, vals)
            rows.append(row)
        return rows


class UnitHistory:
    """Mean per unit and date, accumulated window by window over a stack (bounded memory)."""

    def __init__(self, n_units: int, n_dates: int):
        self.sums = np.zeros((n_dates, n_units + 1))
        self.counts = np.zeros((n_dates, n_units + 1), dtype=np.int64)

    def add(self, block: np.ndarray, labels: np.ndarray) -> None:
        """`block` (dates, rows, cols) and the matching `labels` (rows, cols)."""
        lab = np.asarray(labels).ravel()
        n = self.sums.shape[1]
        for b in range(block.shape[0]):
            v = block[b].ravel().astype("float64")
            ok = np.isfinite(v) & (lab > 0)
            self.sums[b] += np.bincount(lab[ok], weights=v[ok], minlength=n)[:n]
            self.counts[b] += np.bincount(lab[ok], minlength=n)[:n]

    def means(self) -> np.ndarray:
        """(dates, units) mean values, NaN where a unit has no coherent pixel at a date."""
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.sums / self.counts
        return m[:, 1:]

    def valid(self) -> np.ndarray:
        return self.counts[:, 1:]
