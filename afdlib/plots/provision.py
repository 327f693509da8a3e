"""Figures for the provisioning chapters: step-time components, throughput curves, regimes,
the expected maximum of normals, and the barrier's effect on the optimum.

Every function draws on a given matplotlib ``ax`` (or a new figure) and returns what it drew
on. Times are plotted in milliseconds, throughput in thousands of tokens per second per
instance.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np

from afdlib.model import OperatingPoint, best_integer_ratio
from afdlib.plots import ROLE_COLORS
from afdlib.provision import (
    mean_field_ratio,
    step_components,
    throughput_barrier,
    throughput_mean_field,
)

__all__ = [
    "step_times",
    "throughput_curves",
    "regime_panels",
    "ratio_versus_theta",
    "meanfield_explorer",
    "expected_max",
    "standardized_load_hist",
    "step_decomposition",
    "barrier_shift",
    "barrier_explorer",
    "worker_bars",
    "attention_cap",
]

_MF_COLOR = "black"
_MARK_LABELS = {"r_A": "$r_A$", "r_C": "$r_C$", "r_peak": r"$r_{\mathrm{peak}}$",
                "r_peak_C": r"$r_{\mathrm{peak},C}$", "r_CF": "$r_{CF}$"}
_BARRIER_COLOR = ROLE_COLORS["barrier"]


def _axes(ax, figsize=(6.4, 3.2)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def step_times(point: OperatingPoint, ratios, *, ax=None, marks: bool = True, legend=True):
    """Mean-field step-time components against the ratio, with r_A, r_C, r_peak marked.

    Parameters
    ----------
    point : OperatingPoint
        Coefficients, per-slot mean load theta (tokens) and slots per worker B.
    ratios : array_like
        Ratios to draw (> 0).
    marks : bool
        Draw the closed-form candidates inside the plotted range as dotted lines.
    """
    ax = _axes(ax)
    r = np.asarray(ratios, dtype=float)
    comp = step_components(point, r)
    ax.plot(r, 1e3 * comp["step"], color="0.75", lw=5, label=r"step $\tau$", zorder=1)
    for key, label in (("attention", "$t_A$"), ("communication", "$t_C$"), ("ffn", "$t_F$")):
        ax.plot(r, 1e3 * comp[key], color=ROLE_COLORS[key], lw=1.5, label=label, zorder=2)
    if marks:
        opt = mean_field_ratio(point)
        for name, style in (("r_A", ":"), ("r_C", "-."), ("r_peak", "--"), ("r_peak_C", "--"),
                            ("r_CF", ":")):
            x = getattr(opt, name)
            if np.isfinite(x) and r.min() <= x <= r.max():
                ax.axvline(x, color="0.4", ls=style, lw=1)
                ax.annotate(_MARK_LABELS[name], (x, 1.0),
                            xycoords=("data", "axes fraction"), ha="center", va="bottom",
                            fontsize=8)
    ax.set_xlabel("ratio r")
    ax.set_ylabel("time per step [ms]")
    ax.set_ylim(bottom=0)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return ax


def throughput_curves(point: OperatingPoint, ratios, *, barrier: bool = False, ax=None,
                      integers: bool = True, legend=True):
    """The objective against the ratio: mean field (and the barrier model, with ``barrier``).

    Marks the closed-form ``r*`` (a dot on the curve) and, with ``integers``, the best
    integer ratio of each model (open markers).
    """
    ax = _axes(ax)
    r = np.asarray(ratios, dtype=float)
    lam = throughput_mean_field(point, r)
    ax.plot(r, lam / 1e3, color=_MF_COLOR, lw=1.5, label="mean field")
    opt = mean_field_ratio(point)
    if r.min() <= opt.r_star <= r.max():
        ax.plot([opt.r_star], [opt.throughput / 1e3], "o", color=_MF_COLOR, ms=5)
    top = int(np.floor(r.max()))
    if integers and top >= 1:
        k, vals = best_integer_ratio(lambda x: throughput_mean_field(point, x), top)
        ax.plot([k], [vals[k - 1] / 1e3], "s", mfc="none", color=_MF_COLOR, ms=8)
    if barrier:
        rb = r[r >= 1]                          # the barrier model needs a whole worker
        lam_b = throughput_barrier(point, rb)
        ax.plot(rb, lam_b / 1e3, color=_BARRIER_COLOR, lw=1.5, label="barrier")
        if integers and top >= 1:
            k, vals = best_integer_ratio(lambda x: throughput_barrier(point, x), top)
            ax.plot([k], [vals[k - 1] / 1e3], "s", mfc="none", color=_BARRIER_COLOR, ms=8)
    ax.set_xlabel("ratio r")
    ax.set_ylabel("throughput per instance\n[1000 tokens/s]")
    ax.set_ylim(bottom=0)
    if legend:
        ax.legend(loc="lower right", fontsize=8)
    return ax


def regime_panels(cases, ratios, *, figsize=(9.6, 5.0)):
    """Columns of (step times over throughput), one per case.

    Parameters
    ----------
    cases : list of (title, OperatingPoint)
    ratios : array_like
    """
    fig, axes = plt.subplots(2, len(cases), figsize=figsize, sharex=True)
    axes = np.atleast_2d(axes)
    if axes.shape[0] != 2:
        axes = axes.T
    for j, (title, point) in enumerate(cases):
        step_times(point, ratios, ax=axes[0, j], legend=False)
        throughput_curves(point, ratios, ax=axes[1, j], legend=False)
        axes[0, j].set_title(title, fontsize=10, pad=14)
        if j:
            axes[0, j].set_ylabel("")
            axes[1, j].set_ylabel("")
        axes[0, j].set_xlabel("")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9)
    return fig


def ratio_versus_theta(point: OperatingPoint, batches, thetas, *, ax=None):
    """Closed-form r* against theta for several batch sizes, coloured by regime (the
    point's coefficients and objective; its theta and batch are replaced)."""
    ax = _axes(ax)
    thetas = np.asarray(thetas, dtype=float)
    styles = ["-", "--", ":", "-."]
    seen = set()
    for i, b in enumerate(batches):
        opts = [mean_field_ratio(point.replace(theta=t, batch=b)) for t in thetas]
        r = np.array([o.r_star for o in opts])
        regimes = np.array([o.regime for o in opts])
        ax.plot(thetas, r, color="0.6", lw=0.8, ls=styles[i % 4])
        for reg in ("attention", "communication", "ffn"):
            sel = regimes == reg
            if sel.any():
                ax.plot(thetas[sel], r[sel], ".", ms=3, color=ROLE_COLORS[reg])
        ax.annotate(f"B = {b}", (thetas[0], r[0]), fontsize=8, ha="left", va="bottom",
                    xytext=(0, 3), textcoords="offset points")
        seen.update(regimes.tolist())
    for reg in ("attention", "communication", "ffn"):
        if reg in seen:
            ax.plot([], [], ".", color=ROLE_COLORS[reg], label=f"{reg}-bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"per-slot load $\theta$ [tokens]")
    ax.set_ylabel("optimal ratio r*")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def meanfield_explorer(point: OperatingPoint, *, ratios=None, **overrides):
    """Two panels for the widget: step-time components and throughput, with the regime.

    ``overrides`` replace coefficients by name (e.g. ``alpha_C=1e-5``).
    """
    if overrides:
        point = point.replace(coeffs=dataclasses.replace(point.coeffs, **overrides))
    opt = mean_field_ratio(point)
    if ratios is None:
        ratios = np.linspace(0.05, max(8.0, 2.2 * opt.r_star), 400)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(7.0, 2.7))
    step_times(point, ratios, ax=a0, legend=False)
    throughput_curves(point, ratios, ax=a1, legend=False)
    fig.suptitle(f"r* = {opt.r_star:.2f} ({opt.formula.replace('_', '')}), {opt.regime}-bound",
                 fontsize=10, color=ROLE_COLORS[opt.regime])
    handles, labels = a0.get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    fig.legend(handles, labels, loc="center right", fontsize=8)
    return fig


def expected_max(r, exact, *, simulated=None, simulated_se=None, approximations=None, ax=None):
    """Exact E[max of r normals] against r, with approximations and simulated means.

    Parameters
    ----------
    r, exact : array_like
        Ratios and the exact expected maximum.
    simulated, simulated_se : tuple of arrays, optional
        ``(r_sim, mean)`` and standard errors of Monte-Carlo maxima.
    approximations : dict of label -> array, optional
        Curves over ``r`` drawn dashed.
    """
    ax = _axes(ax)
    ax.plot(r, exact, color="black", lw=1.8, label="exact")
    for (label, values), ls in zip((approximations or {}).items(), ["--", ":", "-."],
                                   strict=False):
        ax.plot(r, values, ls=ls, lw=1.3, label=label)
    if simulated is not None:
        rs, ms = simulated
        ax.errorbar(rs, ms, yerr=None if simulated_se is None else 2 * np.asarray(simulated_se),
                    fmt="o", ms=4, color=_BARRIER_COLOR, label="simulation (± 2 s.e.)")
    ax.set_xscale("log")
    ax.set_xlabel("number of workers r")
    ax.set_ylabel("E[max of r standard normals]")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def standardized_load_hist(samples: dict, *, ax=None, bins=None):
    """Histograms of standardized worker loads with the standard normal density on top.

    Parameters
    ----------
    samples : dict of label -> ndarray
        Standardized loads ``(T - B theta) / (sqrt(B) sigma)``.
    """
    ax = _axes(ax)
    bins = np.linspace(-3.5, 6, 80) if bins is None else bins
    for label, x in samples.items():
        ax.hist(x, bins=bins, density=True, histtype="step", lw=1.4, label=label)
    grid = np.linspace(bins[0], bins[-1], 400)
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color="black", lw=1, ls="--",
            label="standard normal")
    ax.set_xlabel(r"standardized worker load $(T_w - B\theta)/(\sqrt{B}\sigma)$")
    ax.set_ylabel("density")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def step_decomposition(r, parts: dict, *, ax=None):
    """Stacked parts of the expected step time against r (ms): mean field, variability, barrier."""
    ax = _axes(ax)
    colors = {"mean_field": "0.7", "variability": "#ff7f0e", "barrier": _BARRIER_COLOR}
    labels = {"mean_field": r"mean field $\max(G, \mu_A)$",
              "variability": "one random worker (Jensen gap)",
              "barrier": "waiting for the slowest of r"}
    ax.stackplot(r, *[1e3 * parts[k] for k in ("mean_field", "variability", "barrier")],
                 colors=[colors[k] for k in ("mean_field", "variability", "barrier")],
                 labels=[labels[k] for k in ("mean_field", "variability", "barrier")])
    ax.set_xlabel("ratio r")
    ax.set_ylabel("expected step time [ms]")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def barrier_shift(batches, shifts: dict, *, ax=None):
    """Ratio of the barrier optimum to the mean-field optimum against B, one line per workload."""
    ax = _axes(ax)
    for label, values in shifts.items():
        ax.plot(batches, values, "o-", ms=4, lw=1.2, label=label)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("slots per worker B")
    ax.set_ylabel(r"$r^*_{\mathrm{barrier}} / r^*_{\mathrm{mean\ field}}$")
    ax.legend(loc="best", fontsize=8)
    return ax


