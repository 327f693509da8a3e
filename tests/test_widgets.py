"""Widgets: the static frame slider, its comparison by nbval, and the live ipywidgets version."""

from __future__ import annotations

import base64
import io
import json
import pathlib
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
from nbval.plugin import get_sanitize_patterns  # noqa: E402
from PIL import Image  # noqa: E402

from afdlib.errors import AfdInputError  # noqa: E402
from afdlib.widgets import SANITIZE_PATTERNS, frame_slider, live  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SANITIZE_CFG = ROOT / "tests" / "nbval_sanitize.cfg"


def _plot(a=1.0, b=2):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, a])
    ax.plot([0, 1], [b, 0])
    return fig


def _data(html):
    return json.loads(re.search(r'<script type="application/json" class="afd-fs-data">(.*?)'
                                r"</script>", html, re.S).group(1))


def _frames(html):
    """The PNG bytes of every frame, in grid order."""
    data = _data(html)
    first = re.search(r'<img class="afd-fs-img"[^>]* src="([^"]+)"', html).group(1)
    uris = [u or first for u in data["frames"]]
    return [base64.b64decode(u.split(",", 1)[1]) for u in uris]


def _sanitize(text, patterns):
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


def test_frame_slider_renders_one_frame_per_grid_point_and_one_slider_per_parameter():
    widget = frame_slider(_plot, {"a": [0.5, 1.0, 2.0], "b": [1, 2]}, width=300)
    html = widget._repr_html_()
    assert widget.n_frames == 6
    assert 'data-frames="6"' in html and "6 precomputed frames (3 &times; 2 grid values)" in html
    frames = _frames(html)
    assert len(frames) == 6 and len(set(frames)) == 6  # every frame drawn, all different
    assert len(re.findall(r'<input class="afd-fs-input" type="range"', html)) == 2
    assert "<script>" in html and "addEventListener" in html
    # the initial frame is the middle grid value of each slider, shown in its readout
    assert 'max="2" step="1" value="1"' in html and 'max="1" step="1" value="1"' in html
    assert _data(html)["values"] == [["0.5", "1", "2"], ["1", "2"]]
    assert repr(widget) == "<FrameSlider with 6 precomputed frames: a (3), b (2)>"


def test_frames_are_palette_pngs_at_twice_the_css_size_with_the_figures_text_scale():
    plt.rcParams["figure.dpi"] = 100
    widget = frame_slider(_plot, {"a": [1.0, 2.0]}, width=400)
    html = widget._repr_html_()
    css_w = int(re.search(r' width="(\d+)"', html).group(1))
    css_h = int(re.search(r' height="(\d+)"', html).group(1))
    for png in _frames(html):
        img = Image.open(io.BytesIO(png))
        assert img.mode == "P"  # palette-quantized
        assert img.size == (pytest.approx(2 * css_w, abs=1), pytest.approx(2 * css_h, abs=1))
    # the figure is resized to the requested width (tight bbox trims a little) and keeps
    # its height in inches, so its text keeps its size in points at 100 css px per inch
    assert 0.85 * 400 <= css_w <= 1.05 * 400
    assert css_h <= 1.5 * 100


def test_grid_values_may_be_strings_and_initial_picks_the_nearest_value():
    def plot(model="x", batch=64):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.set_title(f"{model} {batch}")
        return fig

    widget = frame_slider(plot, {"model": ["small", "large"], "batch": [64, 128, 256]},
                          initial={"model": "large", "batch": 130}, width=200)
    html = widget._repr_html_()
    assert 'max="1" step="1" value="1"' in html and 'max="2" step="1" value="1"' in html
    assert 'alt="model = large, batch = 128"' in html


def test_caption_guide_and_live_line_are_text_in_the_html():
    widget = frame_slider(_plot, {"a": [1.0, 2.0]}, labels={"a": "slope [1/s]"},
                          caption="Throughput as the slope grows.", name="fig-test-slope",
                          guide="Move the slope; watch the line steepen.", width=200)
    html = widget._repr_html_()
    assert 'data-name="fig-test-slope"' in html
    assert '<figcaption class="afd-fs-caption">Throughput as the slope grows.</figcaption>' in html
    assert '<p class="afd-fs-guide">Move the slope; watch the line steepen.</p>' in html
    assert '<label for="' in html and ">slope [1/s]</label>" in html
    assert 'href="#afd-live"' in html and "continuous sliders" in html
    bare = frame_slider(_plot, {"a": [1.0, 2.0]}, width=200, live_link=False)._repr_html_()
    assert "afd-live" not in bare and "figcaption" not in bare and "data-name" not in bare


