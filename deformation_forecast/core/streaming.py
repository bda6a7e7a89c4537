"""Pieces shared by the algorithms that stream a stack window by window (issue 8).

A random subsample that does not depend on how the stack was cut into windows: every item (a
pixel, a (pixel, date) pair) gets a pseudo-random key from its global index, and the `k` items with
the smallest keys are kept (a "bottom-k" sample: uniform, without replacement). Whatever the window
size, hence whatever the memory budget, the same items are chosen, so a result computed with a tiny
budget equals the one computed with a large one.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hash_keys(index, seed: int = 0) -> np.ndarray:
    """SplitMix64 of the integer `index` (array) mixed with `seed`: well spread uint64 keys."""
    with np.errstate(over="ignore"):
        z = np.asarray(index, dtype=np.uint64) + np.uint64(seed % 2**63) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def pixel_index(window, width: int) -> np.ndarray:
    """Global row-major pixel indexes (rows, cols) of a rasterio window of a raster `width` wide."""
    r0, c0 = int(window.row_off), int(window.col_off)
    rows = np.arange(r0, r0 + int(window.height), dtype=np.int64)[:, None]
    cols = np.arange(c0, c0 + int(window.width), dtype=np.int64)[None, :]
    return rows * int(width) + cols


class BottomK:
    """The `k` items with the smallest keys among all those added: a uniform random sample
    without replacement that does not depend on the order or the grouping of the additions.

    ``add(keys, a=..., b=...)`` adds items with columns of the same length; ``result()`` returns
    the kept columns sorted by key. Memory: at most `k` items plus one addition.
    """

    def __init__(self, k: int):
        self.k = max(0, int(k))
        self.keys = np.empty(0, dtype=np.uint64)
        self.columns: dict[str, np.ndarray] = {}

    @property
    def size(self) -> int:
        return int(self.keys.size)

    def threshold(self) -> np.uint64:
        """Keys at or above this cannot enter (the largest kept key once `k` are kept)."""
        if self.keys.size >= self.k and self.k:
            return self.keys.max()
        return np.uint64(np.iinfo(np.uint64).max)

    def add(self, keys: np.ndarray, **columns: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.uint64).ravel()
        if self.k == 0 or keys.size == 0:
            return
        if self.keys.size >= self.k:  # only keys below the current k-th can enter
            keep = keys < self.keys.max()
            if not keep.any():
                return
            keys = keys[keep]
            columns = {n: np.asarray(c)[keep] for n, c in columns.items()}
        if not self.columns:
            self.columns = {n: np.asarray(c)[:0] for n, c in columns.items()}
        keys = np.concatenate([self.keys, keys])
        cols = {n: np.concatenate([self.columns[n], np.asarray(c)]) for n, c in columns.items()}
        if keys.size > self.k:
            part = np.argpartition(keys, self.k - 1)[: self.k]
            keys = keys[part]
            cols = {n: c[part] for n, c in cols.items()}
        self.keys, self.columns = keys, cols

    def result(self) -> dict[str, np.ndarray]:
        order = np.argsort(self.keys, kind="stable")
        return {n: c[order] for n, c in self.columns.items()}


class GroupValues:
    """Values collected per integer group, window by window (in their dtype: float32 as read from
    a raster).

    ``pop(g)`` returns group `g`'s values sorted, as float64: sorted values make every statistic
    (mean, median, percentiles, std) independent of the order of the windows, so a result computed
    with a tiny memory budget equals the one computed with a large one.
    """

    def __init__(self) -> None:
        self.chunks: dict[int, list[np.ndarray]] = {}
        self.nbytes = 0

    def add(self, groups: np.ndarray, values: np.ndarray) -> None:
        groups = np.asarray(groups).ravel()
        values = np.asarray(values).ravel()  # float32 from a raster: kept so (half of float64)
        if groups.size == 0:
            return
        order = np.argsort(groups, kind="stable")
        g, v = groups[order], values[order]
        uniq, starts = np.unique(g, return_index=True)
        ends = np.append(starts[1:], g.size)
        for u, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=True):
            self.chunks.setdefault(int(u), []).append(v[a:b].copy())
        self.nbytes += v.nbytes

    def pop(self, group: int) -> np.ndarray:
        """Group `group`'s values, sorted, in the dtype they were added in (float32 from a raster:
        a float64 copy of a unit covering the whole raster would double the memory; the statistics
        below accumulate in float64 chunk by chunk instead)."""
        parts = self.chunks.pop(int(group), [])
        if not parts:
            return np.empty(0, dtype=np.float32)
        arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
        del parts
        self.nbytes -= arr.nbytes
        arr.sort()
        return arr


_CHUNK = 1 << 20


def sorted_percentiles(v: np.ndarray, q) -> np.ndarray:
    """Percentiles `q` (0-100) of the sorted values `v`, numpy's default ("linear") definition,
    without the copy :func:`numpy.percentile` makes."""
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    n = int(v.size)
    if n == 0:
        return np.full(q.shape, np.nan)
    h = (n - 1) * q / 100.0
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    a, b = v[lo].astype(np.float64), v[hi].astype(np.float64)
    return a + (h - lo) * (b - a)


def count_below(v: np.ndarray, x: float) -> int:
    """How many of the sorted values `v` are strictly below `x`, exactly as ``(v < x).sum()`` with
    `v` up-cast (the float32 nearest to `x` may lie on either side of it)."""
    t = np.asarray(x, dtype=v.dtype)
    return int(np.searchsorted(v, t, side="right" if float(t) < x else "left"))


def sorted_stats(v: np.ndarray) -> dict[str, float]:
    """n, mean, std (ddof 1), min, max and median of the sorted values `v`, accumulated in float64
    over chunks of a million values (no float64 copy of `v`); NaN where undefined."""
    n = int(v.size)
    nan = float("nan")
    if n == 0:
        return dict(n=0, mean=nan, median=nan, std=nan, min=nan, max=nan)
    total = sum(float(v[i : i + _CHUNK].sum(dtype=np.float64)) for i in range(0, n, _CHUNK))
    mean = total / n
    ss = 0.0
    for i in range(0, n, _CHUNK):
        d = v[i : i + _CHUNK].astype(np.float64) - mean
        ss += float(d @ d)
    return dict(
        n=n,
        mean=mean,
        median=float(sorted_percentiles(v, 50.0)[0]),
        std=float(np.sqrt(ss / (n - 1))) if n > 1 else nan,
        min=float(v[0]),
        max=float(v[-1]),
    )


def box_stats(v: np.ndarray, label: str = "", whis: float = 1.5) -> dict:
    """What :meth:`matplotlib.axes.Axes.bxp` draws for the sorted values `v` (quartiles, whiskers
    at the furthest values within `whis` IQR of the box, the mean), as
    :func:`matplotlib.cbook.boxplot_stats` would compute it, without keeping the values."""
    q1, med, q3 = sorted_percentiles(v, [25, 50, 75])
    iqr = q3 - q1
    lo = int(np.searchsorted(v, q1 - whis * iqr, side="left"))
    hi = int(np.searchsorted(v, q3 + whis * iqr, side="right")) - 1
    return dict(
        label=label,
        med=float(med),
        q1=float(q1),
        q3=float(q3),
        whislo=float(v[lo]) if lo < v.size and v[lo] <= q1 else float(q1),
        whishi=float(v[hi]) if hi >= 0 and v[hi] >= q3 else float(q3),
        mean=sorted_stats(v)["mean"],
        fliers=np.empty(0),
    )
