"""Statistics of a long series in bounded memory: moments, batch means, quantiles.

A simulation of ``n`` steps must not keep ``n`` numbers to summarize them. The
accumulators here take the series in pieces (the engines' chunks of steps) and keep:

* :class:`Moments`: count, mean and sum of squared deviations (pieces combined exactly
  as Chan, Golub and LeVeque's pairwise update), for means and standard deviations;
* :class:`BatchSeries`: sums of consecutive *micro-batches* of ``g`` values, at most
  ``capacity`` of them: when full, neighbouring pairs are merged and ``g`` doubles. Batch
  means of any size that is a multiple of ``g`` follow, and with them a batch-means
  confidence interval and the integrated autocorrelation time. While the series has at
  most ``capacity`` values, ``g = 1`` and both are exactly those of the whole series
  (:func:`batch_means`, :func:`autocorrelation_time`);
* :class:`LogHistogram`: counts in bins whose edges are the floating-point numbers with
  ``mantissa_bits`` bits of mantissa, so that a bin's width is at most ``2**-bits`` of
  its lower edge (relative width ``6.1e-5`` for the default 14 bits). A quantile is the
  middle of the bin that holds the order statistic (clamped to the exact minimum and
  maximum): within half a bin, ``3.1e-5`` relative, of the exact value.

Units are those of the series (here: seconds of step time).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import fft as sp_fft
from scipy import stats

from afdlib.errors import AfdInputError

__all__ = ["Moments", "BatchSeries", "LogHistogram", "MIN_BATCHES", "MAX_BATCHES",
           "batch_means", "autocorrelation_time", "t_quantile"]

#: Bounds on the automatic number of batches of a batch-means interval.
MIN_BATCHES, MAX_BATCHES = 5, 20


@lru_cache(maxsize=1024)
def t_quantile(level: float, dof: int) -> float:
    """The ``level``-quantile of Student's t with ``dof`` degrees of freedom (cached: the
    intervals of every run ask for the same few)."""
    return float(stats.t.ppf(level, dof))


def batch_means(x, n_batches: int | None = None,
                confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of a stationary series and a batch-means confidence interval.

    Parameters
    ----------
    x : array_like, shape (n,)
        The series (e.g. step times, s).
    n_batches : int or None
        Number of consecutive batches, >= 2. ``None`` (default) picks it from the data:
        batches at least ten integrated autocorrelation times long (see
        :func:`autocorrelation_time`), and between 5 and 20 of them, so that batch means
        are nearly independent. With fewer than ``2 * n_batches`` observations the
        interval is NaN.
    confidence : float
        Level of the interval.

    Returns
    -------
    mean, lo, hi : float
        The overall mean and the interval's ends.
    """
    x = np.asarray(x, dtype=float)
    mean = float(x.mean())
    if n_batches is None:
        if x.size < 10:
            return mean, math.nan, math.nan
        tau = autocorrelation_time(x)
        n_batches = int(min(MAX_BATCHES, max(MIN_BATCHES, x.size // (10.0 * tau))))
    if n_batches < 2 or x.size < 2 * n_batches:
        return mean, math.nan, math.nan
    size = x.size // n_batches
    tail = x[x.size - size * n_batches:]  # drop the oldest remainder
    means = tail.reshape(n_batches, size).mean(axis=1)
    se = float(means.std(ddof=1)) / math.sqrt(n_batches)
    q = t_quantile(0.5 + confidence / 2.0, n_batches - 1)
    return mean, mean - q * se, mean + q * se


def autocorrelation_time(x, *, window: float = 5.0) -> float:
    """Integrated autocorrelation time of a series (steps), with Sokal's window.

    ``tau_int = 1 + 2 sum_{k>=1} rho(k)``, summed up to the first lag ``M >= window *
    tau_int(M)``. The variance of the mean of ``n`` steps is about ``Var(x) tau_int / n``.

    Parameters
    ----------
    x : array_like, shape (n,)
    window : float
        Sokal's constant (5 is customary).

    Returns
    -------
    float
        ``tau_int`` in steps (1 for an uncorrelated or constant series).
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    if n < 4:
        raise AfdInputError("autocorrelation time needs at least 4 observations")
    y = x - x.mean()
    size = sp_fft.next_fast_len(2 * n - 1, real=True)
    f = sp_fft.rfft(y, size)
    acov = sp_fft.irfft(f * np.conj(f), size)[:n]
    if acov[0] <= 1e-300 or not np.isfinite(acov[0]):
        return 1.0
    rho = acov / acov[0]
    tau = 2.0 * np.cumsum(rho) - 1.0
    lags = np.arange(n)
    ok = lags >= window * tau
    m = int(np.argmax(ok)) if ok.any() else n - 1
    return float(max(tau[m], 1.0 / n))


class Moments:
    """Count, mean and variance of values given in pieces (numerically stable)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, x) -> None:
        """Add the values of an array (any shape; integers are summed exactly)."""
        x = np.asarray(x)
        n = x.size
        if n == 0:
            return
        exact = _integer_moments(x) if x.dtype.kind in "iu" else None
        if exact is not None:
            mean, m2 = exact
        else:
            mean = float(x.mean())
            m2 = float(np.sum((x - mean) ** 2))
        if self.count == 0:
            self.count, self.mean, self._m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self._m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def variance(self) -> float:
        """Population variance (divisor ``count``); NaN when empty."""
        return self._m2 / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation."""
        return math.sqrt(max(self.variance, 0.0)) if self.count else math.nan


def _integer_moments(x: np.ndarray) -> tuple[float, float] | None:
    """Mean and sum of squared deviations of integers from exact integer sums (None
    where the squares could overflow int64)."""
    flat = x.reshape(-1)
    origin = int(flat[0])
    d = flat - origin
    reach = max(abs(int(d.max())), abs(int(d.min())))
    if reach and flat.size * reach * reach >= 1 << 62:
        return None
    s1, s2, n = int(d.sum()), int(np.dot(d, d)), flat.size
    return origin + s1 / n, (s2 * n - s1 * s1) / n


class BatchSeries:
    """A series kept as sums of at most ``capacity`` consecutive micro-batches.

    Parameters
    ----------
    capacity : int
        Largest number of micro-batches kept, even, >= 16 (memory: that many floats).

    Attributes
    ----------
    count : int
        Values added.
    granularity : int
        Values per micro-batch, ``g`` (a power of two).
    """

    def __init__(self, capacity: int = 1 << 18) -> None:
        if capacity < 16 or capacity % 2:
            raise AfdInputError(f"capacity must be an even number >= 16, got {capacity}")
        self.capacity = int(capacity)
        self._sums = np.empty(self.capacity)
        self._k = 0  # complete micro-batches
        self.granularity = 1
        self._part_sum = 0.0  # the incomplete last micro-batch
        self._part_n = 0
        self.count = 0
        self._total = 0.0
        self._origin = None  # the first value: squares are summed about it (stable)
        self._squares = 0.0
        self._tau = None  # the correlation time, once computed (until more values come)

    def add(self, x) -> None:
        """Append values (a 1-d array), oldest first."""
        x = np.asarray(x, dtype=float).reshape(-1)
        if x.size == 0:
            return
        self._tau = None
        self.count += x.size
        self._total += float(np.sum(x))
        if self._origin is None:
            self._origin = float(x[0])
        d = x - self._origin
        self._squares += float(np.einsum("i,i->", d, d))
        g = self.granularity
        at = 0
        if self._part_n:
            take = min(g - self._part_n, x.size)
            self._part_sum += float(np.sum(x[:take]))
            self._part_n += take
            at = take
            if self._part_n == g:
                self._push(np.array([self._part_sum]))
                self._part_sum, self._part_n = 0.0, 0
        while x.size - at >= self.granularity:
            g = self.granularity
            room = self.capacity - self._k
            q = min(room, (x.size - at) // g)
            block = x[at:at + q * g]
            self._push(block if g == 1 else block.reshape(q, g).sum(axis=1))
            at += q * g
        if at < x.size:
            self._part_sum = float(np.sum(x[at:]))
            self._part_n = x.size - at

    def _push(self, sums) -> None:
        """Append micro-batch sums; merge pairs (doubling ``g``) when full."""
        if self._k == self.capacity:
            self._merge()
        self._sums[self._k:self._k + sums.size] = sums
        self._k += sums.size
        if self._k == self.capacity:
            self._merge()

    def _merge(self) -> None:
        half = self._k // 2
        pairs = self._sums[:2 * half].reshape(half, 2).sum(axis=1)
        self._sums[:half] = pairs
        self._k = half
        self.granularity *= 2

    @property
    def total(self) -> float:
        """Sum of all values."""
        return self._total

    @property
    def variance(self) -> float:
        """Population variance of all values (NaN when empty)."""
        if not self.count:
            return math.nan
        shift = self._total / self.count - self._origin
        return max(self._squares / self.count - shift * shift, 0.0)

    @property
    def mean(self) -> float:
        """Mean of all values (NaN when empty)."""
        return self._total / self.count if self.count else math.nan

    def micro_means(self) -> np.ndarray:
        """Means of the complete micro-batches, oldest first (a copy)."""
        return self._sums[:self._k] / self.granularity

    def coarse_means(self, at_most: int) -> tuple[np.ndarray, int]:
        """Means of consecutive groups of micro-batches, at most ``at_most`` of them.

        Groups hold ``q`` micro-batches (``q`` the smallest power of two that gives at
        most ``at_most`` groups), the oldest remainder is dropped.

        Returns
        -------
        means : ndarray
            Oldest first.
        size : int
            Values per mean.
        """
        k, q = self._k, 1
        while k // q > at_most:
            q *= 2
        groups = k // q
        tail = self._sums[k - groups * q:k]
        return tail.reshape(groups, q).sum(axis=1) / (q * self.granularity), q * self.granularity

    def correlation_time(self, *, window: float = 5.0) -> float:
        """Integrated autocorrelation time of the series (values), with Sokal's window.

        With ``g = 1`` it is :func:`autocorrelation_time` of the whole
        series. With micro-batches of ``g`` values it is ``g tau_y var(y) / var(x)`` for
        the micro-batch means ``y``: both sides estimate ``n Var(mean) / var(x)``.

        Raises
        ------
        AfdInputError
            With fewer than 4 micro-batches.
        """
        if self._tau is not None and self._tau[0] == window:
            return self._tau[1]
        y = self.micro_means()
        tau = tau_y = autocorrelation_time(y, window=window)
        if self.granularity > 1:
            var_x = self.variance
            tau = (1.0 if not var_x > 0 else
                   float(max(self.granularity * tau_y * float(y.var()) / var_x,
                             1.0 / self.count)))
        self._tau = (window, tau)
        return tau

    def interval(self, n_batches: int | None = None,
                 confidence: float = 0.95) -> tuple[float, float, float]:
        """Mean and a batch-means confidence interval (Student t over the batch means).

        The batches are consecutive runs of whole micro-batches, as long as possible, the
        oldest remainder and the incomplete last micro-batch left out. ``n_batches=None``
        picks batches of at least ten correlation times, between
        :data:`MIN_BATCHES` and :data:`MAX_BATCHES` of them; with fewer than
        ``2 * n_batches`` values (or 10, automatic) the interval is NaN.

        Returns
        -------
        mean, lo, hi : float
        """
        mean = self.mean
        n = self.count
        if n_batches is None:
            if n < 10 or self._k < 4:
                return mean, math.nan, math.nan
            tau = self.correlation_time()
            n_batches = int(min(MAX_BATCHES, max(MIN_BATCHES, n // (10.0 * tau))))
        q = self._k // n_batches if n_batches >= 2 else 0
        if n_batches < 2 or n < 2 * n_batches or q < 1:
            return mean, math.nan, math.nan
        tail = self._sums[self._k - q * n_batches:self._k]
        means = tail.reshape(n_batches, q).sum(axis=1) / (q * self.granularity)
        se = float(means.std(ddof=1)) / math.sqrt(n_batches)
        t = t_quantile(0.5 + confidence / 2.0, n_batches - 1)
        return mean, mean - t * se, mean + t * se


def _bits(value: float) -> int:
    """The bit pattern of a float64 as an integer (increasing in the value for value > 0)."""
    return int(np.float64(value).view(np.int64))


class LogHistogram:
    """Counts of positive values in bins of bounded relative width, for quantiles.

    A bin holds the floats that share their exponent and their first ``mantissa_bits``
    bits of mantissa: its width is at most ``2**-mantissa_bits`` times its lower edge.
    The bins span the values seen; if they would exceed ``max_bins`` the width doubles
    (the error bound :attr:`relative_error` says what holds).

    Parameters
    ----------
    mantissa_bits : int
        Bits of mantissa that name a bin (14: relative width ``<= 6.1e-5``).
    max_bins : int
        Largest number of bins kept (memory: 8 bytes each).
    """

    def __init__(self, mantissa_bits: int = 14, max_bins: int = 1 << 22) -> None:
        self._shift = 52 - int(mantissa_bits)
        self.max_bins = int(max_bins)
        self._counts = np.zeros(0, dtype=np.int64)
        self._low = 0  # bin index of _counts[0]
        self.count = 0
        self.nonpositive = 0
        self.minimum = math.inf
        self.maximum = -math.inf
        self._cum = None

    @property
    def mantissa_bits(self) -> int:
        """Bits of mantissa per bin (fewer after a coarsening)."""
        return 52 - self._shift

    @property
    def relative_error(self) -> float:
        """Bound on ``|quantile - exact| / exact``: half a bin, ``2**-(bits + 1)``."""
        return 2.0 ** -(self.mantissa_bits + 1)

    def add(self, x) -> None:
        """Count the values of an array (non-finite values are an error)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return
        low, high = float(x.min()), float(x.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise AfdInputError("LogHistogram takes finite values")
        self._cum = None
        self.count += x.size
        self.minimum = min(self.minimum, low)
        self.maximum = max(self.maximum, high)
        positive = x[x > 0] if low <= 0 else x
        self.nonpositive += x.size - positive.size
        if positive.size == 0:
            return
        # positive floats order like their bit patterns: the top bits name the bin
        smallest = low if low > 0 else float(positive.min())
        self._cover(_bits(smallest) >> self._shift, _bits(high) >> self._shift)
        first = _bits(smallest) >> self._shift  # after _cover: it may have coarsened
        part = np.bincount((positive.view(np.int64) >> self._shift) - first)
        start = first - self._low
        self._counts[start:start + part.size] += part

    def _cover(self, lo: int, hi: int) -> None:
        """Make the bins span bin indices ``lo .. hi`` (coarsening if needed)."""
        if self._counts.size:
            lo, hi = min(lo, self._low), max(hi, self._low + self._counts.size - 1)
        while hi - lo + 1 > self.max_bins:
            self._coarsen()
            lo, hi = lo >> 1, hi >> 1
        if self._counts.size == 0:
            self._counts = np.zeros(hi - lo + 1, dtype=np.int64)
            self._low = lo
            return
        if lo < self._low or hi >= self._low + self._counts.size:
            grown = np.zeros(hi - lo + 1, dtype=np.int64)
            grown[self._low - lo:self._low - lo + self._counts.size] = self._counts
            self._counts, self._low = grown, lo

    def _coarsen(self) -> None:
        """Halve the resolution: merge bins ``2i`` and ``2i + 1``."""
        low = self._low
        start = low - (low & 1)  # even index
        padded = np.zeros(self._counts.size + (low - start) + 1, dtype=np.int64)
        padded[low - start:low - start + self._counts.size] = self._counts
        size = padded.size // 2 * 2
        self._counts = padded[:size].reshape(-1, 2).sum(axis=1)
        self._low = start >> 1
        self._shift += 1
        self._cum = None

    def quantile(self, q: float) -> float:
        """The ``q``-quantile, ``q`` in (0, 1]: the order statistic ``x_(ceil(q n))``
        (numpy's ``method="inverted_cdf"``) within :attr:`relative_error`.

        Returns NaN for an empty histogram.
        """
        if not 0.0 < q <= 1.0:
            raise AfdInputError(f"quantile level must be in (0, 1], got {q!r}")
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count))  # 1-based order statistic
        if rank <= self.nonpositive:
            return self.minimum  # only exact below the positive bins if all are equal
        if self._cum is None:
            self._cum = np.cumsum(self._counts)
        cum = self._cum
        i = int(np.searchsorted(cum, rank - self.nonpositive))
        lo_bits = (self._low + i) << self._shift
        hi_bits = (self._low + i + 1) << self._shift
        lo, hi = (np.array([lo_bits, hi_bits], dtype=np.int64).view(np.float64))
        mid = 0.5 * (float(lo) + float(hi))
        return float(min(max(mid, self.minimum), self.maximum))
