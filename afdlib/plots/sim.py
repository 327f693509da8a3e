"""Figures for the simulation chapter: slot stacks, warm-up, step-time distributions,
sweeps with idle time and barrier overhead, engine comparisons and run-length precision.

Every function draws on a given matplotlib ``ax`` (or a new figure) and returns what it
drew on. Times are plotted in milliseconds, throughput in thousands of tokens per second
per instance.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np

from afdlib.plots import ROLE_COLORS

__all__ = [
    "slot_stack",
    "warmup_curves",
    "step_time_histogram",
    "sweep_throughput",
    "sweep_idle_barrier",
    "sweep_panels",
    "engine_comparison",
    "precision",
]


def _axes(ax, figsize=(6.4, 3.2)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def slot_stack(contexts, *, ax=None, mean=None):
    """One worker's slots stacked: each band is a slot's context, the top edge is ``T_w``.

    Parameters
    ----------
    contexts : ndarray, shape (slots, steps)
        Context of each slot at each step (tokens).
    mean : float, optional
        A horizontal reference, e.g. ``B * theta`` (tokens).
    """
    ax = _axes(ax)
    contexts = np.asarray(contexts, dtype=float)
    steps = np.arange(contexts.shape[1])
    cmap = plt.get_cmap("Blues")
    colors = [cmap(0.35 + 0.5 * i / max(len(contexts) - 1, 1)) for i in range(len(contexts))]
    ax.stackplot(steps, contexts, colors=colors, linewidth=0.3, edgecolor="white")
    ax.plot(steps, contexts.sum(axis=0), color=ROLE_COLORS["attention"], lw=1.2,
            label="worker load $T_w$")
    if mean is not None:
        ax.axhline(mean, color="black", lw=1.0, ls="--", label=r"$B\theta$")
    ax.set_xlabel("decode step")
    ax.set_ylabel("tokens read")
    ax.set_xlim(0, steps[-1])
    ax.legend(loc="upper left")
    return ax


def warmup_curves(curves, *, target=1.0, ax=None, band=None):
    """Mean worker load (relative to ``B theta``) against the step, for several starts.

    Parameters
    ----------
    curves : dict of str -> ndarray
        Label -> mean load at each step divided by ``B theta``.
    target : float
        Level of the stationary mean (1 for relative curves).
    band : float, optional
        Half-width of a tolerance band drawn around ``target`` (e.g. 0.01).
    """
    ax = _axes(ax)
    for (label, y), color in zip(curves.items(), ("#d62728", "#1f77b4", "#2ca02c"),
                                 strict=False):
        ax.plot(np.arange(len(y)), y, label=label, color=color, lw=1.2)
    ax.axhline(target, color="black", lw=0.8)
    if band is not None:
        ax.axhspan(target - band, target + band, color="0.85", zorder=0,
                   label=f"within {100 * band:g}%")
    ax.set_xlabel("decode step")
    ax.set_ylabel(r"mean load / $B\theta$")
    ax.legend(loc="lower right")
    return ax


def step_time_histogram(step_time, *, mean_field=None, ffn_time=None, ax=None, bins=60):
    """Histogram of step times (ms) with the simulated mean and reference levels.

    Parameters
    ----------
    step_time : ndarray
        Step durations (s).
    mean_field : float, optional
        The mean-field step time ``max(t_A(B theta), t_C, t_F)`` (s).
    ffn_time : float, optional
        ``t_F`` (s), the floor of every step.
    """
    ax = _axes(ax)
    ms = 1e3 * np.asarray(step_time)
    ax.hist(ms, bins=bins, color=ROLE_COLORS["attention"], alpha=0.55, density=True)
    ax.axvline(ms.mean(), color="black", lw=1.4, label=f"simulated mean {ms.mean():.2f} ms")
    if mean_field is not None:
        ax.axvline(1e3 * mean_field, color=ROLE_COLORS["barrier"], ls="--", lw=1.4,
                   label=f"mean field {1e3 * mean_field:.2f} ms")
    if ffn_time is not None:
        ax.axvline(1e3 * ffn_time, color=ROLE_COLORS["ffn"], ls=":", lw=1.4,
                   label=f"$t_F$ {1e3 * ffn_time:.2f} ms")
    ax.set_xlabel("step time [ms]")
    ax.set_ylabel("density [1/ms]")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def sweep_throughput(sweep_result, *, ax=None, label="simulated", color="black",
                     mark_best=True):
    """Throughput per instance against the ratio with its 95% band and the best ratio."""
    ax = _axes(ax)
    r = sweep_result.ratios
    y = sweep_result.throughput / 1e3
    ci = sweep_result.throughput_ci95 / 1e3
    ax.plot(r, y, "o-", ms=3, color=color, label=label)
    ok = np.all(np.isfinite(ci), axis=1)
    ax.fill_between(r[ok], ci[ok, 0], ci[ok, 1], color=color, alpha=0.2, lw=0)
    if mark_best:
        best = sweep_result.best_ratio
        ax.axvline(best, color=color, lw=0.8, ls=":")
        ax.annotate(f"best r = {best}", (best, y.max()), textcoords="offset points",
                    xytext=(4, -12), fontsize=8)
    ax.set_xlabel("ratio r")
    ax.set_ylabel("throughput per instance\n[1000 tokens/s]")
    return ax


def sweep_idle_barrier(sweep_result, *, ax=None, gaussian_barrier=None, legend=True):
    """Idle fractions of Attention and FFN (left axis) and barrier overhead (right, ms).

    Parameters
    ----------
    gaussian_barrier : ndarray, optional
        A prediction of the barrier overhead at each ratio (s), drawn dashed.
    """
    ax = _axes(ax)
    r = sweep_result.ratios
    ax.plot(r, 100 * sweep_result.column("attention_idle"), color=ROLE_COLORS["attention"],
            label="Attention idle")
    ax.plot(r, 100 * sweep_result.column("ffn_idle"), color=ROLE_COLORS["ffn"],
            label="FFN idle")
    ax.set_xlabel("ratio r")
    ax.set_ylabel("idle time [%]")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    right.grid(False)
    right.plot(r, 1e3 * sweep_result.column("barrier_overhead"), color=ROLE_COLORS["barrier"],
               label="barrier overhead")
    if gaussian_barrier is not None:
        right.plot(r, 1e3 * np.asarray(gaussian_barrier), color=ROLE_COLORS["barrier"],
                   ls="--", lw=1, label="Gaussian estimate")
    right.set_ylabel("barrier overhead [ms]", color=ROLE_COLORS["barrier"])
    right.set_ylim(bottom=0)
    right.spines["right"].set_visible(True)
    if legend:
        handles = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), fontsize=8, ncol=2)
    return ax


def sweep_panels(sweep_result, *, gaussian_barrier=None, title=None):
    """Two panels: throughput against r, and idle time with barrier overhead against r."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.6))
    sweep_throughput(sweep_result, ax=left)
    sweep_idle_barrier(sweep_result, ax=right, gaussian_barrier=gaussian_barrier)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def engine_comparison(ratios, curves, *, ax=None, styles=None):
    """Throughput per instance against the ratio for several engines or settings.

    Parameters
    ----------
    ratios : array_like
    curves : dict of str -> array_like
        Label -> throughput per instance at each ratio (tokens/s per instance).
    styles : dict of str -> dict, optional
        Matplotlib keyword arguments per label.
    """
    ax = _axes(ax)
    styles = styles or {}
    for label, y in curves.items():
        ax.plot(ratios, np.asarray(y) / 1e3, label=label, **styles.get(label, {}))
    ax.set_xlabel("ratio r")
    ax.set_ylabel("throughput per instance\n[1000 tokens/s]")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return ax


