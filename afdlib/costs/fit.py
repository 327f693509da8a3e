"""Least-squares fits of step-time curves, with diagnostics, and their linearization.

Three forms, each a frozen dataclass with ``predict`` and fit-quality fields:

* :class:`LinearFit` -- ``t = beta + sum_j coef_j * x_j`` (e.g. ``alpha * T + beta``, or the
  per-request attention form ``alpha * T + gamma * B + beta``), by (optionally relative)
  least squares;
* :class:`PlateauLineFit` -- ``t = max(plateau, slope * N + intercept)``, the shape of a MoE
  layer once all local experts are touched (weights streaming, then compute);
* :func:`linearize` -- the least-squares line of any curve over an interval: the linear
  approximation the closed-form provisioning rules need around an operating point.

Diagnostics (:class:`FitQuality`): coefficient of determination ``R^2`` on the original
scale, mean and maximum relative error ``|t_hat - t| / t``, number of points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError

__all__ = ["FitQuality", "fit_quality", "LinearFit", "fit_linear", "PlateauLineFit",
           "fit_plateau_line", "linearize"]


@dataclass(frozen=True)
class FitQuality:
    """Goodness of fit.

    Attributes
    ----------
    r2 : float
        ``1 - SS_res / SS_tot`` on the original scale.
    mean_rel_err, max_rel_err : float
        Mean and maximum of ``|t_hat - t| / t``.
    n : int
        Points.
    """

    r2: float
    mean_rel_err: float
    max_rel_err: float
    n: int

    def to_dict(self) -> dict:
        return {"r2": self.r2, "mean_rel_err": self.mean_rel_err,
                "max_rel_err": self.max_rel_err, "n": self.n}


def fit_quality(y, y_hat) -> FitQuality:
    """R^2 and relative errors of predictions ``y_hat`` of positive observations ``y``."""
    y = np.asarray(y, dtype=float)
    y_hat = np.asarray(y_hat, dtype=float)
    ss_res = float(np.sum((y - y_hat) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    rel = np.abs(y_hat - y) / np.abs(y)
    return FitQuality(r2=r2, mean_rel_err=float(rel.mean()), max_rel_err=float(rel.max()),
                      n=int(y.size))


def _clean(y, name="latency"):
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or y.size == 0:
        raise AfdInputError(f"{name} must be a non-empty 1-d array")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise AfdInputError(f"{name} must be finite and > 0 everywhere")
    return y


@dataclass(frozen=True)
class LinearFit:
    """``t = intercept + sum_j coef[j] * x[names[j]]`` with its fit quality.

    Attributes
    ----------
    names : tuple of str
        Explanatory variables.
    coef : tuple of float
        Slopes, in the units of t per unit of each variable.
    intercept : float
    quality : FitQuality
    """

    names: tuple
    coef: tuple
    intercept: float
    quality: FitQuality

    def predict(self, **x) -> np.ndarray:
        """Evaluate at keyword arrays named like ``names``."""
        out = self.intercept
        for name, c in zip(self.names, self.coef, strict=True):
            out = out + c * np.asarray(x[name], dtype=float)
        return np.asarray(out, dtype=float)

    def __getitem__(self, name: str) -> float:
        return dict(zip(self.names, self.coef, strict=True))[name]


def fit_linear(x: dict, y, *, intercept: bool = True, relative: bool = True) -> LinearFit:
    """Least-squares fit of ``y`` on the columns of ``x``.

    Parameters
    ----------
    x : dict of str -> array
        Explanatory variables, each as long as ``y``.
    y : array
        Observations (> 0, e.g. seconds).
    intercept : bool
        Fit a constant term.
    relative : bool
        Minimize squared *relative* residuals (weights ``1/y``): points spanning decades
        then count alike. R^2 is still reported on the original scale.

    Returns
    -------
    LinearFit

    Raises
    ------
    AfdInputError
        On empty, non-finite or non-positive data, or fewer points than parameters.
    """
    y = _clean(y)
    names = tuple(x)
    cols = []
    for name in names:
        col = np.asarray(x[name], dtype=float)
        if col.shape != y.shape or not np.all(np.isfinite(col)):
            raise AfdInputError(f"variable {name} must be finite and as long as the latency")
        cols.append(col)
    if intercept:
        cols.append(np.ones_like(y))
    a = np.column_stack(cols)
    if y.size < a.shape[1]:
        raise AfdInputError(f"{y.size} points cannot determine {a.shape[1]} coefficients")
    w = 1.0 / y if relative else np.ones_like(y)
    sol, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    coef = tuple(float(c) for c in sol[: len(names)])
    b = float(sol[-1]) if intercept else 0.0
    fit = LinearFit(names, coef, b, FitQuality(0.0, 0.0, 0.0, 0))
    return LinearFit(names, coef, b, fit_quality(y, fit.predict(**x)))


@dataclass(frozen=True)
class PlateauLineFit:
    """``t(N) = max(plateau, slope * N + intercept)`` with its fit quality.

    Attributes
    ----------
    plateau : float
        Flat time while weight streaming dominates (s).
    slope : float
        Time per token once compute dominates (s/token).
    intercept : float
        Intercept of the compute line (s).
    quality : FitQuality
    """

    plateau: float
    slope: float
    intercept: float
    quality: FitQuality

    @property
    def knee(self) -> float:
        """Tokens where the line meets the plateau."""
        return (self.plateau - self.intercept) / self.slope if self.slope > 0 else np.inf

    def predict(self, n) -> np.ndarray:
        return np.maximum(self.plateau, self.slope * np.asarray(n, dtype=float) + self.intercept)


def fit_plateau_line(n, y, *, min_line_points: int = 3) -> PlateauLineFit:
    """Fit ``max(plateau, slope * N + intercept)`` by trying every split of the sorted points.

    For each split the plateau is the (relative least-squares) constant of the lower points
    and the line the relative least-squares line of the upper points; the split with the
    smallest total squared relative residual of the combined max-form wins.

    Raises
    ------
    AfdInputError
        With fewer than ``min_line_points + 1`` points or bad values.
    """
    y = _clean(y)
    n = np.asarray(n, dtype=float)
    if n.shape != y.shape or not np.all(np.isfinite(n)):
        raise AfdInputError("tokens must be finite and as long as the latency")
    if y.size < min_line_points + 1:
        raise AfdInputError(f"need at least {min_line_points + 1} points, got {y.size}")
    order = np.argsort(n, kind="stable")
    n, y = n[order], y[order]
    best = None
    for k in range(1, y.size - min_line_points + 1):
        lo_w = 1.0 / y[:k]
        plateau = float(np.sum(y[:k] * lo_w ** 2) / np.sum(lo_w ** 2))
        a = np.column_stack([n[k:], np.ones(y.size - k)]) / y[k:, None]
        (slope, icpt), *_ = np.linalg.lstsq(a, np.ones(y.size - k), rcond=None)
        if slope <= 0:
            continue
        pred = np.maximum(plateau, slope * n + icpt)
        err = float(np.sum(((pred - y) / y) ** 2))
        if best is None or err < best[0]:
            best = (err, plateau, float(slope), float(icpt))
    if best is None:
        raise AfdInputError("no split gives a rising compute line")
    _, plateau, slope, icpt = best
    pred = np.maximum(plateau, slope * n + icpt)
    return PlateauLineFit(plateau, slope, icpt, fit_quality(y, pred))


def linearize(curve: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, *,
              points: int = 65) -> tuple[float, float, FitQuality]:
    """Least-squares line ``alpha * x + beta`` of ``curve`` on ``[lo, hi]``.

    Parameters
    ----------
    curve : callable
        Vectorized function of x (e.g. FFN seconds of N tokens).
    lo, hi : float
        Interval of x (``0 <= lo < hi``), e.g. the aggregated batches r*B around an
        operating ratio.
    points : int
        Evenly spaced evaluation points.

    Returns
    -------
    alpha, beta : float
        Slope (per unit x) and intercept.
    quality : FitQuality
        How well the line matches the curve on the interval.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi <= lo:
        raise AfdInputError(f"linearization interval must satisfy 0 <= lo < hi, got [{lo}, {hi}]")
    x = np.linspace(lo, hi, points)
    y = np.asarray(curve(x), dtype=float)
    slope, icpt = np.polyfit(x, y, 1)
    return float(slope), float(icpt), fit_quality(y, slope * x + icpt)
