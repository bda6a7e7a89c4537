"""The one HTML report engine of the package: self-contained pages (figures embedded as base64 PNG).

Figures are ``matplotlib.figure.Figure`` objects drawn without pyplot (no GUI, no global state: safe
in QGIS's process and in the worker); :func:`figure_png` renders one with the Agg canvas. Every HTML
report (model comparison, forecast evaluation, the training report) is built from
:func:`html_page`, :func:`html_table` and :func:`img`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

CSS = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
    "td:first-child,td:nth-child(2){text-align:left}.note{color:#444;font-size:90%}img{max-width:100%}"
)


def figure_png(fig, dpi: int = 90) -> str:
    """`fig` (a matplotlib Figure, never pyplot's) as base64 PNG text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img(b64: str, alt: str) -> str:
    """An <img> showing the base64 PNG `b64`."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"/>'


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats with `digits` decimals ("n/a" for NaN), anything else escaped text."""
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def html_table(
    rows: Sequence[dict], fields: Sequence[str], cell: Callable[[str, Any], str] | None = None
) -> str:
    """A table of `rows` (dicts) with one column per field; `cell(field, value)` formats a cell
    (default :func:`fmt`)."""
    show = cell or (lambda _f, v: fmt(v))
    out = ["<table><tr>" + "".join(f"<th>{html.escape(f)}</th>" for f in fields) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{show(f, r.get(f, ''))}</td>" for f in fields) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete page: `title` and the (heading, HTML content) `sections`."""
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>"
    )
