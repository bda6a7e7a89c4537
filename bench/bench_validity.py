"""What the validity checks of issue 15 cost: reading a stack through read_stack (nodata, GDAL
masks, undeclared sentinels, units; core.validity) against a plain rasterio read, and writing one
through StackWriter (GDAL errors collected, fsync, read back; core.outputs) against a plain
rasterio write. Prints one table; `--small` runs a small stack (a smoke test)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import CRS, ORIGIN, RES  # noqa: E402


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    import rasterio
    from affine import Affine

    from deformation_forecast.core.stack import _profile, read_stack, write_stack
    from deformation_forecast.core.validity import sentinel_mask

    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    n, side = (20, 200) if args.small else (156, 800)
    rng = np.random.default_rng(0)
    data = rng.normal(0, 30, (n, side, side)).astype("float32")
    data[:, :10, :10] = -9999.0
    dates = [f"2020-01-{1 + i % 28:02d}" for i in range(n)]
    transform = Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    mb = data.nbytes / 2**20
    with tempfile.TemporaryDirectory(prefix="bench_validity_") as tmp:
        path = os.path.join(tmp, "s.tif")
        plain = os.path.join(tmp, "plain.tif")
        t_write = _best(lambda: write_stack(path, data, dates, CRS, transform), 2)

        def raw_write():
            with rasterio.open(plain, "w", **_profile(n, side, side, CRS, transform)) as dst:
                dst.write(data)

        t_raw_write = _best(raw_write, 2)

        def raw_read():
            with rasterio.open(path) as src:
                src.read(out_dtype="float32")

        t_raw_read = _best(raw_read)
        t_read = _best(lambda: read_stack(path))
        t_mask = _best(lambda: sentinel_mask(data))
    print(f"stack {n} x {side} x {side} float32 ({mb:,.0f} MB), best of 2-3 runs, machine shared")
    print(f"{'step':46s} {'s':>8s} {'MB/s':>8s}")
    for name, t in (
        ("plain rasterio read", t_raw_read),
        ("read_stack (nodata, masks, sentinels, units)", t_read),
        ("  of which sentinel_mask alone", t_mask),
        ("plain rasterio write", t_raw_write),
        ("write_stack (GDAL errors, fsync, read back)", t_write),
    ):
        print(f"{name:46s} {t:8.3f} {mb / t:8.0f}")


if __name__ == "__main__":
    main()
