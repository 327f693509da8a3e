"""Encode matplotlib figures as light, high-DPI PNG frames for the static frame slider.

A frame is drawn at ``pixel_ratio`` device pixels per CSS pixel (2 for high-DPI screens),
cut to its tight bounding box like every other figure of the book, and stored as a
palette (8-bit, no dithering) PNG: line plots use few colours, so this is about four times
lighter than matplotlib's RGBA PNG at the same resolution. All frames of a slider are padded
to one canvas so that the picture does not jump while the reader moves a slider.
"""

from __future__ import annotations

import base64
import io
import warnings

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

#: Colours kept by the palette quantizer (plots use far fewer; antialiasing needs some).
PALETTE_COLORS = 128


def render_figure(fig, *, width_in: float | None, css_dpi: float, pixel_ratio: float) -> np.ndarray:
    """Draw ``fig`` and return its pixels (RGB, uint8), then close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to draw.
    width_in : float or None
        New figure width [in]; the height is kept, so text keeps its size in points.
        None keeps the figure's own size.
    css_dpi : float
        CSS pixels per figure inch [px/in] (the book's figures use 100).
    pixel_ratio : float
        Device pixels per CSS pixel (2 renders for high-DPI screens).

    Returns
    -------
    numpy.ndarray
        Array of shape (height_px, width_px, 3).
    """
    try:
        if width_in is not None:
            fig.set_size_inches(width_in, fig.get_size_inches()[1])
            if fig.get_layout_engine() is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # axes that tight_layout cannot place
                    fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=css_dpi * pixel_ratio, bbox_inches="tight",
                    facecolor="white")
    finally:
        plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def pad_to(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad an RGB frame with white on the right and bottom to ``height`` x ``width`` [px]."""
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    out[: pixels.shape[0], : pixels.shape[1]] = pixels
    return out


def encode_png(pixels: np.ndarray, colors: int = PALETTE_COLORS) -> bytes:
    """Palette-quantize an RGB frame (no dithering) and return the PNG bytes."""
    img = Image.fromarray(pixels, "RGB").quantize(
        colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
