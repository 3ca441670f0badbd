"""A small, dependency-free builder of self-contained HTML reports.

Everything is inline (CSS, PNG figures as base64 ``data:`` URIs), so a report is one file that can
be mailed, archived or opened offline. Shared by the demo, series and thermo reports.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HtmlReport", "array_to_png", "figure_to_png"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222}
h1{font-size:1.6em;border-bottom:2px solid #0072B2;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:1.6em}
figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f0f4f8}
.warning{background:#fff4e0;border-left:4px solid #E69F00;padding:.5em 1em}
.thumbs img{width:96px;height:96px;image-rendering:pixelated;margin:2px;border:1px solid #ccc}
.thumbs span{display:inline-block;width:100px;vertical-align:top;margin:2px;text-align:center;
font-size:.75em;color:#333}
.thumbs span img{display:block;margin:0 0 1px 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}
"""


def figure_to_png(fig: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib Figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def array_to_png(image: np.ndarray) -> bytes:
    """PNG bytes of a 2-D array (scaled to its 0.5–99.5 percentile range, grey scale) or of an
    ``(H, W, 3)`` RGB array with values in [0, 1]."""
    from matplotlib.image import imsave

    a = np.asarray(image, float)
    if a.ndim == 3 and a.shape[-1] == 3:
        buf = io.BytesIO()
        imsave(buf, np.clip(a, 0, 1), format="png")
        return buf.getvalue()
    lo, hi = np.nanpercentile(a, [0.5, 99.5]) if a.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    buf = io.BytesIO()
    imsave(buf, np.clip((a - lo) / (hi - lo), 0, 1), cmap="gray", vmin=0, vmax=1, format="png")
    return buf.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class HtmlReport:
    """Build a self-contained HTML page section by section.

    Parameters
    ----------
    title : str
        Page title (also the first heading).

    Examples
    --------
    >>> rep = HtmlReport("Demo")
    >>> rep.paragraph("Hello")
    >>> "<p>Hello</p>" in rep.html()
    True
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str, level: int = 2) -> None:
        """Add a heading (level 2–4)."""
        level = min(max(level, 2), 4)
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        """Add a paragraph of plain text (escaped)."""
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def warning(self, text: str) -> None:
        """Add a highlighted warning."""
        self._parts.append(f'<p class="warning">⚠ {html.escape(text)}</p>')

    def figure(self, fig: Any, caption: str = "", dpi: int = 110) -> None:
        """Add a matplotlib Figure as an inline PNG with a caption."""
        self.png(figure_to_png(fig, dpi), caption)

    def png(self, png: bytes, caption: str = "", alt: str | None = None) -> None:
        """Add PNG bytes inline with a caption."""
        alt_text = html.escape(alt or caption or "figure")
        self._parts.append(
            f'<figure><img src="{_data_uri(png)}" alt="{alt_text}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def images(self, arrays: Sequence[np.ndarray], caption: str = "",
               labels: Sequence[str] | None = None) -> None:
        """Add a row of thumbnails of 2-D arrays (e.g. crops of one isomer).

        Parameters
        ----------
        arrays : sequence of numpy.ndarray
            2-D grey or ``(H, W, 3)`` RGB images.
        caption : str
            Caption of the row.
        labels : sequence of str, optional
            One short text under each thumbnail (e.g. its frame number).
        """
        if labels is not None and len(labels) != len(arrays):
            raise ValueError(f"{len(labels)} labels for {len(arrays)} thumbnails")

        def one(i: int, a: np.ndarray) -> str:
            alt = html.escape(f"{caption} {labels[i] if labels is not None else i}")
            img = f'<img src="{_data_uri(array_to_png(a))}" alt="{alt}">'
            if labels is None:
                return img
            return f"<span>{img}{html.escape(labels[i])}</span>"

        imgs = "".join(one(i, a) for i, a in enumerate(arrays))
        self._parts.append(
            f'<figure class="thumbs">{imgs}<figcaption>{html.escape(caption)}</figcaption>'
            "</figure>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> None:
        """Add a table; floats are shown with 4 significant digits."""

        def cell(v: Any) -> str:
            if isinstance(v, float | np.floating):
                return "–" if not np.isfinite(v) else f"{float(v):.4g}"
            return html.escape("–" if v is None else str(v))

        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def details(self, summary: str, text: str) -> None:
        """Add a collapsible block of preformatted text (e.g. the JSON summary)."""
        self._parts.append(
            f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre>"
            "</details>")

    def html(self) -> str:
        """The whole page as a string."""
        body = "\n".join(self._parts)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n<footer><p><small>Generated by ClusterSpy.</small></p></footer>"
            "</body></html>\n"
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page atomically (temporary file, then rename); returns the path."""
        from clusterspy.io import write_text_atomic

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(p, self.html())