def barrier_explorer(point: OperatingPoint, cv: float, *, max_ratio=None):
    """Widget frame: mean-field and barrier throughput (log ratio axis) with both integer
    optima, for a per-slot load spread ``cv = sigma / theta`` (replacing the point's
    load_std)."""
    point = point.replace(load_std=cv * point.theta)
    opt = mean_field_ratio(point)
    top = max_ratio or int(max(16, np.ceil(2.5 * opt.r_star)))
    ratios = np.unique(np.concatenate([np.geomspace(1, top, 300), np.arange(1, top + 1)]))
    fig, ax = plt.subplots(figsize=(6.4, 2.9))
    throughput_curves(point, ratios, barrier=True, ax=ax)
    ax.set_xscale("log")
    k_b, _ = best_integer_ratio(lambda x: throughput_barrier(point, x), top)
    k_m, _ = best_integer_ratio(lambda x: throughput_mean_field(point, x), top)
    ax.set_title(f"best integer ratio: mean field {k_m}, barrier {k_b}", fontsize=10)
    fig.tight_layout()
    return fig


def worker_bars(attention_times, *, rest=None, ax=None):
    """One step: each worker's attention time (ms) as a bar, with their mean, their maximum
    (the step's attention stage) and the rest of the step ``G`` if given.

    Parameters
    ----------
    attention_times : array_like
        Attention time of each worker at one step (s).
    rest : float, optional
        ``max(t_C, t_F)`` of the step (s).
    """
    ax = _axes(ax)
    t = 1e3 * np.asarray(attention_times, dtype=float)
    w = np.arange(1, t.size + 1)
    slowest = int(np.argmax(t))
    colors = [ROLE_COLORS["attention"]] * t.size
    colors[slowest] = _BARRIER_COLOR
    ax.bar(w, t, color=colors, width=0.75)
    ax.axhline(t.mean(), color="black", lw=1.2, ls="--", label="mean over workers")
    ax.axhline(t.max(), color=_BARRIER_COLOR, lw=1.2, label="slowest worker: the step waits")
    if rest is not None:
        ax.axhline(1e3 * rest, color=ROLE_COLORS["ffn"], lw=1.2, ls=":",
                   label="FFN / communication")
    ax.set_xlabel("attention worker w")
    ax.set_ylabel("attention time [ms]")
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.0, 1.0))
    return ax


def attention_cap(kappas, caps, *, approx=None, points=None, ax=None):
    """The attention-limited ratio against kappa = sigma_A / mu_A (log-log), optionally with
    an approximation and labelled (kappa, r*) points."""
    ax = _axes(ax)
    ax.plot(kappas, caps, color="black", lw=1.6, label="exact cap")
    if approx is not None:
        ax.plot(kappas, approx, ls="--", lw=1.2, label=r"$\sqrt{2\ln r}/\kappa$")
    for label, (k, r) in (points or {}).items():
        ax.plot([k], [r], "o", ms=5, color=_BARRIER_COLOR)
        ax.annotate(label, (k, r), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\kappa = \sigma_A / \mu_A$")
    ax.set_ylabel("attention-limited ratio")
    ax.legend(loc="upper right", fontsize=8)
    return ax
