"""Figures of the step-time chapter: rooflines, measured curves with fits, residuals,
and per-GPU coefficient comparisons. Every function takes an optional ``ax`` and returns
the axes (or figure) it drew on; labels are lowercase with units."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from afdlib.plots import ROLE_COLORS

__all__ = ["plot_roofline", "plot_attention_fit", "plot_moe_fit", "plot_relative_residuals",
           "plot_comm_fit", "plot_gpu_comparison", "gpu_comparison", "plot_routing"]


def _ax(ax, figsize=None):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_roofline(gpus, kernels: dict[str, float], *, dtype: str = "bf16", ax=None):
    """Attainable FLOP/s against arithmetic intensity for each GPU, kernels marked.

    Parameters
    ----------
    gpus : sequence of GPUSpec
    kernels : dict of str -> float
        Kernel label -> arithmetic intensity (FLOP per HBM byte).
    dtype : str
        Which peak FLOP/s to draw.
    """
    ax = _ax(ax)
    x = np.logspace(-0.5, 4, 200)
    for gpu in gpus:
        ax.plot(x, np.minimum(gpu.flops_for(dtype), x * gpu.hbm_bandwidth) / 1e12,
                label=gpu.name)
    for i, (label, intensity) in enumerate(kernels.items()):
        ax.axvline(intensity, color="0.5", lw=0.8, ls=":")
        ax.text(intensity * 1.08, 2.0 * 1.8 ** i, label, fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity [flop/byte]")
    ax.set_ylabel(f"attainable {dtype} [tflop/s]")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    return ax


def plot_attention_fit(points, entry, *, batches=(8, 32, 128, 512), mask=None,
                       ax=None):
    """Measured attention latency per layer against KV tokens, one colour per batch,
    with the per-request fit ``beta + alpha T + gamma B`` (solid) and the one-line fit
    (dashed) of ``entry`` (an :class:`afdlib.costs.measured.AttentionFit`); ``mask``
    selects the points shown (e.g. the fitted region)."""
    ax = _ax(ax)
    t, b, y = points.x["T"], points.x["B"], points.latency
    if mask is not None:
        t, b, y = t[mask], b[mask], y[mask]
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(batches)))
    for batch, color in zip(batches, colors, strict=True):
        sel = b == batch
        if not sel.any():
            continue
        order = np.argsort(t[sel])
        tt = t[sel][order]
        ax.plot(tt, y[sel][order] * 1e6, "o", ms=3, color=color, label=f"b = {batch}")
        fit = entry.beta + entry.alpha * tt + entry.gamma * batch
        ax.plot(tt, fit * 1e6, "-", color=color, lw=1)
        one = entry.one_line.beta + entry.one_line.alpha * tt
        ax.plot(tt, one * 1e6, "--", color=color, lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("kv tokens read T [tokens]")
    ax.set_ylabel("latency per layer [us]")
    ax.legend(fontsize=8)
    return ax


def plot_moe_fit(points, entry, *, roofline=None, ax=None):
    """Measured MoE latency per layer against tokens, the plateau-line fit and the
    one-line fit above its threshold of ``entry`` (an :class:`afdlib.costs.measured.MoEFit`),
    and optionally a roofline curve ``roofline(N)`` (s)."""
    ax = _ax(ax)
    n, y = points.x["N"], points.latency
    ax.plot(n, y * 1e6, "o", ms=3, color=ROLE_COLORS["ffn"], label="measured")
    grid = np.logspace(0, np.log10(n.max()), 200)
    g = grid[grid >= entry.min_tokens]
    ax.plot(g, entry.time(g) * 1e6, "-", color="k", lw=1, label="max(plateau, line)")
    ol = entry.one_line
    g = grid[grid >= ol.min_tokens / 4]
    ax.plot(g, (ol.beta + ol.alpha * g) * 1e6, "--", color="0.4", lw=1,
            label=f"one line (fitted above {ol.min_tokens:g})")
    if roofline is not None:
        ax.plot(grid, roofline(grid) * 1e6, ":", color=ROLE_COLORS["attention"], lw=1.2,
                label="roofline")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens entering the expert-parallel group N [tokens]")
    ax.set_ylabel("latency per layer [us]")
    ax.legend(fontsize=8)
    return ax


def plot_relative_residuals(x, series: dict[str, np.ndarray], *, xlabel: str, ax=None):
    """Relative residuals ``(fit - measured) / measured`` of several fits against ``x``."""
    ax = _ax(ax)
    for label, rel in series.items():
        ax.plot(x, 100 * rel, "o", ms=3, label=label, alpha=0.8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("relative residual [%]")
    ax.legend(fontsize=8)
    return ax


def plot_comm_fit(points, entry, *, ax=None):
    """DeepEP dispatch + combine per layer against tokens per rank, with the linear fit of
    ``entry`` (an :class:`afdlib.costs.measured.CommFit`)."""
    ax = _ax(ax)
    x, y = points.x["tokens"], points.latency
    ax.plot(x, y * 1e6, "o", ms=3, color=ROLE_COLORS["communication"], label="measured")
    g = np.logspace(0, np.log10(x.max()), 100)
    ax.plot(g, (entry.beta + entry.alpha * g) * 1e6, "-", color="k", lw=1,
            label="beta + alpha x tokens")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens per rank [tokens]")
    ax.set_ylabel("dispatch + combine per layer [us]")
    ax.legend(fontsize=8)
    return ax


def plot_gpu_comparison(rows: list[dict], *, title: str = "", figsize=(7.0, 3.0),
                        ylims=None):
    """Bars of attention and FFN cost per token per GPU-second for several GPUs.

    Parameters
    ----------
    rows : list of dict
        Each with ``gpu``, ``attention_ns`` (alpha_A times the Attention instance's GPUs,
        ns per token) and ``ffn_us`` (alpha_F times the FFN instance's GPUs, us per token).
    title : str
    figsize : (float, float)
        Figure size [in].
    ylims : ((float, float), (float, float)), optional
        Fixed y ranges of the attention [ns/token] and FFN [us/token] panels, so that the
        frames of a slider share their axes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (a1, a2) = plt.subplots(1, 2, figsize=figsize)
    names = [r["gpu"] for r in rows]
    a1.bar(names, [r["attention_ns"] for r in rows], color=ROLE_COLORS["attention"])
    a1.set_ylabel("alpha_A x gpus [ns/token]")
    a1.set_title("attention, per cached token", fontsize=9)
    a2.bar(names, [r["ffn_us"] for r in rows], color=ROLE_COLORS["ffn"])
    a2.set_ylabel("alpha_F x gpus [us/token]")
    a2.set_title("ffn, per batched token", fontsize=9)
    for a in (a1, a2):
        a.tick_params(axis="x", labelrotation=45, labelsize=8)
        a.set_yscale("log")
    if ylims is not None:
        a1.set_ylim(*ylims[0])
        a2.set_ylim(*ylims[1])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def gpu_comparison(model: str, hardware, *, batch: int, theta: float, figsize=(7.0, 3.0),
                   ylims=None):
    """:func:`plot_gpu_comparison` of a model's presets on several hardware names: the
    per-token GPU-seconds of each instance (:attr:`PresetResult.gpu_seconds_per_token`).

    ``batch`` is the slots per Attention instance, ``theta`` the tokens per slot;
    ``ylims`` as in :func:`plot_gpu_comparison`."""
    from afdlib.costs import build_preset

    rows = []
    for h in hardware:
        attention, ffn = build_preset(model, h, batch=batch, theta=theta).gpu_seconds_per_token
        rows.append({"gpu": h, "attention_ns": attention * 1e9, "ffn_us": ffn * 1e6})
    return plot_gpu_comparison(rows, title=f"{model}, B = {batch}", figsize=figsize,
                               ylims=ylims)


#: Colours of the MoE routings in :func:`plot_routing`.
ROUTING_COLORS = {"balanced": "#333333", "power_law_1.01": "#ff7f0e",
                  "power_law_1.2": "#9467bd"}


def plot_routing(imbalance, ratios, *, axes=None, title: str | None = None):
    """Step-time stages and the objective against the ratio, under each MoE routing.

    Parameters
    ----------
    imbalance : afdlib.costs.RoutingImbalance
        Presets of one model and hardware under several routings
        (:func:`afdlib.costs.routing_imbalance`).
    ratios : array of int
        Ratios r to draw.
    axes : (Axes, Axes), optional
        Where to draw the stage times (left) and the objective (right).
    title : str, optional
        Title of the left panel (default: model, hardware and batch).

    Returns
    -------
    (Axes, Axes)
        Left: the FFN time of a step under each routing (the preset's non-linear curves),
        with the communication and attention times, in ms. Right: the objective of the
        curves (solid, circle at the best integer ratio ``r_int_curves``) and of the linear
        coefficients (dashed, cross at ``r_int``), in tokens/s per GPU or per instance.
    """
    from afdlib.costs.routing import mean_field_objective

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7.0, 3.0))
    left, right = axes
    r = np.asarray(ratios, dtype=float)
    batch, theta, goal = imbalance.batch, imbalance.theta, imbalance.objective
    first = imbalance.cases[0].preset.curves
    left.plot(r, np.full_like(r, float(first.attention(batch * theta, batch=batch))) * 1e3,
              color=ROLE_COLORS["attention"], lw=1.2, label="attention")
    left.plot(r, np.asarray(first.comm(batch=batch, ratio=r), dtype=float) * 1e3,
              color=ROLE_COLORS["communication"], lw=1.2, label="communication")
    for case in imbalance.cases:
        color = ROUTING_COLORS.get(case.routing, "0.3")
        curves = case.preset.curves
        left.plot(r, np.asarray(curves.ffn(r * batch), dtype=float) * 1e3, color=color,
                  label=f"ffn, {case.routing}")
        value = np.asarray(curves.throughput(batch=batch, theta=theta, ratio=r,
                                             objective=goal), dtype=float)
        right.plot(r, value, color=color, label=case.routing)
        k = int(np.argmin(np.abs(r - case.r_int_curves)))
        right.plot(r[k], value[k], "o", color=color, ms=6)
        line = mean_field_objective(case.preset.coefficients, goal, batch=batch, theta=theta)
        right.plot(r, line(r), color=color, ls="--", lw=0.9)
        right.plot(case.r_int, float(line(np.array([float(case.r_int)]))[0]), "x",
                   color=color, ms=6)
    left.set_xlabel("ratio r")
    left.set_ylabel("time per step [ms]")
    left.set_title(title or f"{imbalance.model} on {imbalance.hardware}, B = {batch}",
                   fontsize=9)
    left.legend(fontsize=7, loc="upper left")
    right.set_xlabel("ratio r")
    unit = "gpu" if goal.kind == "gpu" else "instance"
    right.set_ylabel(f"tokens/s per {unit}")
    right.set_title("solid: curves, dashed: linear", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    return left, right
