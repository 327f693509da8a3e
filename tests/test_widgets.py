"""Widgets: the static frame slider and the live ipywidgets version."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from afdlib.widgets import frame_slider, live  # noqa: E402


def _plot(a=1.0, b=2):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, a * b])
    return fig


def test_frame_slider_renders_one_frame_per_grid_point_and_one_slider_per_parameter():
    widget = frame_slider(_plot, {"a": [0.5, 1.0, 2.0], "b": [1, 2]}, dpi=30)
    html = widget._repr_html_()
    assert widget.n_frames == 6
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 6
    assert len(re.findall(r'<input type="range"', html)) == 2
    assert "<script>" in html and "addEventListener" in html
    # the initial frame is the middle grid value of each slider
    assert 'value="1"' in html


def test_frame_slider_refuses_huge_grids_and_empty_axes():
    with pytest.raises(ValueError, match="max_frames"):
        frame_slider(_plot, {"a": list(range(10)), "b": list(range(10))}, max_frames=40)
    with pytest.raises(ValueError, match="at least one"):
        frame_slider(_plot, {"a": []})


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