def test_frame_slider_refuses_bad_grids_and_oversized_widgets():
    with pytest.raises(AfdInputError, match="max_frames"):
        frame_slider(_plot, {"a": list(range(10)), "b": list(range(10))}, max_frames=40)
    with pytest.raises(AfdInputError, match="at least one"):
        frame_slider(_plot, {"a": []})
    with pytest.raises(AfdInputError, match="max_bytes"):
        frame_slider(_plot, {"a": [1.0, 2.0]}, max_bytes=1000)
    with pytest.raises(AfdInputError, match="name"):
        frame_slider(_plot, {"a": [1.0]}, name="fig-x")
    with pytest.raises(AfdInputError, match="initial"):
        frame_slider(_plot, {"a": ["p", "q"]}, initial={"a": "r"})


def test_old_calls_with_dpi_still_run():
    widget = frame_slider(_plot, {"a": [1.0, 2.0]}, dpi=60, width=200)
    assert widget.n_frames == 2


def test_sanitizer_file_matches_the_library_patterns():
    assert set(SANITIZE_PATTERNS) <= set(get_sanitize_patterns(SANITIZE_CFG.read_text()))


def test_sanitized_html_ignores_pixels_but_not_what_the_widget_shows():
    def plot_blue(a=1.0):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, a], color="blue")
        return fig

    def plot_red(a=1.0):  # same labels, other pixels
        fig, ax = plt.subplots(figsize=(2.3, 1.5))
        ax.plot([0, 1], [0, a], color="red", lw=3)
        return fig

    plot_red.__qualname__ = plot_blue.__qualname__
    kw = {"labels": {"a": "slope"}, "width": 200}
    blue = frame_slider(plot_blue, {"a": [1.0, 2.0]}, **kw)._repr_html_()
    red = frame_slider(plot_red, {"a": [1.0, 2.0]}, **kw)._repr_html_()
    assert blue != red
    assert _sanitize(blue, SANITIZE_PATTERNS) == _sanitize(red, SANITIZE_PATTERNS)
    relabelled = frame_slider(plot_blue, {"a": [1.0, 2.0]}, labels={"a": "gradient"},
                              width=200)._repr_html_()
    finer = frame_slider(plot_blue, {"a": [1.0, 1.5, 2.0]}, **kw)._repr_html_()
    captioned = frame_slider(plot_blue, {"a": [1.0, 2.0]}, caption="c", **kw)._repr_html_()
    for other in (relabelled, finer, captioned):
        assert _sanitize(other, SANITIZE_PATTERNS) != _sanitize(blue, SANITIZE_PATTERNS)


PLOT_SOURCE = '''\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from afdlib.widgets import frame_slider
plt.rcParams["figure.dpi"] = 100

def plot(a=1.0, color="C0"):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, a], color=color)
    return fig
'''


@pytest.mark.slow
def test_nbval_compares_a_frame_slider_by_labels_and_frame_count(tmp_path):
    """Run nbval itself: other pixels pass; another label or frame count fails."""
    namespace = {}
    exec(PLOT_SOURCE, namespace)  # the same function (and qualname) as in the notebook
    fs, plot = namespace["frame_slider"], namespace["plot"]
    call = 'frame_slider(plot, {"a": [1.0, 2.0, 3.0]}, labels={"a": "slope"}, width=200)'

    def stored(widget):
        return nbformat.v4.new_output(
            "execute_result", data={"text/html": widget._repr_html_(), "text/plain": repr(widget)},
            execution_count=1)

    def other_pixels(a=1.0):
        return plot(a, color="red")  # same labels and grid, different PNG bytes
    other_pixels.__qualname__ = "plot"

    cells = [nbformat.v4.new_code_cell(PLOT_SOURCE)]
    for widget in (
        fs(other_pixels, {"a": [1.0, 2.0, 3.0]}, labels={"a": "slope"}, width=200),
        fs(plot, {"a": [1.0, 2.0, 3.0]}, labels={"a": "gradient"}, width=200),
        fs(plot, {"a": [1.0, 2.0, 3.0, 4.0]}, labels={"a": "slope"}, width=200),
    ):
        cell = nbformat.v4.new_code_cell(call, execution_count=1)
        cell.outputs = [stored(widget)]
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "slider.ipynb"
    nbformat.write(nb, path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE_CFG), str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    results = {int(cell): status for status, cell in
               re.findall(r"^(PASSED|FAILED) \S*::Cell (\d+)", proc.stdout, re.M)}
    assert results == {0: "PASSED", 1: "PASSED", 2: "FAILED", 3: "FAILED"}, proc.stdout[-3000:]


def test_live_widget_redraws_when_a_slider_moves():
    calls = []

    def plot(a=1.0):
        calls.append(a)
        return _plot(a)

    widget = live(plot, a=(0.0, 2.0, 0.5))
    slider = widget.children[0]
    assert slider.description == "a"
    assert slider.value == pytest.approx(1.0)  # starts at the function's default
    before = len(calls)
    slider.value = 1.5
    assert len(calls) > before and calls[-1] == pytest.approx(1.5)

