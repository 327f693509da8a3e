"""Widgets that work both in a live Jupyter kernel and on the static book page.

A static HTML page cannot run a Python callback, so :func:`frame_slider` renders a figure
for every point of a small parameter grid *when the notebook executes* and ships the frames
with a few lines of JavaScript that swap them as the reader moves the sliders. The page is
then interactive without a kernel. :func:`live` wraps :func:`ipywidgets.interact` for the
same plotting function, with continuous sliders, for readers running the notebook.

Chapters show the frame slider in the book and keep the live version in a cell tagged
``remove-cell`` (shown in Jupyter, hidden in the book) and ``nbval-ignore-output``.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import uuid
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt

__all__ = ["frame_slider", "live", "FrameSlider"]


class FrameSlider:
    """Precomputed frames and the HTML/JS that shows them; displays itself in Jupyter."""

    def __init__(self, html_text: str, n_frames: int) -> None:
        self._html = html_text
        self.n_frames = n_frames

    def _repr_html_(self) -> str:
        return self._html

    def __repr__(self) -> str:
        return f"<FrameSlider with {self.n_frames} precomputed frames>"


def _figure_to_data_uri(fig, dpi: int) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def frame_slider(plot: Callable[..., object], params: dict[str, Sequence], *,
                 initial: dict | None = None, labels: dict[str, str] | None = None,
                 fmt: dict[str, str] | None = None, dpi: int = 72,
                 max_frames: int = 40) -> FrameSlider:
    """Render ``plot(**point)`` on a parameter grid and return a browser-side slider widget.

    Parameters
    ----------
    plot : callable
        Called with one keyword per parameter; draws on a new matplotlib figure and
        returns it (or None to use the current figure).
    params : dict of str -> sequence
        Grid values for each parameter, in slider order.
    initial : dict, optional
        Starting value of each parameter (default: the middle grid value).
    labels : dict of str -> str, optional
        Slider labels (default: the parameter names).
    fmt : dict of str -> str, optional
        Python format spec for each parameter's displayed value (default ``"g"``).
    dpi : int
        Resolution of the frames; small keeps the page light.
    max_frames : int
        Refuse grids larger than this (each frame is an embedded PNG).

    Returns
    -------
    FrameSlider
        Displays as HTML with a range input per parameter.
    """
    names = list(params)
    grids = [list(params[n]) for n in names]
    n_frames = 1
    for g in grids:
        if not g:
            raise ValueError("every parameter needs at least one grid value")
        n_frames *= len(g)
    if n_frames > max_frames:
        raise ValueError(f"{n_frames} frames exceed max_frames={max_frames}; use a coarser grid")
    labels = labels or {}
    fmt = fmt or {}
    initial = initial or {}
    frames = []
    for point in itertools.product(*grids):
        fig = plot(**dict(zip(names, point, strict=True)))
        frames.append(_figure_to_data_uri(fig if fig is not None else plt.gcf(), dpi))
    start = []
    for n, g in zip(names, grids, strict=True):
        if n in initial:
            start.append(min(range(len(g)), key=lambda i, v=initial[n]: abs(g[i] - v)))
        else:
            start.append(len(g) // 2)
    uid = "fs" + uuid.uuid5(uuid.NAMESPACE_OID, json.dumps([names, str(grids)])).hex[:10]
    rows = []
    for k, (n, g) in enumerate(zip(names, grids, strict=True)):
        shown = [format(v, fmt.get(n, "g")) for v in g]
        rows.append(
            f'<div style="display:flex;align-items:center;gap:0.6em;margin:0.2em 0">'
            f'<label for="{uid}-{k}" style="min-width:9em">{html.escape(labels.get(n, n))}</label>'
            f'<input type="range" id="{uid}-{k}" min="0" max="{len(g) - 1}" step="1" '
            f'value="{start[k]}" style="flex:1">'
            f'<output id="{uid}-{k}-out" style="min-width:5em">{html.escape(shown[start[k]])}'
            f"</output></div>"
        )
        rows[-1] += f'<script type="application/json" id="{uid}-{k}-vals">{json.dumps(shown)}</script>'
    sizes = [len(g) for g in grids]
    imgs = "".join(
        f'<img src="{src}" data-frame="{i}" style="max-width:100%;display:none" alt="frame {i}">'
        for i, src in enumerate(frames)
    )
    script = f"""
<script>
(function() {{
  var root = document.getElementById("{uid}");
  var sizes = {json.dumps(sizes)};
  function show() {{
    var idx = 0;
    for (var k = 0; k < sizes.length; k++) {{
      var s = document.getElementById("{uid}-" + k);
      var vals = JSON.parse(document.getElementById("{uid}-" + k + "-vals").textContent);
      document.getElementById("{uid}-" + k + "-out").textContent = vals[+s.value];
      idx = idx * sizes[k] + (+s.value);
    }}
    var imgs = root.querySelectorAll("img[data-frame]");
    for (var i = 0; i < imgs.length; i++) {{
      imgs[i].style.display = (i === idx) ? "block" : "none";
    }}
  }}
  for (var k = 0; k < sizes.length; k++) {{
    document.getElementById("{uid}-" + k).addEventListener("input", show);
  }}
  show();
}})();
</script>"""
    body = (f'<div id="{uid}" class="afd-frame-slider" style="border:1px solid #ddd;'
            f'padding:0.5em;border-radius:4px">{"".join(rows)}{imgs}</div>{script}')
    return FrameSlider(body, n_frames)


def live(plot: Callable[..., object], **sliders):
    """Continuous ipywidgets sliders for ``plot`` in a running kernel.

    Parameters
    ----------
    plot : callable
        As for :func:`frame_slider`; the figure is shown after each change.
    **sliders
        ``name=(min, max, step)`` tuples or ipywidgets controls, as for
        :func:`ipywidgets.interact`.

    Returns
    -------
    ipywidgets.interactive
    """
    import functools

    import ipywidgets

    @functools.wraps(plot)  # keeps plot's signature, so sliders start at its defaults
    def _draw(**kwargs):
        fig = plot(**kwargs)
        plt.show() if fig is None else (fig.show() if hasattr(fig, "show") else None)

    return ipywidgets.interactive(_draw, **sliders)