def precision(steps, halfwidths, *, predicted=None, targets=(), ax=None,
              label="batch-means interval of one run"):
    """Relative half-width of the 95% interval against the run length (log-log).

    Parameters
    ----------
    steps : array_like
        Measured steps of each run.
    halfwidths : array_like
        Relative half-width of each run's interval (fraction of the mean).
    predicted : callable, optional
        ``steps -> relative half-width`` from the autocorrelation time, drawn as a line.
    targets : sequence of float
        Precisions to mark as horizontal lines (fractions).
    label : str
        Legend entry of the points.
    """
    ax = _axes(ax)
    steps = np.asarray(steps, dtype=float)
    ax.loglog(steps, 100 * np.asarray(halfwidths), "o", color=ROLE_COLORS["attention"],
              label=label)
    if predicted is not None:
        grid = np.geomspace(steps.min(), steps.max(), 50)
        ax.loglog(grid, 100 * predicted(grid), color="black", lw=1,
                  label=r"$1.96\,\mathrm{sd}(\tau)\sqrt{\tau_{int}/n}\,/\,E[\tau]$")
    for t in targets:
        ax.axhline(100 * t, color="0.6", lw=0.8, ls=":")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("measured steps n")
    ax.set_ylabel("95% half-width [% of mean]")
    ax.legend(fontsize=8)
    return ax
