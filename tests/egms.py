"""An EGMS-layout point CSV (European Ground Motion Service, L2a/L2b/L3 CSV: pid, mp_type, latitude,
longitude, easting, northing (ETRS89-LAEA, EPSG:3035), height, ..., mean_velocity,
mean_velocity_std, acceleration, acceleration_std, seasonality, seasonality_std, then one column per
date YYYYMMDD in mm), for the tests."""

from __future__ import annotations

import numpy as np

HEADER = [
    "pid",
    "mp_type",
    "latitude",
    "longitude",
    "easting",
    "northing",
    "height",
    "height_wgs84",
    "line",
    "pixel",
    "rmse",
    "temporal_coherence",
    "amplitude_dispersion",
    "incidence_angle",
    "track_angle",
    "los_east",
    "los_north",
    "los_up",
    "mean_velocity",
    "mean_velocity_std",
    "acceleration",
    "acceleration_std",
    "seasonality",
    "seasonality_std",
]
DATES = ["20200105", "20200117", "20200129", "20200210"]


def write_egms(path, nx: int = 6, ny: int = 5, step_deg: float = 0.001, lonlat_only: bool = False):
    """A lattice of nx x ny points near 10 E 52 N; displacement = point index along x (mm) x date
    index. Returns (lon, lat, easting, northing) arrays."""
    from rasterio.warp import transform

    lon, lat = np.meshgrid(10.0 + step_deg * np.arange(nx), 52.0 + step_deg * np.arange(ny))
    lon, lat = lon.ravel(), lat.ravel()
    e, n = (np.asarray(v) for v in transform("EPSG:4326", "EPSG:3035", lon.tolist(), lat.tolist()))
    header = [h for h in HEADER if not (lonlat_only and h in ("easting", "northing"))] + DATES
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        for k in range(lon.size):
            i = k % nx
            row = {
                "pid": f"PID{k:05d}", "mp_type": "PS", "latitude": f"{lat[k]:.7f}",
                "longitude": f"{lon[k]:.7f}", "easting": f"{e[k]:.2f}", "northing": f"{n[k]:.2f}",
            }  # fmt: skip
            cells = [row.get(h, "0.5") for h in header[: len(header) - len(DATES)]]
            cells += [f"{float(i * t):.1f}" for t in range(len(DATES))]
            f.write(",".join(cells) + "\n")
    return lon, lat, e, n
