"""Lengths given in metres on the ground, whatever the stack's CRS.

A length parameter (a radius, a bin width, a pixel size) means metres. On a projected CRS in metres
nothing changes; on one in feet (or another linear unit) the unit's factor applies; on a geographic
CRS (EPSG:4326: every LiCSBAS product, many MintPy ones) coordinates are scaled by the local metric
scale at the stack's centre: metres per degree of longitude and of latitude on the WGS84 ellipsoid
(radii of curvature in the prime vertical and the meridian). Over a scene of a few tens of km the
scale changes by well under 1 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


@dataclass(frozen=True)
class GroundScale:
    """Metres per CRS unit along x and y (kx, ky) and what the log should say about it."""

    kx: float = 1.0
    ky: float = 1.0
    note: str = ""

    @property
    def identity(self) -> bool:
        return self.kx == 1.0 and self.ky == 1.0


def metres_per_degree(lat: float) -> tuple[float, float]:
    """(metres per degree of longitude, metres per degree of latitude) at latitude `lat` on WGS84."""
    phi = math.radians(lat)
    w = math.sqrt(1.0 - WGS84_E2 * math.sin(phi) ** 2)
    n = WGS84_A / w  # prime vertical radius
    m = WGS84_A * (1.0 - WGS84_E2) / w**3  # meridian radius
    return math.radians(1.0) * n * math.cos(phi), math.radians(1.0) * m


def ground_scale(crs, bounds: tuple[float, float, float, float]) -> GroundScale:
    """The scale of a stack with `crs` (rasterio CRS or None) and `bounds` (xmin, ymin, xmax, ymax)."""
    if crs is None:
        return GroundScale()
    if crs.is_geographic:
        lat = 0.5 * (bounds[1] + bounds[3])
        kx, ky = metres_per_degree(lat)
        return GroundScale(
            kx,
            ky,
            f"The stack is in geographic coordinates ({crs.to_string()}): lengths are metres on the "
            f"ground, converted with the local scale at latitude {lat:.4f} ({kx:.1f} m per degree of "
            f"longitude, {ky:.1f} m per degree of latitude).",
        )
    try:
        name, factor = crs.linear_units_factor
    except Exception:  # noqa: BLE001 - rasterio raises CRSError for CRSs without a linear unit
        return GroundScale()
    if abs(factor - 1.0) > 1e-12:
        return GroundScale(
            factor,
            factor,
            f"The stack's CRS is in {name} ({factor:g} m each): lengths are metres, converted.",
        )
    return GroundScale()
