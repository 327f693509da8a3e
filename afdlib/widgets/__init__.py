"""Widgets that work both in a live Jupyter kernel and on the static book page.

A static HTML page cannot run a Python callback, so :func:`frame_slider` renders a figure
for every point of a parameter grid *when the notebook executes* and ships the frames
with a few lines of JavaScript that swap them as the reader moves the sliders. The page is
then interactive without a kernel. :func:`live` wraps :func:`ipywidgets.interactive` for the
same plotting function, with continuous sliders, for readers running the notebook (in
Jupyter, or in the browser through the book's JupyterLite site).

Chapters show the frame slider in the book and keep the live version in a cell tagged
``remove-cell`` (shown in Jupyter, hidden in the book) and ``nbval-ignore-output``.
:mod:`afdlib.widgets.selftest` checks a reader's answers to the self-test questions.
"""

from __future__ import annotations

from afdlib.widgets.live import live
from afdlib.widgets.slider import SANITIZE_PATTERNS, FrameSlider, frame_slider

__all__ = ["frame_slider", "live", "FrameSlider", "SANITIZE_PATTERNS"]
