"""The live widget: continuous ipywidgets sliders for a running kernel (Jupyter, JupyterLite)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import matplotlib.pyplot as plt

__all__ = ["live"]


def live(plot: Callable[..., object], **sliders):
    """Continuous ipywidgets sliders for ``plot`` in a running kernel.

    Parameters
    ----------
    plot : callable
        As for :func:`afdlib.widgets.frame_slider`; the figure is shown after each change.
    **sliders
        ``name=(min, max, step)`` tuples or ipywidgets controls, as for
        :func:`ipywidgets.interact`.

    Returns
    -------
    ipywidgets.interactive
    """
    import ipywidgets

    @functools.wraps(plot)  # keeps plot's signature, so sliders start at its defaults
    def _draw(**kwargs):
        fig = plot(**kwargs)
        plt.show() if fig is None else (fig.show() if hasattr(fig, "show") else None)

    return ipywidgets.interactive(_draw, **sliders)
