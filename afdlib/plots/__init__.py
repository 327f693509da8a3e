"""Plotting helpers for the book, kept out of the chapters' narrative.

Submodules, one per layer: :mod:`afdlib.plots.workload`, and later costs, provision and
sim. All functions take an optional matplotlib ``ax`` and return the figure or axes they
drew on; labels are lowercase with units in brackets.
"""

from __future__ import annotations

import matplotlib as mpl

__all__ = ["book_style"]

#: Colours used consistently for the three roles of a step across the book.
ROLE_COLORS = {"attention": "#1f77b4", "communication": "#2ca02c", "ffn": "#d62728",
               "barrier": "#9467bd"}


def book_style() -> None:
    """Set the book's matplotlib defaults (small, clean figures)."""
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 100,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "font.size": 10,
        "legend.frameon": False,
        "savefig.bbox": "tight",
    })
