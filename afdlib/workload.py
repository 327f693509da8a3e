"""Workload layer: request-length laws and the per-slot load statistics theta and sigma.

A slot of an Attention worker is a renewal process whose cycles are requests. Request
``i`` has a prompt of ``P_i >= 0`` tokens and ``D_i >= 1`` decode steps; at its j-th decode
step (``j = 0 .. D_i - 1``) attention reads ``P_i + j`` cached tokens. By the
renewal-reward theorem the long-run load of a slot (tokens read per step) has mean

.. math::  \\theta = E[D P + D(D-1)/2] / E[D]

and second moment ``m2 = E[D P^2 + P D(D-1) + D(D-1)(2D-1)/6] / E[D]``; the stationary
load variance is ``sigma^2 = m2 - theta^2``. All lengths are in tokens (prompt, context)
or steps (decode), and theta, sigma are in tokens.

This module offers

* length laws (:class:`Geometric`, :class:`Deterministic`, :class:`DiscretizedLognormal`,
  :class:`Uniform`, :class:`Empirical`, :class:`Mixture`) with exact moments, sampling, and
  length-biased sampling;
* workloads: :class:`IndependentLengths` (P and D independent laws) and
  :class:`JointLengths` (rows of a trace, P and D jointly);
* :func:`load_stats` (exact theta, sigma of a workload) and :func:`estimate_load`
  (the nonparametric ratio estimators from trace rows with delta-method intervals on
  the log scale, and warnings when they should not be trusted);
* :func:`sample_stationary_slots`, the state of a slot at a uniformly chosen time, and
  :func:`stationary_load_pmf`, the exact law of its load;
* :func:`check_workload`, the check every layer applies to a workload argument.

The command line's ``NAME:ARGS`` syntax for laws is :func:`afdlib.cli.laws.parse_length_law`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import special

from afdlib.errors import AfdInputError
from afdlib.validate import check_int, check_number, fail

__all__ = [
    "LengthLaw",
    "Geometric",
    "Deterministic",
    "DiscretizedLognormal",
    "Uniform",
    "Empirical",
    "Mixture",
    "IndependentLengths",
    "JointLengths",
    "Workload",
    "LoadStats",
    "LoadEstimate",
    "request_rewards",
    "load_stats",
    "estimate_load",
    "SMALL_SAMPLE",
    "HEAVY_SHARE",
    "decode_steps_from_output",
    "sample_stationary_slots",
    "sample_stationary_slots_of",
    "slot_load_path",
    "stationary_load_pmf",
    "check_workload",
    "lognormal_with_mean_cv",
]


# ---------------------------------------------------------------------------
# Length laws
# ---------------------------------------------------------------------------


class LengthLaw(ABC):
    """A probability law on non-negative integers (token counts or decode steps).

    Subclasses give the first three raw moments exactly, draw samples, and draw
    *length-biased* samples (probability proportional to ``x * P(X = x)``), which is how a
    slot observed at a random time sees the request it is serving.
    """

    @property
    @abstractmethod
    def minimum(self) -> int:
        """Smallest value with positive probability."""

    @abstractmethod
    def raw_moment(self, k: int) -> float:
        """``E[X**k]`` for ``k`` in 1, 2, 3."""

    @abstractmethod
    def pmf(self, x) -> np.ndarray:
        """Probability of each integer in ``x``."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (int64)."""

    @abstractmethod
    def sample_length_biased(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` draws from ``x * P(X = x) / E[X]`` (int64); needs ``E[X] > 0``."""

    @property
    def mean(self) -> float:
        """``E[X]``."""
        return self.raw_moment(1)

    @property
    def variance(self) -> float:
        """``Var[X]``."""
        return self.raw_moment(2) - self.raw_moment(1) ** 2

    def _check_k(self, k: int) -> None:
        if k not in (1, 2, 3):
            raise fail("k", f"raw moments are available for k = 1, 2, 3, not {k!r}")


@dataclass(frozen=True)
class Geometric(LengthLaw):
    """Geometric law on ``{start, start + 1, ...}`` with the given mean.

    ``P(X = start + k) = p (1 - p)**k`` with ``p = 1 / (mean - start + 1)``. With
    ``start = 1`` this is the decode length of a model that stops after each token with
    probability p; it is memoryless, which makes ``theta = E[P] + E[D] - 1``.

    Parameters
    ----------
    mean_value : float
        ``E[X]`` (tokens or steps), at least ``start`` (the :attr:`mean` property of every
        law returns it too).
    start : int
        Smallest value (default 1).
    """

    mean_value: float
    start: int = 1

    def __post_init__(self) -> None:
        start = check_int("geometric start", self.start, minimum=0)
        mean = check_number("geometric mean", self.mean_value, minimum=0.0)
        if mean < start:
            raise AfdInputError(f"geometric mean ({mean}) must be >= start ({start})")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "mean_value", mean)

    @property
    def p(self) -> float:
        """Stopping probability per step."""
        return 1.0 / (self.mean_value - self.start + 1.0)

    @property
    def minimum(self) -> int:
        return self.start

    def _shifted_moments(self) -> tuple[float, float, float]:
        """``E[Y], E[Y^2], E[Y^3]`` of ``Y = X - start`` (geometric on 0, 1, ...)."""
        p = self.p
        q = 1.0 - p
        return q / p, q * (1 + q) / p**2, q * (1 + 4 * q + q * q) / p**3

    def raw_moment(self, k: int) -> float:
        self._check_k(k)
        s = float(self.start)
        y1, y2, y3 = self._shifted_moments()
        if k == 1:
            return s + y1
        if k == 2:
            return s * s + 2 * s * y1 + y2
        return s**3 + 3 * s * s * y1 + 3 * s * y2 + y3

    def pmf(self, x) -> np.ndarray:
        x = np.asarray(x)
        k = x - self.start
        p = self.p
        with np.errstate(invalid="ignore"):
            out = np.where(k >= 0, p * (1.0 - p) ** np.maximum(k, 0), 0.0)
        return out

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # numpy's geometric counts trials (support 1, 2, ...)
        return (rng.geometric(self.p, size=size) - 1 + self.start).astype(np.int64)

    def sample_length_biased(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # x * p q^(x - s) = s * [p q^y] + y * [p q^y]: a mixture of Y ~ Geom0 (weight s) and
        # the size-biased Geom0, which is 1 + NegBin(2, p) (weight E[Y]).
        if self.mean_value == 0:
            raise AfdInputError("length-biased sampling needs a positive mean")
        s = self.start
        y_mean = self.mean_value - s
        plain = rng.random(size) < s / (s + y_mean)
        y = np.where(
            plain,
            rng.geometric(self.p, size=size) - 1,
            1 + rng.negative_binomial(2, self.p, size=size),
        )
        return (s + y).astype(np.int64)

    def __str__(self) -> str:
        return f"geometric(mean={self.mean_value:g}, start={self.start})"


class _FiniteLaw(LengthLaw):
    """A law given by a finite support and its probabilities (exact everything)."""

    @property
    @abstractmethod
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(support, probabilities)``: int64 values (increasing) and float weights summing to 1."""

    @property
    def minimum(self) -> int:
        support, probs = self.table
        return int(support[probs > 0][0])

    @property
    def maximum(self) -> int:
        """Largest value with positive probability."""
        support, probs = self.table
        return int(support[probs > 0][-1])

    def raw_moment(self, k: int) -> float:
        self._check_k(k)
        support, probs = self.table
        return float(np.dot(probs, support.astype(float) ** k))

    def pmf(self, x) -> np.ndarray:
        support, probs = self.table
        x = np.asarray(x)
        idx = np.searchsorted(support, x)
        idx_clipped = np.minimum(idx, len(support) - 1)
        hit = (idx < len(support)) & (support[idx_clipped] == x)
        return np.where(hit, probs[idx_clipped], 0.0)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        support, probs = self.table
        return support[_draw_indices(rng, self._cdf, size)]

    def sample_length_biased(self, rng: np.random.Generator, size: int) -> np.ndarray:
        support, _ = self.table
        if self._biased_cdf is None:
            raise AfdInputError("length-biased sampling needs a positive mean")
        return support[_draw_indices(rng, self._biased_cdf, size)]

    @cached_property
    def _cdf(self) -> np.ndarray:
        _, probs = self.table
        return _normalized_cdf(probs)

    @cached_property
    def _biased_cdf(self) -> np.ndarray | None:
        support, probs = self.table
        weights = probs * support
        return _normalized_cdf(weights) if weights.sum() > 0 else None


def _normalized_cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=float)
    cdf /= cdf[-1]
    return cdf


def _draw_indices(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return _indices_of(cdf, rng.random(size))


def _indices_of(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn by the uniforms ``u`` from the law with the cumulative ``cdf``."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


@dataclass(frozen=True)
class Deterministic(_FiniteLaw):
    """Every request has the same length (tokens or steps).

    Parameters
    ----------
    value : int
        The length, >= 0.
    """

    value: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_int("deterministic value", self.value,
                                                         minimum=0))

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.value], dtype=np.int64), np.array([1.0])

    def __str__(self) -> str:
        return f"deterministic({self.value})"


@dataclass(frozen=True)
class Uniform(_FiniteLaw):
    """Discrete uniform law on ``{low, ..., high}``.

    Parameters
    ----------
    low, high : int
        Smallest and largest value, ``0 <= low <= high`` (tokens or steps).
    """

    low: int
    high: int

    def __post_init__(self) -> None:
        low = check_int("uniform low", self.low, minimum=0)
        high = check_int("uniform high", self.high, minimum=0)
        if high < low:
            raise AfdInputError(f"uniform high ({high}) must be >= low ({low})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        support = np.arange(self.low, self.high + 1, dtype=np.int64)
        return support, np.full(len(support), 1.0 / len(support))

    def __str__(self) -> str:
        return f"uniform({self.low}, {self.high})"


@dataclass(frozen=True)
class DiscretizedLognormal(_FiniteLaw):
    """A lognormal length rounded to the nearest integer and clipped to ``[minimum, maximum]``.

    ``X = clip(round(L), min_value, max_value)`` with
    ``log L ~ Normal(log(median), sigma**2)``. The clipping is part of the law (mass beyond
    either end sits on that end), so moments and sampling are exact sums over the finite
    support; ``max_value`` plays the part of a model's context limit.

    Parameters
    ----------
    median : float
        Median of the underlying lognormal (tokens or steps), > 0.
    sigma : float
        Standard deviation of ``log L``, >= 0.
    min_value, max_value : int
        Clipping bounds (``0 <= min_value <= max_value <= 2**22``; the :attr:`minimum`
        property is the smallest value with positive probability).
    """

    median: float
    sigma: float
    min_value: int = 1
    max_value: int = 131072

    def __post_init__(self) -> None:
        check_number("lognormal median", self.median, minimum=0.0, strict=True)
        check_number("lognormal sigma", self.sigma, minimum=0.0)
        lo = check_int("lognormal minimum", self.min_value, minimum=0)
        hi = check_int("lognormal maximum", self.max_value, minimum=0)
        if hi < lo:
            raise AfdInputError(f"lognormal maximum ({hi}) must be >= minimum ({lo})")
        if hi > 2**22:
            raise AfdInputError(f"lognormal maximum must be <= {2**22}, got {hi}")
        object.__setattr__(self, "min_value", lo)
        object.__setattr__(self, "max_value", hi)
        object.__setattr__(self, "median", float(self.median))
        object.__setattr__(self, "sigma", float(self.sigma))

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        support = np.arange(self.min_value, self.max_value + 1, dtype=np.int64)
        if self.sigma == 0:
            value = min(max(int(np.floor(self.median + 0.5)), self.min_value), self.max_value)
            probs = (support == value).astype(float)
            return support, probs
        # P(round(L) <= x) = P(L < x + 1/2); edges between consecutive support points
        edges = np.log(support[:-1] + 0.5) - math.log(self.median)
        cdf_inner = special.ndtr(edges / self.sigma)
        cdf = np.concatenate([[0.0], cdf_inner, [1.0]])
        probs = np.diff(cdf)
        return support, probs

    def __str__(self) -> str:
        return (f"lognormal(median={self.median:g}, sigma={self.sigma:g}, "
                f"min={self.min_value}, max={self.max_value})")


@dataclass(frozen=True, eq=False)
class Empirical(_FiniteLaw):
    """The empirical law of observed lengths (optionally weighted).

    Parameters
    ----------
    values : array_like of int
        Observed lengths, >= 0.
    weights : array_like of float, optional
        Non-negative weights (default: equal).
    """

    values: np.ndarray
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        if values.ndim != 1 or values.size == 0:
            raise AfdInputError("empirical law needs a non-empty 1-d array of lengths")
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.bool_):
            raise AfdInputError("empirical lengths must be numbers")
        if not np.all(np.isfinite(values)):
            raise AfdInputError("empirical lengths contain NaN or infinity")
        if np.any(values < 0):
            raise AfdInputError("empirical lengths must be >= 0")
        if np.any(values != np.round(values)):
            raise AfdInputError("empirical lengths must be integers")
        if self.weights is None:
            weights = np.ones(values.size)
        else:
            weights = np.asarray(self.weights, dtype=float)
            if weights.shape != values.shape:
                raise AfdInputError("empirical weights must have the same shape as values")
            if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
                raise AfdInputError("empirical weights must be finite, >= 0 and not all zero")
        object.__setattr__(self, "values", values.astype(np.int64))
        object.__setattr__(self, "weights", weights)

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        support, inverse = np.unique(self.values, return_inverse=True)
        probs = np.bincount(inverse, weights=self.weights, minlength=len(support))
        return support, probs / probs.sum()

    def __str__(self) -> str:
        return f"empirical(n={self.values.size})"


@dataclass(frozen=True, eq=False)
class Mixture(LengthLaw):
    """A finite mixture: with probability ``weights[k]`` draw from ``components[k]``.

    Parameters
    ----------
    components : tuple of LengthLaw
        The laws mixed.
    weights : tuple of float
        Non-negative weights, one per component (normalized to sum to 1).
    """

    components: tuple[LengthLaw, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        comps = tuple(self.components)
        if not comps:
            raise AfdInputError("a mixture needs at least one component")
        if not all(isinstance(c, LengthLaw) for c in comps):
            raise AfdInputError("mixture components must be length laws")
        w = np.asarray(self.weights, dtype=float)
        if w.shape != (len(comps),):
            raise AfdInputError("a mixture needs one weight per component")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise AfdInputError("mixture weights must be finite, >= 0 and not all zero")
        object.__setattr__(self, "components", comps)
        object.__setattr__(self, "weights", tuple(float(x) for x in w / w.sum()))

    @property
    def minimum(self) -> int:
        return min(c.minimum for c, w in zip(self.components, self.weights, strict=True) if w > 0)

    def raw_moment(self, k: int) -> float:
        self._check_k(k)
        return float(sum(w * c.raw_moment(k)
                         for c, w in zip(self.components, self.weights, strict=True)))

    def pmf(self, x) -> np.ndarray:
        return sum(w * c.pmf(x) for c, w in zip(self.components, self.weights, strict=True))

    def _draw(self, rng, size, probs, method) -> np.ndarray:
        which = rng.choice(len(self.components), size=size, p=probs)
        out = np.empty(size, dtype=np.int64)
        for k, comp in enumerate(self.components):
            mask = which == k
            n = int(mask.sum())
            if n:
                out[mask] = getattr(comp, method)(rng, n)
        return out

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self._draw(rng, size, np.asarray(self.weights), "sample")

    def sample_length_biased(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # choose a component with probability w_k E_k[X] / E[X], then length-bias within it
        w = np.array([w * c.mean for c, w in zip(self.components, self.weights, strict=True)])
        if w.sum() <= 0:
            raise AfdInputError("length-biased sampling needs a positive mean")
        return self._draw(rng, size, w / w.sum(), "sample_length_biased")

    def __str__(self) -> str:
        parts = ", ".join(f"{w:.3g}*{c}" for c, w in zip(self.components, self.weights,
                                                          strict=True))
        return f"mixture({parts})"


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndependentLengths:
    """Prompt and decode lengths drawn independently from two laws.

    Parameters
    ----------
    prompt : LengthLaw
        Law of the context before the first decode step, P >= 0 (tokens).
    decode : LengthLaw
        Law of the number of decode steps, D >= 1.
    """

    prompt: LengthLaw
    decode: LengthLaw

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, LengthLaw) or not isinstance(self.decode, LengthLaw):
            raise AfdInputError("prompt and decode must be length laws")
        if self.decode.minimum < 1:
            raise AfdInputError(
                f"decode law {self.decode} puts mass on 0 steps; decode lengths must be >= 1 "
                "(drop requests without decode steps, they carry no load)"
            )

    def sample_requests(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` independent requests: arrays ``(prompt, decode)`` (int64)."""
        return self.prompt.sample(rng, size), self.decode.sample(rng, size)

    def sample_length_biased_requests(self, rng: np.random.Generator,
                                      size: int) -> tuple[np.ndarray, np.ndarray]:
        """Requests drawn with probability proportional to their decode length D."""
        return self.prompt.sample(rng, size), self.decode.sample_length_biased(rng, size)


@dataclass(frozen=True, eq=False)
class JointLengths:
    """Requests given jointly as rows ``(prompt[i], decode[i])``, e.g. from a trace.

    Sampling draws rows uniformly with replacement, so P and D keep their dependence.

    Parameters
    ----------
    prompt : array_like of int
        Context before the first decode step of each request (tokens), >= 0.
    decode : array_like of int
        Decode steps of each request, >= 1.
    name : str
        What the rows are (a trace's name), for messages and labels.
    """

    prompt: np.ndarray
    decode: np.ndarray
    name: str = field(default="trace", compare=False)

    def __post_init__(self) -> None:
        prompt, decode = _validate_rows(self.prompt, self.decode)
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "decode", decode)

    @classmethod
    def from_trace(cls, trace, *, first_token_from_prefill: bool = False) -> JointLengths:
        """Requests of a :class:`afdlib.traces.Trace` under a decode-step convention.

        See :func:`decode_steps_from_output`; rows left without decode steps are dropped.
        """
        prompt, decode = decode_steps_from_output(
            trace.prompt_tokens, trace.output_tokens,
            first_token_from_prefill=first_token_from_prefill,
        )
        return cls(prompt, decode, name=getattr(trace, "name", "trace"))

    def __len__(self) -> int:
        return self.decode.size

    def sample_requests(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` rows drawn uniformly with replacement: ``(prompt, decode)``."""
        idx = rng.integers(0, self.decode.size, size=size)
        return self.prompt[idx], self.decode[idx]

    def sample_length_biased_requests(self, rng: np.random.Generator,
                                      size: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows drawn with probability proportional to their decode length D."""
        idx = _draw_indices(rng, self._biased_cdf, size)
        return self.prompt[idx], self.decode[idx]

    @cached_property
    def _biased_cdf(self) -> np.ndarray:
        return _normalized_cdf(self.decode.astype(float))


Workload = IndependentLengths | JointLengths


def check_workload(workload, name: str = "workload") -> Workload:
    """``workload`` if it is an :class:`IndependentLengths` or a :class:`JointLengths`.

    Raises
    ------
    AfdInputError
        ``"not a workload (IndependentLengths or JointLengths): ..."``.
    """
    if not isinstance(workload, IndependentLengths | JointLengths):
        raise fail(name, f"not a workload (IndependentLengths or JointLengths): "
                         f"{type(workload).__name__}")
    return workload


def lognormal_with_mean_cv(mean: float, cv: float, *, min_value: int = 1,
                           max_value: int = 65536) -> LengthLaw:
    """A discretized lognormal with (about) the given mean and coefficient of variation.

    A lognormal with ``E[L] = mean`` and ``CV = cv`` has ``sigma^2 = log(1 + cv^2)`` and
    median ``mean / sqrt(1 + cv^2)``; rounding and clipping to ``[min_value, max_value]``
    move the moments slightly. ``cv = 0`` gives :class:`Deterministic` ``round(mean)``.

    Parameters
    ----------
    mean : float
        Target mean (tokens or steps), > 0.
    cv : float
        Target coefficient of variation, >= 0.
    min_value, max_value : int
        Clipping bounds of :class:`DiscretizedLognormal`.
    """
    mean = check_number("mean", mean, minimum=0.0, strict=True)
    cv = check_number("cv", cv, minimum=0.0)
    if cv == 0:
        return Deterministic(int(round(mean)))
    s2 = np.log1p(cv**2)
    return DiscretizedLognormal(mean / np.sqrt(1 + cv**2), np.sqrt(s2), min_value, max_value)


def _validate_rows(prompt, decode) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, arr, lowest in (("prompt", prompt, 0), ("decode", decode, 1)):
        a = np.asarray(arr)
        if a.ndim != 1:
            raise AfdInputError(f"{name} lengths must be a 1-d array")
        if a.size == 0:
            raise AfdInputError(f"no requests: {name} lengths are empty")
        if a.dtype == object or not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
            raise AfdInputError(f"{name} lengths must be numbers")
        if np.issubdtype(a.dtype, np.floating):
            bad = ~np.isfinite(a)
            if bad.any():
                raise AfdInputError(f"{name} length of request {int(np.argmax(bad))} is "
                                    f"{a[bad][0]}")
            frac = a != np.round(a)
            if frac.any():
                raise AfdInputError(f"{name} length of request {int(np.argmax(frac))} is not an "
                                    f"integer ({a[frac][0]})")
        low = a < lowest
        if low.any():
            i = int(np.argmax(low))
            raise AfdInputError(f"{name} length of request {i} is {a[i]}, must be >= {lowest}")
        arrays.append(a.astype(np.int64))
    if arrays[0].shape != arrays[1].shape:
        raise AfdInputError(f"prompt and decode have different lengths "
                            f"({arrays[0].size} and {arrays[1].size})")
    return arrays[0], arrays[1]


def decode_steps_from_output(prompt_tokens, output_tokens, *,
                             first_token_from_prefill: bool = False
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Turn a trace's (prompt, output-token) counts into (context, decode-step) rows.

    Parameters
    ----------
    prompt_tokens, output_tokens : array_like of int
        Recorded prompt and output token counts, >= 0.
    first_token_from_prefill : bool
        The convention. ``False`` (default, the paper's): every output token is one decode
        step, ``D = output``, and step j reads ``P + j`` cached tokens. ``True``
        (prefill-decode disaggregation): prefill produced the first output token, so
        ``D = output - 1`` and decoding starts with that token in context, i.e. the
        context before the first decode step is ``P + 1``.

    Returns
    -------
    prompt, decode : ndarray of int64
        Context before the first decode step (tokens) and decode steps, for the rows with
        at least one decode step (the others carry no load and are dropped).

    Raises
    ------
    AfdInputError
        If lengths are negative, non-integer or NaN, or no row has a decode step.
    """
    p = np.asarray(prompt_tokens)
    o = np.asarray(output_tokens)
    if p.shape != o.shape or p.ndim != 1:
        raise AfdInputError("prompt and output token counts must be 1-d arrays of equal length")
    for name, a in (("prompt", p), ("output", o)):
        if a.size and np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise AfdInputError(f"{name} token counts contain NaN or infinity")
        if a.size and np.any(a < 0):
            raise AfdInputError(f"{name} token counts must be >= 0")
    shift = 1 if first_token_from_prefill else 0
    decode = o.astype(np.int64) - shift
    context = p.astype(np.int64) + shift
    keep = decode >= 1
    if not keep.any():
        raise AfdInputError("no request has a decode step: every row would carry no load")
    return context[keep], decode[keep]


# ---------------------------------------------------------------------------
# Load statistics
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadStats:
    """Exact stationary load of one slot.

    Attributes
    ----------
    theta : float
        Mean cached tokens a slot's request reads per step (tokens).
    load_variance : float
        Stationary variance of a slot's load, ``sigma^2`` (tokens^2).
    mean_prompt : float
        ``E[P]`` (tokens).
    mean_decode : float
        ``E[D]`` (steps).
    """

    theta: float
    load_variance: float
    mean_prompt: float
    mean_decode: float

    @property
    def load_std(self) -> float:
        """``sigma``, the stationary standard deviation of a slot's load (tokens)."""
        return math.sqrt(max(self.load_variance, 0.0))

    @property
    def naive_theta(self) -> float:
        """``E[P] + E[D]``: what one might guess for theta without the renewal argument."""
        return self.mean_prompt + self.mean_decode


def request_rewards(prompt, decode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-request cycle length and rewards of the slot renewal process.

    Parameters
    ----------
    prompt, decode : array_like
        Context before the first decode step (tokens) and decode steps.

    Returns
    -------
    length, load_sum, load_sq_sum : ndarray of float
        ``D``, ``sum_j (P + j) = D P + D(D-1)/2`` and
        ``sum_j (P + j)^2 = D P^2 + P D(D-1) + D(D-1)(2D-1)/6`` over ``j = 0..D-1``.
    """
    p = np.asarray(prompt, dtype=float)
    d = np.asarray(decode, dtype=float)
    tri = d * (d - 1.0) / 2.0
    load_sum = d * p + tri
    load_sq_sum = d * p * p + 2.0 * p * tri + tri * (2.0 * d - 1.0) / 3.0
    return d, load_sum, load_sq_sum


def load_stats(workload: Workload) -> LoadStats:
    """Exact theta and sigma^2 of a workload.

    For independent laws this is the closed form

    ``theta = E[P] + (E[D^2] - E[D]) / (2 E[D])`` and
    ``m2 = E[P^2] + E[P] (E[D^2] - E[D]) / E[D] + E[D(D-1)(2D-1)] / (6 E[D])``;
    for joint rows it is the exact average over the rows (the renewal-reward ratio).

    Parameters
    ----------
    workload : IndependentLengths or JointLengths

    Returns
    -------
    LoadStats
    """
    if isinstance(workload, JointLengths):
        d, y, z = request_rewards(workload.prompt, workload.decode)
        theta = y.sum() / d.sum()
        m2 = z.sum() / d.sum()
        return LoadStats(float(theta), float(m2 - theta * theta),
                         float(workload.prompt.mean()), float(d.mean()))
    check_workload(workload)
    p1, p2 = workload.prompt.raw_moment(1), workload.prompt.raw_moment(2)
    d1, d2, d3 = (workload.decode.raw_moment(k) for k in (1, 2, 3))
    theta = p1 + (d2 - d1) / (2.0 * d1)
    cubic = 2.0 * d3 - 3.0 * d2 + d1  # E[D(D-1)(2D-1)]
    m2 = p2 + p1 * (d2 - d1) / d1 + cubic / (6.0 * d1)
    return LoadStats(float(theta), float(m2 - theta * theta), float(p1), float(d1))


#: Fewer requests than this make the intervals rough: :func:`estimate_load` says so.
SMALL_SAMPLE = 100
#: A single request carrying more than this share of an estimate's variance makes its
#: interval unreliable (heavy tails): :func:`estimate_load` says so.
HEAVY_SHARE = 0.25


@dataclass(frozen=True)
class LoadEstimate:
    """Nonparametric estimate of the slot load from request rows.

    Attributes
    ----------
    requests : int
        Rows used (those with at least one decode step).
    mean_prompt, mean_decode : float
        Sample means of the context before decoding (tokens) and of D (steps).
    theta : float
        Ratio estimate ``sum_i Y_i / sum_i D_i`` (tokens).
    theta_se : float
        Delta-method standard error of ``theta`` (tokens).
    theta_ci : tuple of float
        Confidence interval for theta at level ``confidence`` (tokens); positive (see
        :func:`estimate_load`).
    load_std : float
        Estimate of sigma (tokens).
    load_std_se : float
        Delta-method standard error of ``load_std`` (tokens).
    load_std_ci : tuple of float
        Confidence interval for sigma (tokens); positive.
    confidence : float
        Level of the intervals.
    warnings : tuple of str
        Why the intervals may not be trusted: too few requests, a request that carries
        much of an estimate's variance (heavy tails), no interval at all.
    """

    requests: int
    mean_prompt: float
    mean_decode: float
    theta: float
    theta_se: float
    theta_ci: tuple[float, float]
    load_std: float
    load_std_se: float
    load_std_ci: tuple[float, float]
    confidence: float
    warnings: tuple[str, ...] = ()

    @property
    def load_variance(self) -> float:
        """Estimate of sigma^2 (tokens^2)."""
        return self.load_std**2

    def as_stats(self) -> LoadStats:
        """The point estimates as :class:`LoadStats`."""
        return LoadStats(self.theta, self.load_variance, self.mean_prompt, self.mean_decode)


def estimate_load(prompt, decode, *, confidence: float = 0.95) -> LoadEstimate:
    """Estimate theta and sigma from request rows, with delta-method intervals.

    With ``Y_i = D_i P_i + D_i(D_i-1)/2`` and ``Z_i`` the sum of squared loads of request
    i, the estimators are the ratios ``theta = mean(Y) / mean(D)`` and
    ``sigma^2 = mean(Z) / mean(D) - theta^2``. Linearizing the ratio around the truth
    gives ``theta_hat - theta ~ mean(Y - theta D) / E[D]``, so

    ``se(theta)^2 = sum_i (Y_i - theta D_i)^2 / (n (n-1) mean(D)^2)``,

    and likewise with the influence values
    ``((Z_i - m2 D_i) - 2 theta (Y_i - theta D_i)) / mean(D)`` for ``sigma^2``
    (``se(sigma) = se(sigma^2) / (2 sigma)``).

    Both quantities are positive, so both intervals are normal on the **log scale**
    (the delta method for ``log theta``, whose standard error is ``se / theta``):
    ``theta * exp(+-t se / theta)``, with the Student quantile ``t`` of ``n - 1`` degrees
    of freedom; likewise for sigma. They never cross zero, are skewed the way the
    sampling law of a ratio of positive sums is, and for a few requests are wide rather
    than negative (``theta +- z se`` gave -216 .. 1101 tokens for two requests).
    They are asymptotic: for heavy-tailed lengths and a few thousand requests they cover
    less than their nominal level (tests/test_workload_theta.py measures by how much), and
    they ignore dependence between requests of a trace. ``warnings`` says when to doubt
    them: fewer than :data:`SMALL_SAMPLE` requests, or one request carrying more than
    :data:`HEAVY_SHARE` of an estimate's variance.

    Parameters
    ----------
    prompt : array_like of int
        Context before the first decode step (tokens), >= 0.
    decode : array_like of int
        Decode steps, >= 1.
    confidence : float
        Level of the intervals, in (0, 1).

    Returns
    -------
    LoadEstimate

    Raises
    ------
    AfdInputError
        On empty, negative, NaN or non-integer lengths, or a bad ``confidence``.
    """
    if not (isinstance(confidence, (float, int)) and 0 < confidence < 1):
        raise AfdInputError(f"confidence must be in (0, 1), got {confidence!r}")
    prompt, decode = _validate_rows(prompt, decode)
    n = decode.size
    d, y, z = request_rewards(prompt, decode)
    dbar = d.mean()
    theta = y.sum() / d.sum()
    m2 = z.sum() / d.sum()
    var = max(m2 - theta * theta, 0.0)
    sigma = math.sqrt(var)
    influence_theta = (y - theta * d) / dbar
    influence_var = ((z - m2 * d) - 2.0 * theta * (y - theta * d)) / dbar
    warnings = []
    if n > 1:
        theta_se = float(np.std(influence_theta, ddof=1) / math.sqrt(n))
        var_se = float(np.std(influence_var, ddof=1) / math.sqrt(n))
        q = float(special.stdtrit(n - 1, 0.5 + confidence / 2.0))
        if n < SMALL_SAMPLE:
            warnings.append(f"only {n} requests: the intervals are rough (asymptotic; with "
                            f"fewer than {SMALL_SAMPLE} requests they may cover far less than "
                            f"{100 * confidence:g}%)")
        for name, infl in (("theta", influence_theta), ("sigma", influence_var)):
            share = _largest_share(infl) if n >= SMALL_SAMPLE else 0.0
            if share > HEAVY_SHARE:
                warnings.append(f"one request carries {100 * share:.0f}% of the estimated "
                                f"variance of {name}: heavy tails, its interval may cover "
                                f"far less than {100 * confidence:g}%")
    else:
        theta_se = var_se = q = math.nan
        warnings.append("a single request: no intervals")
    sigma_se = var_se / (2.0 * sigma) if sigma > 0 else math.nan
    if n > 1 and not sigma > 0:
        warnings.append("every request's load is the same at every step: no interval for "
                        "sigma")
    return LoadEstimate(
        requests=int(n),
        mean_prompt=float(prompt.mean()),
        mean_decode=float(dbar),
        theta=float(theta),
        theta_se=theta_se,
        theta_ci=_log_scale_interval(float(theta), theta_se, q),
        load_std=float(sigma),
        load_std_se=float(sigma_se),
        load_std_ci=_log_scale_interval(sigma, sigma_se, q),
        confidence=float(confidence),
        warnings=tuple(warnings),
    )


def _largest_share(influence: np.ndarray) -> float:
    """The largest single term's share of a sum of squared (centered) influence values."""
    c = influence - influence.mean()
    sq = c * c
    total = float(sq.sum())
    return float(sq.max() / total) if total > 0 else 0.0


def _log_scale_interval(value: float, se: float, q: float) -> tuple[float, float]:
    """Interval for a positive quantity from a normal interval for its logarithm (the se
    of ``log value`` is ``se / value``): ``value * exp(+-q se / value)``.

    It stays positive and is skewed the way the sampling law of a positive estimate is,
    which covers better than ``value +- q se`` for heavy-tailed loads. A zero estimate
    with a zero standard error (every load zero) gives ``(0, 0)``.
    """
    if value == 0.0 and se == 0.0:
        return (0.0, 0.0)
    if not (value > 0 and math.isfinite(se) and math.isfinite(q)):
        return (math.nan, math.nan)
    half = q * se / value
    return (float(value * math.exp(-half)), float(value * math.exp(half)))


# ---------------------------------------------------------------------------
# The stationary state of a slot
# ---------------------------------------------------------------------------


def sample_stationary_slots(workload: Workload, rng: np.random.Generator,
                            size: int) -> tuple[np.ndarray, np.ndarray]:
    """State of ``size`` independent slots observed at a uniformly random time.

    A slot seen at a random step is serving a *length-biased* request (probability
    proportional to D, the inspection paradox) at a uniform position ``j`` in
    ``0 .. D-1``.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
    rng : numpy.random.Generator
    size : int
        Number of slots.

    Returns
    -------
    context : ndarray of int64
        Cached tokens the slot's request reads at this step, ``P + j`` (tokens).
    remaining : ndarray of int64
        Decode steps the request still has, this one included, ``D - j`` (>= 1).
    """
    return sample_stationary_slots_of(workload, [rng], size)


def sample_stationary_slots_of(workload: Workload, rngs, size: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """:func:`sample_stationary_slots` for each generator of ``rngs``, concatenated.

    The same values as one call per generator, in order (each generator draws its
    requests, then their positions), computed together (the engines' initial state: one
    generator per Attention worker).

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
    rngs : sequence of numpy.random.Generator
    size : int
        Slots per generator.

    Returns
    -------
    context, remaining : ndarray of int64, shape (len(rngs) * size,)
        As for :func:`sample_stationary_slots`, generator after generator.
    """
    size = check_int("size", size, minimum=0)
    if not rngs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if isinstance(workload, JointLengths):
        # a generator's requests, then their positions: 2 * size uniforms in a row
        u = np.stack([rng.random(2 * size) for rng in rngs]).reshape(len(rngs), 2, size)
        rows = _indices_of(workload._biased_cdf, u[:, 0].reshape(-1))
        prompt, decode, at = workload.prompt[rows], workload.decode[rows], u[:, 1].reshape(-1)
    else:
        parts = [(*workload.sample_length_biased_requests(rng, size), rng.random(size))
                 for rng in rngs]
        prompt, decode, at = (np.concatenate(x) for x in zip(*parts, strict=True))
    position = np.floor(at * decode).astype(np.int64)
    position = np.minimum(position, decode - 1)
    return prompt + position, decode - position


def _truncated_pmf(law: LengthLaw, tail: float = 1e-13) -> tuple[np.ndarray, np.ndarray]:
    """``(values, probabilities)`` of a law on ``0 .. upper`` with the tail beyond upper
    below ``tail`` (exact for finite laws; the tail mass is dropped, then renormalized)."""
    if isinstance(law, _FiniteLaw):
        return law.table
    if isinstance(law, Geometric):
        q = 1.0 - law.p
        extra = 0 if q == 0 else int(np.ceil(np.log(tail) / np.log(q)))
        upper = law.start + extra
    elif isinstance(law, Mixture):
        upper = max(int(_truncated_pmf(c, tail)[0][-1]) for c in law.components)
    else:  # a user-defined law: search a power of two holding all but the tail
        upper = 1
        while 1.0 - law.pmf(np.arange(upper + 1)).sum() > tail and upper < 2**26:
            upper *= 2
    values = np.arange(0, upper + 1, dtype=np.int64)
    probs = law.pmf(values)
    return values, probs / probs.sum()


def stationary_load_pmf(workload: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Exact law of a slot's load at a uniformly random step.

    By :func:`sample_stationary_slots`' argument, a slot reads ``l`` tokens with probability
    ``P(L = l) = E[#{j < D : P + j = l}] / E[D] = P(P <= l < P + D) / E[D]``.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths

    Returns
    -------
    values : ndarray of int64
        Loads ``0, 1, ..., l_max`` (tokens).
    probabilities : ndarray of float
        ``P(L = l)``; they sum to 1. For laws with unbounded support, lengths whose tail
        probability is below 1e-13 are dropped.
    """
    if isinstance(workload, JointLengths):
        top = int((workload.prompt + workload.decode).max())
        # +1 where a request's loads start, -1 one past where they end, then integrate
        diff = np.bincount(workload.prompt, minlength=top + 1).astype(float)
        diff -= np.bincount(workload.prompt + workload.decode, minlength=top + 1)
        counts = np.cumsum(diff)[:top]
        return np.arange(top, dtype=np.int64), counts / workload.decode.sum()
    check_workload(workload)
    from scipy.signal import fftconvolve

    p_vals, p_probs = _truncated_pmf(workload.prompt)
    d_vals, d_probs = _truncated_pmf(workload.decode)
    # survival S(k) = P(D > k) for k = 0 .. d_max - 1
    d_dense = np.zeros(int(d_vals[-1]) + 1)
    d_dense[d_vals] = d_probs
    survival = 1.0 - np.cumsum(d_dense)[:-1]
    p_dense = np.zeros(int(p_vals[-1]) + 1)
    p_dense[p_vals] = p_probs
    pmf = np.clip(fftconvolve(p_dense, survival), 0.0, None)
    pmf /= pmf.sum()
    return np.arange(pmf.size, dtype=np.int64), pmf


def slot_load_path(workload: Workload, rng: np.random.Generator,
                   steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Load of one slot over ``steps`` consecutive decode steps from a cold start.

    The slot takes a fresh request, reads ``P + j`` tokens at its j-th step, and takes the
    next request the step after its last one.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
    rng : numpy.random.Generator
    steps : int
        Number of steps, >= 1.

    Returns
    -------
    load : ndarray of int64
        Cached tokens the slot reads at each step (tokens).
    request : ndarray of int64
        Index (0, 1, ...) of the request the slot serves at each step.
    """
    steps = check_int("steps", steps, minimum=1)
    # draw requests in batches until they cover the horizon
    prompts, decodes, covered = [], [], 0
    batch = 64
    while covered < steps:
        p, d = workload.sample_requests(rng, batch)
        prompts.append(p)
        decodes.append(d)
        covered += int(d.sum())
        batch *= 2
    p = np.concatenate(prompts)
    d = np.concatenate(decodes)
    n = int(np.searchsorted(np.cumsum(d), steps) + 1)
    p, d = p[:n], d[:n]
    request = np.repeat(np.arange(n), d)[:steps]
    starts = np.concatenate([[0], np.cumsum(d)[:-1]])
    position = np.arange(steps) - starts[request]
    return p[request] + position, request
