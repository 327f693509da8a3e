"""The static frame slider: precomputed frames swapped by a few lines of JavaScript.

A static page cannot run a Python callback, so :func:`frame_slider` renders a figure for
every point of a parameter grid *when the notebook executes*, and ships the frames with a
small script that swaps them as the reader moves the sliders.

Its HTML says in text what it shows (the controls and their labels, every grid value, the
number of frames, the caption and the one-sentence guide), so that a notebook test can
compare it by what it shows: the only renderer-dependent parts are the PNG payloads and the
pixel size of the frames, which ``tests/nbval_sanitize.cfg`` masks (see
:data:`SANITIZE_PATTERNS`).
"""

from __future__ import annotations

import html
import itertools
import json
import math
import uuid
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from afdlib.errors import AfdInputError
from afdlib.widgets import _frames

__all__ = ["frame_slider", "FrameSlider", "COLUMN_PX", "SANITIZE_PATTERNS"]

#: Width a notebook output has in the book's text column [CSS px] (sphinx-book-theme at
#: desktop width: a 752 px column less the output area's and the widget's own padding).
COLUMN_PX = 660
#: Default cap on the widget's HTML size [bytes]; keeps a page at a few MB.
MAX_BYTES = 4_000_000
#: Anchor of the page's "run this chapter live" button (written by the book's extension).
LIVE_ANCHOR = "afd-live"

