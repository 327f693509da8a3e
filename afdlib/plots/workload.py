"""Figures for the workload chapters: slot load paths, length distributions, theta."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["slot_path", "length_histogram", "decode_survival", "theta_bars", "theta_explorer"]


def _axes(ax, figsize=(6.4, 3.2)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax


def slot_path(load: np.ndarray, request: np.ndarray, *, theta: float | None = None,
              naive: float | None = None, ax=None):
    """One slot's load over time (a sawtooth), with theta and E[P] + E[D] as levels.

    Parameters
    ----------
    load : ndarray
        Cached tokens read at each step (tokens).
    request : ndarray
        Request index at each step (alternating shades mark requests).
    theta, naive : float, optional
        Horizontal reference lines (tokens).
    """
    ax = _axes(ax)
    steps = np.arange(load.size)
    for k in np.unique(request):
        sel = request == k
        ax.plot(steps[sel], load[sel], color="#1f77b4" if k % 2 == 0 else "#6baed6", lw=1.2)
    if theta is not None:
        ax.axhline(theta, color="black", lw=1.2, label=r"$\theta$ (long-run mean)")
    if naive is not None:
        ax.axhline(naive, color="#d62728", lw=1.2, ls="--", label=r"$E[P] + E[D]$")
    ax.set_xlabel("decode step")
    ax.set_ylabel("tokens read by the slot")
    if theta is not None or naive is not None:
        ax.legend(loc="upper right")
    return ax


def length_histogram(values: np.ndarray, *, ax=None, bins: int = 40, label: str | None = None,
                     color: str | None = None, log: bool = True):
    """Histogram of token counts on a logarithmic length axis (density per log-bin)."""
    ax = _axes(ax)
    values = np.asarray(values)
    positive = values[values > 0]
    if log and positive.size:
        edges = np.logspace(0, np.log10(positive.max()) + 0.01, bins)
        ax.set_xscale("log")
    else:
        edges = bins
    ax.hist(positive if log else values, bins=edges, histtype="stepfilled", alpha=0.45,
            color=color, label=label, density=False)
    ax.set_ylabel("requests")
    return ax


def decode_survival(decode: np.ndarray, *, ax=None, label: str | None = None,
                    color: str | None = None, geometric: bool = True):
    """Empirical survival ``P(D >= d)`` on a log axis, with the geometric law of equal mean.

    A geometric law is a straight line on this plot; curvature shows how a trace departs
    from memoryless decoding.
    """
    ax = _axes(ax)
    d = np.sort(np.asarray(decode))
    surv = 1.0 - np.arange(d.size) / d.size
    ax.step(d, surv, where="post", color=color, label=label, lw=1.3)
    if geometric:
        p = 1.0 / d.mean()
        grid = np.linspace(1, d.max(), 200)
        ax.plot(grid, (1 - p) ** (grid - 1), color=color, ls=":", lw=1.2)
    ax.set_yscale("log")
    ax.set_ylim(max(0.5 / d.size, 1e-5), 1.05)
    ax.set_xlabel("decode steps d")
    ax.set_ylabel(r"$P(D \geq d)$")
    return ax


def theta_bars(names, theta, naive, *, theta_ci=None, ax=None):
    """Side-by-side bars of theta (with interval) and E[P] + E[D] for several workloads."""
    ax = _axes(ax)
    x = np.arange(len(names))
    theta = np.asarray(theta, dtype=float)
    yerr = None
    if theta_ci is not None:
        ci = np.asarray(theta_ci, dtype=float)
        yerr = np.vstack([theta - ci[:, 0], ci[:, 1] - theta])
    ax.bar(x - 0.2, theta, width=0.4, yerr=yerr, capsize=3, color="#1f77b4",
           label=r"$\theta$ (95% interval)")
    ax.bar(x + 0.2, naive, width=0.4, color="#d62728", alpha=0.6, label=r"$E[P] + E[D]$")
    ax.set_xticks(x, names)
    ax.set_ylabel("tokens")
    ax.legend()
    return ax


def theta_explorer(workload, *, title: str | None = None, top: float | None = None):
    """Two panels for a workload with independent laws: the decode-length law and its
    length-biased version (left), and theta against E[P] + E[D] (right).

    Parameters
    ----------
    workload : afdlib.workload.IndependentLengths
    title : str, optional
    top : float, optional
        Upper end of the right panel's axis [tokens] (default: a quarter above the larger
        bar); fix it so that the frames of a slider share the axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from afdlib.workload import load_stats

    stats = load_stats(workload)
    decode = workload.decode
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 2.8),
                                      gridspec_kw={"width_ratios": [1.6, 1]})
    hi = max(int(decode.mean * 12), 20)
    d = np.arange(1, hi + 1)
    pmf = decode.pmf(d)
    biased = d * pmf / decode.mean
    if pmf.max() > 0.999:  # a point mass: draw it as a spike
        left.vlines(d[pmf > 0], 0, 1, color="#1f77b4", lw=2, label="a random request")
        left.vlines(d[pmf > 0] * 1.04, 0, 1, color="#ff7f0e", lw=2,
                    label="the request in service")
    else:
        left.plot(d, pmf * d, color="#1f77b4", label="a random request")
        left.plot(d, biased * d, color="#ff7f0e", label="the request in service")
    left.set_xscale("log")
    left.set_xlim(1, hi)
    left.set_xlabel("decode steps d")
    left.set_ylabel("d * probability")
    left.legend(fontsize=8, loc="upper left")
    right.bar([0, 1], [stats.theta, stats.naive_theta], color=["#1f77b4", "#d62728"],
              alpha=0.8)
    right.set_xticks([0, 1], [r"$\theta$", r"$E[P]+E[D]$"])
    right.set_ylabel("tokens")
    right.set_ylim(0, top if top is not None else max(stats.theta, stats.naive_theta) * 1.25)
    for x, v in enumerate([stats.theta, stats.naive_theta]):
        right.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
