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


def rasterize_units(
    geometries: Sequence[dict], units: Sequence[str], transform, width: int, height: int
) -> tuple[np.ndarray, list[str]]:
    """Burn polygons into an int32 label array: 0 = no unit, i = `names[i - 1]`.

    Polygons that share a unit name share a label. Returns (labels, names), names in first-seen order.
    """
    from rasterio import features

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
    """
    v = np.asarray(values, dtype="float64").ravel()
    lab = np.asarray(labels).ravel()
    if v.shape != lab.shape:
        raise ValueError("values and labels differ in shape")
    limit = -abs(float(threshold))
    nan = float("nan")
    rows = []
    for i, name in enumerate(names, start=1):
        in_unit = lab == i
        vals = v[in_unit]
        vals = vals[np.isfinite(vals)]
        n_all = int(np.count_nonzero(in_unit))
        row = dict(unit=name, pixels=n_all, valid=int(vals.size), area=n_all * float(pixel_area))
        if vals.size:
            p5, med, p95 = np.percentile(vals, [5, 50, 95])
            row.update(
                mean=float(vals.mean()),
                median=float(med),
                min=float(vals.min()),
                p5=float(p5),
                p95=float(p95),
                std=float(vals.std(ddof=1)) if vals.size > 1 else nan,
                share_subsiding=float(np.count_nonzero(vals < limit) / vals.size),
            )
        else:
            row.update(mean=nan, median=nan, min=nan, p5=nan, p95=nan, std=nan, share_subsiding=nan)
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
