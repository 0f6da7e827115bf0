"""A drawn figure read back for the page, without matplotlib (the report imports it): its SVG to
inline (no XML prolog), and whether it is a "no data" figure."""

from __future__ import annotations

from pathlib import Path

from benchbench.results.figures.captions import NO_DATA


def inline_svg(path: str | Path) -> str:
    """The SVG file's text from its ``<svg`` tag on: inline SVG (the XML prolog dropped)."""
    text = Path(path).read_text()
    return text[text.find("<svg") :]


def drawn_svg(path: str | Path) -> str | None:
    """:func:`inline_svg` of a figure with data; None for a "no data" figure (:data:`NO_DATA`)."""
    svg = inline_svg(path)
    return None if NO_DATA in svg else svg
