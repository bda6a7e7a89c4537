"""Acquisition dates: parsing from band descriptions, file names and field names, and
conversion between dates and decimal years / day offsets."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable, Sequence

import numpy as np

from .errors import InputError

# 8 digits YYYYMMDD or ISO YYYY-MM-DD (also with / or _ separators), not inside longer digit runs.
_COMPACT = re.compile(r"(?<!\d)((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")
_ISO = re.compile(r"(?<!\d)((?:19|20)\d{2})[-/_.](0[1-9]|1[0-2])[-/_.](0[1-9]|[12]\d|3[01])(?!\d)")
# Field names that carry one date each: D20170903, d20170903, 20170903, d_20170903, D_2017-09-03
_FIELD = re.compile(r"^(?:[dD]_?)?((?:19|20)\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])$")


def _make(y: str, m: str, d: str) -> dt.date | None:
    try:
        return dt.date(int(y), int(m), int(d))
    except ValueError:
        return None


def parse_date(text: str) -> dt.date | None:
    """The first date found in `text` (band description, file name), or None.

    Accepts ``YYYYMMDD`` and ``YYYY-MM-DD`` (also ``/``, ``_`` or ``.`` as separator) anywhere
    in the text, e.g. ``S1_cum_20170903_mm.tif`` or ``2017-09-03T00:00:00``.
    """
    if not text:
        return None
    for rx in (_ISO, _COMPACT):
        for m in rx.finditer(text):
            d = _make(*m.groups())
            if d is not None:
                return d
    return None


def parse_field_date(name: str) -> dt.date | None:
    """The date of a per-date field name (``D20170903``, ``20170903``, ``d_20170903``), or None."""
    m = _FIELD.match(name.strip())
    return _make(*m.groups()) if m else None


def date_fields(names: Iterable[str]) -> list[tuple[str, dt.date]]:
    """The (field name, date) pairs among `names`, in the order of the names."""
    out = []
    for n in names:
        d = parse_field_date(n)
        if d is not None:
            out.append((n, d))
    return out


def parse_dates(texts: Sequence[str], what: str = "band descriptions") -> list[dt.date]:
    """Parse one date from each text; raise InputError naming the first that has none."""
    dates = []
    for i, t in enumerate(texts):
        d = parse_date(t or "")
        if d is None:
            raise InputError(
                f"No date (YYYYMMDD or YYYY-MM-DD) found in {what} #{i + 1}: {t!r}. "
                "Put the acquisition date into the band description or file name, "
                "or give the dates explicitly."
            )
        dates.append(d)
    return dates


def check_increasing(dates: Sequence[dt.date], what: str = "the stack") -> None:
    """Raise InputError if dates repeat or are not sorted."""
    for a, b in zip(dates, dates[1:], strict=False):
        if b == a:
            raise InputError(f"Duplicate date {a.isoformat()} in {what}; each band needs its own date.")
        if b < a:
            raise InputError(
                f"Dates of {what} are not in time order ({a.isoformat()} before {b.isoformat()}); "
                "sort the bands by date."
            )


def check_observed(dates: Sequence[dt.date], what: str = "the stack", today: dt.date | None = None) -> None:
    """Raise InputError if an observation date lies after `today` (default: the system date, plus one
    day for time zones): such a date is a mis-parsed label, not an acquisition."""
    limit = (today or dt.date.today()) + dt.timedelta(days=1)
    late = [d for d in dates if d is not None and d > limit]
    if late:
        raise InputError(
            f"{what} has {len(late)} date(s) in the future (first {late[0].isoformat()}, today is "
            f"{limit - dt.timedelta(days=1)}): observations cannot be dated later than today. Check the "
            "dates in the band descriptions or file names (YYYYMMDD); a forecast stack is not an "
            "observation input."
        )


def to_ordinal(dates: Sequence[dt.date]) -> np.ndarray:
    """Days since 0001-01-01 as float64 (differences are days)."""
    return np.array([d.toordinal() for d in dates], dtype="float64")


def to_decimal_year(dates: Sequence[dt.date]) -> np.ndarray:
    """Decimal years (2017.67...), exact within each calendar year."""
    out = []
    for d in dates:
        start = dt.date(d.year, 1, 1).toordinal()
        length = dt.date(d.year + 1, 1, 1).toordinal() - start
        out.append(d.year + (d.toordinal() - start) / length)
    return np.array(out, dtype="float64")


def format_date(d: dt.date) -> str:
    """The form written into band descriptions: ISO ``YYYY-MM-DD``."""
    return d.isoformat()


def field_name(d: dt.date) -> str:
    """Field name for a per-date attribute: ``d20170903``."""
    return "d" + d.strftime("%Y%m%d")


def regular_dates(start: dt.date, end: dt.date, interval_days: int) -> list[dt.date]:
    """Dates from `start` every `interval_days` up to and including `end` (when on the grid)."""
    if interval_days <= 0:
        raise InputError(f"The interval must be a positive number of days, not {interval_days}.")
    n = (end - start).days // interval_days
    return [start + dt.timedelta(days=interval_days * k) for k in range(n + 1)]


def median_interval(dates: Sequence[dt.date]) -> int:
    """The median spacing of `dates` in whole days (at least 1)."""
    if len(dates) < 2:
        raise InputError("At least two dates are needed to find an acquisition interval.")
    return max(1, int(round(float(np.median(np.diff(to_ordinal(dates)))))))


_YEAR_DOY = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{3})(?!\d)")


def parse_year_doy(text: str) -> dt.date | None:
    """A date written as year + day of year (``YYYYDDD``, GMTSAR's ``disp_2017246.grd`` =
    2017-09-03) in `text`, or None. Used for file names only where no YYYYMMDD date is found."""
    for m in _YEAR_DOY.finditer(text or ""):
        year, doy = int(m.group(1)), int(m.group(2))
        if 1 <= doy <= (366 if calendar.isleap(year) else 365):
            return dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)
    return None