#: Regular expressions (and replacements) that mask the renderer-dependent parts of the
#: widget's HTML: the frames' PNG payloads and their pixel size. Everything else (controls,
#: labels, values, frame count, caption, guide) stays, so a notebook test still compares it.
SANITIZE_PATTERNS = (
    (r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,IMAGE"),
    (r'data-size="\d+x\d+" width="\d+" height="\d+"', 'data-size="WxH" width="W" height="H"'),
)


class FrameSlider:
    """Precomputed frames and the HTML/JS that shows them; displays itself in Jupyter.

    Attributes
    ----------
    n_frames : int
        Number of frames (the product of the grid sizes).
    labels : list of str
        Slider labels, in slider order.
    sizes : list of int
        Grid values per slider.
    html_bytes : int
        Size of the HTML [bytes] (what the widget adds to a page).
    """

    def __init__(self, html_text: str, n_frames: int, *, labels: Sequence[str] = (),
                 sizes: Sequence[int] = ()) -> None:
        self._html = html_text
        self.n_frames = n_frames
        self.labels = list(labels)
        self.sizes = list(sizes)
        self.html_bytes = len(html_text.encode("utf-8"))

    def _repr_html_(self) -> str:
        return self._html

    def __repr__(self) -> str:
        grid = ", ".join(f"{lab} ({n})" for lab, n in zip(self.labels, self.sizes, strict=True))
        return f"<FrameSlider with {self.n_frames} precomputed frames: {grid}>"


def _start_index(grid: list, value) -> int:
    if value in grid:
        return grid.index(value)
    try:
        return min(range(len(grid)), key=lambda i: abs(grid[i] - value))
    except TypeError as exc:
        raise AfdInputError(f"initial value {value!r} is not in the grid {grid!r}") from exc


def _format(value, spec: str | None) -> str:
    if isinstance(value, str):
        return value
    return format(value, spec or "g")


def _json_for_script(obj) -> str:
    # inside <script type="application/json">, "</" would end the element
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


_SCRIPT = """<script>
(function () {
  var s = document.currentScript, root = s && s.previousElementSibling;
  if (!root || root.id !== "%(uid)s") root = document.getElementById("%(uid)s");
  if (!root || root.getAttribute("data-ready")) return;
  root.setAttribute("data-ready", "1");
  var data = JSON.parse(root.querySelector("script.afd-fs-data").textContent);
  var inputs = root.querySelectorAll("input.afd-fs-input");
  var outs = root.querySelectorAll("output.afd-fs-value");
  var img = root.querySelector("img.afd-fs-img");
  var first = img.getAttribute("src");
  function show() {
    var idx = 0, said = [];
    for (var k = 0; k < inputs.length; k++) {
      var v = +inputs[k].value, text = data.values[k][v];
      outs[k].textContent = text;
      inputs[k].setAttribute("aria-valuetext", text);
      said.push(data.labels[k] + " = " + text);
      idx = idx * data.sizes[k] + v;
    }
    img.src = data.frames[idx] || first;
    img.alt = said.join(", ");
    root.setAttribute("data-frame", idx);
  }
  for (var k = 0; k < inputs.length; k++) inputs[k].addEventListener("input", show);
  show();
})();
</script>"""


def frame_slider(plot: Callable[..., object], params: dict[str, Sequence], *,
                 initial: dict | None = None, labels: dict[str, str] | None = None,
                 fmt: dict[str, str] | None = None, dpi: float | None = None,
                 max_frames: int = 400, caption: str | None = None, name: str | None = None,
                 guide: str | None = None, width: float = COLUMN_PX,
                 figure_dpi: float | None = None, pixel_ratio: float = 2,
                 max_bytes: int = MAX_BYTES, live_link: bool = True) -> FrameSlider:
    """Render ``plot(**point)`` on a parameter grid and return a browser-side slider widget.

    Each frame is drawn ``width`` CSS pixels wide, with text at the scale of the book's
    other figures (``figure_dpi``), at ``pixel_ratio`` device pixels per CSS pixel (sharp
    on high-DPI screens), and stored as a palette PNG.

    Parameters
    ----------
    plot : callable
        Called with one keyword per parameter; draws on a new matplotlib figure and
        returns it (or None to use the current figure).
    params : dict of str -> sequence
        Grid values for each parameter, in slider order (numbers or strings).
    initial : dict, optional
        Starting value of each parameter (default: the middle grid value); the nearest
        grid value is used.
    labels : dict of str -> str, optional
        Slider labels (default: the parameter names).
    fmt : dict of str -> str, optional
        Python format spec for each parameter's displayed value (default ``"g"``).
    dpi : float, optional
        Ignored; kept so that calls written for the first version still run (frames are
        now sized by ``width``, ``figure_dpi`` and ``pixel_ratio``).
    max_frames : int
        Refuse grids with more frames than this.
    caption : str, optional
        Caption of the widget. In the book it becomes a numbered figure caption (with
        ``name`` as its label for ``{numref}``); in Jupyter it shows below the frames.
    name : str, optional
        Figure label (e.g. ``"fig-barrier-explorer"``), used with ``caption``.
    guide : str, optional
        One sentence above the sliders: what to move and what to watch.
    width : float
        Frame width [CSS px]; default the book's column. The figure is resized to it
        (its height and its text size in points are kept).
    figure_dpi : float, optional
        CSS pixels per figure inch [px/in]; default ``rcParams["figure.dpi"]`` (100 in
        :func:`afdlib.plots.book_style`), so text is as large as in the book's figures.
    pixel_ratio : float
        Device pixels per CSS pixel of the frames (2: sharp on high-DPI screens).
    max_bytes : int
        Refuse widgets whose HTML exceeds this size [bytes] (each frame is embedded).
    live_link : bool
        Add the line saying that the live notebook has continuous sliders, with a link to
        the page's "run this chapter live" button.

    Returns
    -------
    FrameSlider
        Displays as HTML with a range input per parameter.

    Raises
    ------
    AfdInputError
        An empty grid, a grid larger than ``max_frames``, an ``initial`` value that fits no
        grid value, a caption without a name (or the reverse), or a result over
        ``max_bytes``.
    """
    del dpi  # superseded by width / figure_dpi / pixel_ratio (see the docstring)
    names = list(params)
    grids = [list(params[n]) for n in names]
    if not names:
        raise AfdInputError("params: give at least one parameter")
    for n, g in zip(names, grids, strict=True):
        if not g:
            raise AfdInputError(f"params[{n!r}]: every parameter needs at least one grid value")
    n_frames = math.prod(len(g) for g in grids)
    if n_frames > max_frames:
        raise AfdInputError(f"params: {n_frames} frames exceed max_frames={max_frames}; "
                            "use a coarser grid")
    if name is not None and caption is None:
        raise AfdInputError("name: a figure label needs a caption")
    if width <= 0 or pixel_ratio <= 0:
        raise AfdInputError("width and pixel_ratio must be positive")
    labels = {n: labels.get(n, n) for n in names} if labels else {n: n for n in names}
    fmt = fmt or {}
    initial = initial or {}
    css_dpi = float(figure_dpi if figure_dpi is not None else plt.rcParams["figure.dpi"])
    width_in = width / css_dpi

    pixels = []
    for point in itertools.product(*grids):
        fig = plot(**dict(zip(names, point, strict=True)))
        if fig is None:
            fig = plt.gcf()
        elif not isinstance(fig, Figure):
            fig = fig.figure  # an Axes
        pixels.append(_frames.render_figure(fig, width_in=width_in, css_dpi=css_dpi,
                                            pixel_ratio=pixel_ratio))
    height_px = max(p.shape[0] for p in pixels)
    width_px = max(p.shape[1] for p in pixels)
    uris = [_frames.data_uri(_frames.encode_png(_frames.pad_to(p, height_px, width_px)))
            for p in pixels]

    start = [_start_index(g, initial[n]) if n in initial else len(g) // 2
             for n, g in zip(names, grids, strict=True)]
    shown = [[_format(v, fmt.get(n)) for v in g] for n, g in zip(names, grids, strict=True)]
    sizes = [len(g) for g in grids]
    first = 0
    for k, s in enumerate(start):
        first = first * sizes[k] + s
    key = json.dumps([names, repr(grids), caption, name, getattr(plot, "__qualname__", "")])
    uid = "fs" + uuid.uuid5(uuid.NAMESPACE_OID, key).hex[:12]
    esc = html.escape

    rows = []
    for k, n in enumerate(names):
        rows.append(
            f'<div class="afd-fs-row"><label for="{uid}-{k}">{esc(labels[n])}</label>'
            f'<input class="afd-fs-input" type="range" id="{uid}-{k}" min="0" '
            f'max="{sizes[k] - 1}" step="1" value="{start[k]}" '
            f'aria-valuetext="{esc(shown[k][start[k]])}">'
            f'<output class="afd-fs-value" for="{uid}-{k}">{esc(shown[k][start[k]])}</output>'
            f"</div>")
    grid_text = " &times; ".join(str(s) for s in sizes)
    note = (f"{n_frames} precomputed frames ({grid_text} grid values)." if len(sizes) > 1
            else f"{n_frames} precomputed frames.")
    if live_link:
        note += (' The live notebook has continuous sliders: '
                 f'<a class="afd-live-link" href="#{LIVE_ANCHOR}">run this chapter live</a>.')
    alt = ", ".join(f"{labels[n]} = {shown[k][start[k]]}" for k, n in enumerate(names))
    data = {"labels": [labels[n] for n in names], "sizes": sizes, "values": shown,
            "frames": [None if i == first else u for i, u in enumerate(uris)]}
    attrs = f'class="afd-frame-slider" id="{uid}" data-frames="{n_frames}"'
    if name is not None:
        attrs += f' data-name="{esc(name)}" data-caption="{esc(caption)}"'
    parts = [f"<figure {attrs}>"]
    if guide:
        parts.append(f'<p class="afd-fs-guide">{esc(guide)}</p>')
    parts.append(f'<div class="afd-fs-controls">{"".join(rows)}</div>')
    parts.append(
        f'<div class="afd-fs-stage"><img class="afd-fs-img" '
        f'data-size="{width_px}x{height_px}" width="{round(width_px / pixel_ratio)}" '
        f'height="{round(height_px / pixel_ratio)}" src="{uris[first]}" alt="{esc(alt)}"></div>')
    parts.append(f'<p class="afd-fs-note">{note}</p>')
    if caption is not None:
        parts.append(f'<figcaption class="afd-fs-caption">{esc(caption)}</figcaption>')
    parts.append(f'<script type="application/json" class="afd-fs-data">{_json_for_script(data)}'
                 "</script>")
    parts.append("</figure>")
    body = "".join(parts) + _STYLE + _SCRIPT % {"uid": uid}
    widget = FrameSlider(body, n_frames, labels=[labels[n] for n in names], sizes=sizes)
    if widget.html_bytes > max_bytes:
        raise AfdInputError(f"max_bytes: the widget is {widget.html_bytes} bytes, over "
                            f"max_bytes={max_bytes}; use a coarser grid or a smaller width")
    return widget


# Inline, so that the widget looks the same in Jupyter, in JupyterLite and on the site.
_STYLE = """<style>
.afd-frame-slider{border:1px solid #ddd;border-radius:4px;padding:.5em .7em;margin:1em 0;max-width:100%;box-sizing:border-box}
.afd-frame-slider .afd-fs-guide{margin:.1em 0 .4em;font-style:italic}
.afd-frame-slider .afd-fs-row{display:flex;align-items:center;gap:.6em;margin:.15em 0;flex-wrap:wrap}
.afd-frame-slider .afd-fs-row label{min-width:9em}
.afd-frame-slider .afd-fs-row input{flex:1 1 10em;min-width:8em}
.afd-frame-slider .afd-fs-row output{min-width:4.5em;font-variant-numeric:tabular-nums}
.afd-frame-slider .afd-fs-img{display:block;max-width:100%;height:auto}
.afd-frame-slider .afd-fs-note{font-size:.85em;color:#555;margin:.3em 0 0}
.afd-frame-slider .afd-fs-caption{font-size:.9em;margin-top:.3em}
</style>"""
