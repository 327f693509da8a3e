r"""The step model of an rA-1F bundle: one home for its formulas.

Every layer that needs the step model takes it from here: :mod:`afdlib.costs` (which
*produces* coefficients), :mod:`afdlib.provision` (the rules), :mod:`afdlib.sim` (the
simulator that referees them) and the chapters. Nothing here knows about workloads,
hardware or simulation.

One decode step of ``r`` Attention workers with ``B`` slots each and one FFN worker:

* attention on a worker with token load ``T``:  ``t_A(T) = alpha_A T + beta_A``;
* communication:  ``t_C = alpha_C n_C + beta_C`` with ``n_C = B`` tokens
  (``comm_scales_with="B"``: each worker's own traffic) or ``n_C = r B``
  (``"rB"``: the whole bundle's traffic through the FFN side);
* FFN on the aggregated batch:  ``t_F = alpha_F r B + beta_F``;
* the stages overlap, so a step lasts ``tau = max{max_w t_A(T_w), t_C, t_F}``; with ``m``
  microbatches a step must also hold one microbatch's round trip,
  ``tau >= (A + t_F + 2 t_C) / m`` (:func:`step_time`);
* with ``m`` microbatches each pays the intercepts in full (``"per_microbatch"``) or
  ``1/m`` of them (``"per_step"``) (:func:`intercept_share`).

The objective (:class:`Objective`) divides the bundle's token rate ``r B / E[tau]`` by what
the bundle costs, ``r w_A + w_F``: one instance each (throughput per instance), the GPUs of
each instance (per GPU), or their prices (per price unit). An :class:`OperatingPoint`
holds everything a rule needs besides the ratio: coefficients, the per-slot load mean
``theta`` and standard deviation ``load_std``, the batch ``B`` and the objective.

Units: seconds (intercepts, times), seconds per token (slopes), tokens (loads).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import numpy as np
from scipy import optimize

from afdlib.errors import AfdInputError
from afdlib.validate import check_choice, check_int, check_number, check_type

__all__ = [
    "COMM_SCALINGS", "INTERCEPTS", "OBJECTIVES",
    "StepCoefficients", "comm_tokens", "intercept_share", "microbatch_sizes", "step_time",
    "InstancePrices", "InstanceGPUs", "GPUPrices", "Objective", "PER_INSTANCE",
    "choose_objective", "OperatingPoint",
    "maximize_ratio", "best_integer_ratio",
]

#: How communication time scales: with the worker's batch ``B`` or the bundle's ``r B``.
COMM_SCALINGS = ("B", "rB")
#: How microbatches pay the intercepts: each in full, or ``1/m`` each.
INTERCEPTS = ("per_microbatch", "per_step")
#: What the throughput is divided by: instances, GPUs, or prices of the instances.
OBJECTIVES = ("instance", "gpu", "price")

CommScaling = Literal["B", "rB"]
_COEFFICIENTS = ("alpha_A", "beta_A", "alpha_F", "beta_F", "alpha_C", "beta_C")


# ---------------------------------------------------------------------------
# Coefficients and stage times
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCoefficients:
    """Coefficients of the linear step-time model.

    Parameters
    ----------
    alpha_A : float
        Attention time per cached token read on one worker (s/token), > 0.
    beta_A : float
        Attention time of a step that reads no cache (s), >= 0.
    alpha_F : float
        FFN time per token of the aggregated batch (s/token), > 0.
    beta_F : float
        FFN time independent of the batch, e.g. streaming the weights (s), >= 0.
    alpha_C : float
        Communication time per token (s/token), >= 0.
    beta_C : float
        Communication latency per step (s), >= 0.
    comm_scales_with : {"B", "rB"}
        Whether communication time grows with the worker's batch B or with the
        whole bundle's batch r*B.

    Raises
    ------
    AfdInputError
        If a coefficient is missing, not a finite number, negative, or a slope that
        the provisioning rules divide by (alpha_A, alpha_F) is zero.
    """

    alpha_A: float
    beta_A: float
    alpha_F: float
    beta_F: float
    alpha_C: float = 0.0
    beta_C: float = 0.0
    comm_scales_with: CommScaling = "B"

    def __post_init__(self) -> None:
        for name in _COEFFICIENTS:
            object.__setattr__(self, name, check_number(f"coefficient {name}",
                                                        getattr(self, name), minimum=0.0))
        for name in ("alpha_A", "alpha_F"):
            if getattr(self, name) == 0.0:
                raise AfdInputError(f"coefficient {name} must be > 0: the provisioning rules "
                                    "divide by it", parameter="coefficient")
        check_choice("comm_scales_with", self.comm_scales_with, COMM_SCALINGS)

    @property
    def comm_grows_with_ratio(self) -> bool:
        """True when communication time grows with r (``"rB"`` and ``alpha_C > 0``)."""
        return self.comm_scales_with == "rB" and self.alpha_C > 0

    # -- stage times (vectorized; batch and ratio keyword-only) -----------------------
    def attention_time(self, load, *, intercept_scale: float = 1.0):
        """Attention time (s) of a worker whose slots hold ``load`` cached tokens in all.

        ``intercept_scale`` multiplies ``beta_A`` (see :func:`intercept_share`).
        """
        return self.alpha_A * np.asarray(load, dtype=float) + intercept_scale * self.beta_A

    def comm_tokens(self, *, batch, ratio):
        """Tokens whose traffic sets the communication time (see :func:`comm_tokens`)."""
        return comm_tokens(self.comm_scales_with, batch=batch, ratio=ratio)

    def comm_time(self, *, batch, ratio, intercept_scale: float = 1.0):
        """Communication time (s) of one step for ``ratio`` workers of ``batch`` slots."""
        return (self.alpha_C * self.comm_tokens(batch=batch, ratio=ratio)
                + intercept_scale * self.beta_C)

    def ffn_time(self, *, batch, ratio, intercept_scale: float = 1.0):
        """FFN time (s) for the aggregated batch of ``ratio * batch`` tokens."""
        return (self.alpha_F * np.asarray(ratio, dtype=float) * np.asarray(batch, dtype=float)
                + intercept_scale * self.beta_F)

    def rest_of_step(self, *, batch, ratio, intercept_scale: float = 1.0):
        """``G = max(t_C, t_F)`` (s): the part of the step that does not depend on the loads."""
        return np.maximum(self.comm_time(batch=batch, ratio=ratio,
                                         intercept_scale=intercept_scale),
                          self.ffn_time(batch=batch, ratio=ratio,
                                        intercept_scale=intercept_scale))

    # -- the coefficient file ---------------------------------------------------------
    def to_dict(self) -> dict:
        """The coefficient file's JSON object."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "coefficients") -> StepCoefficients:
        """Build from a mapping with the keys of the coefficient file.

        Unknown keys are rejected so that a typo (``"alpha_a"``) is not silently ignored;
        keys starting with an underscore (comments, provenance) are allowed and ignored.
        """
        if not isinstance(data, dict):
            raise AfdInputError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in data if k not in known and not str(k).startswith("_"))
        if unknown:
            raise AfdInputError(f"{source}: unknown key(s) {', '.join(unknown)}")
        missing = [k for k in ("alpha_A", "beta_A", "alpha_F", "beta_F") if k not in data]
        if missing:
            raise AfdInputError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except AfdInputError as exc:
            raise AfdInputError(f"{source}: {exc}", parameter=exc.parameter) from None


def comm_tokens(comm_scales_with: str, *, batch, ratio):
    """Tokens whose traffic sets the communication time: ``B`` (``"B"``) or ``r B`` (``"rB"``).

    Parameters
    ----------
    comm_scales_with : {"B", "rB"}
    batch : array_like
        Slots per Attention worker (or per microbatch), B.
    ratio : array_like
        Attention workers per FFN worker, r.

    Returns
    -------
    ndarray
        Tokens (broadcast over ``batch`` and ``ratio``).
    """
    check_choice("comm_scales_with", comm_scales_with, COMM_SCALINGS)
    ratio = np.asarray(ratio, dtype=float)
    batch = np.asarray(batch, dtype=float)
    return batch * ratio if comm_scales_with == "rB" else batch * np.ones_like(ratio)


def intercept_share(intercepts: str, microbatches: int) -> float:
    """Fraction of each intercept (``beta_A, beta_C, beta_F``) one microbatch pays.

    Parameters
    ----------
    intercepts : {"per_microbatch", "per_step"}
        Each microbatch pays the full intercepts (every kernel launch and message costs
        its fixed time), or the intercepts are spread over the step's ``m`` microbatches.
    microbatches : int
        Microbatches per Attention worker, ``m >= 1``.

    Returns
    -------
    float
        1 or ``1/m``; a step's busy time then carries ``m * share`` times each intercept.
    """
    check_choice("intercepts", intercepts, INTERCEPTS)
    m = check_int("microbatches", microbatches, minimum=1)
    return 1.0 if intercepts == "per_microbatch" else 1.0 / m


def microbatch_sizes(batch: int, microbatches: int) -> np.ndarray:
    """Slots of each of a worker's ``m`` microbatches: ``B // m`` or one more, larger first.

    Parameters
    ----------
    batch : int
        Slots per Attention worker ``B >= 1``.
    microbatches : int
        Microbatches ``1 <= m <= B``.

    Returns
    -------
    ndarray of int64, shape (m,)
        Slots per microbatch, summing to ``B``.
    """
    b = check_int("batch", batch, minimum=1)
    m = check_int("microbatches", microbatches, minimum=1, maximum=b)
    base, extra = divmod(b, m)
    return np.array([base + (k < extra) for k in range(m)], dtype=np.int64)


def step_time(attention, comm, ffn, *, microbatches: int | None = None):
    """Combine stage times into the step time (s), elementwise.

    Parameters
    ----------
    attention : array_like
        Attention time of the slowest worker, ``A`` (s).
    comm, ffn : array_like
        ``t_C`` and ``t_F`` (s).
    microbatches : int, optional
        With ``m`` microbatches the step also holds one microbatch's round trip through
        attention, dispatch, FFN and combine: ``tau = max{t_C, t_F, A, (A + t_F + 2 t_C)/m}``.
        ``None`` (default): the ideal overlap of the step model, ``max{A, t_C, t_F}``.

    Returns
    -------
    ndarray
        ``tau`` (s).
    """
    tau = np.maximum(np.maximum(comm, ffn), attention)
    if microbatches is not None:
        m = check_int("microbatches", microbatches, minimum=1)
        tau = np.maximum(tau, (np.asarray(attention) + ffn + 2.0 * np.asarray(comm)) / m)
    return tau


# ---------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InstancePrices:
    """Prices of an Attention instance and of an FFN instance (any common unit, e.g. $/h).

    Parameters
    ----------
    attention : float
        Price of one Attention instance, > 0.
    ffn : float
        Price of one FFN instance, > 0.
    """

    attention: float = 1.0
    ffn: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "attention", check_number("attention price", self.attention,
                                                           minimum=0.0, strict=True))
        object.__setattr__(self, "ffn", check_number("FFN price", self.ffn, minimum=0.0,
                                                     strict=True))

    @property
    def ratio(self) -> float:
        """``ffn / attention``: how many Attention instances one FFN instance costs."""
        return self.ffn / self.attention

    @property
    def is_uniform(self) -> bool:
        """True when both prices are equal (throughput per instance, up to a constant)."""
        return self.ffn == self.attention


@dataclass(frozen=True)
class InstanceGPUs:
    """GPUs in one Attention instance and in the FFN instance.

    Parameters
    ----------
    attention : int
        GPUs per Attention instance, >= 1.
    ffn : int
        GPUs in the FFN instance, >= 1.
    """

    attention: int = 1
    ffn: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "attention", check_int("attention GPUs", self.attention,
                                                        minimum=1))
        object.__setattr__(self, "ffn", check_int("FFN GPUs", self.ffn, minimum=1))

    def to_dict(self) -> dict:
        """``{"attention": g_A, "ffn": g_F}`` (the JSON key ``gpus``)."""
        return {"attention": self.attention, "ffn": self.ffn}

    @classmethod
    def from_dict(cls, data, *, source: str = "gpus") -> InstanceGPUs:
        """From ``{"attention": n, "ffn": n}`` (unknown keys rejected, naming ``source``)."""
        if not isinstance(data, dict):
            raise AfdInputError(f"{source}: expected an object {{\"attention\": n, \"ffn\": n}}, "
                                f"got {type(data).__name__}", parameter="gpus")
        unknown = sorted(str(k) for k in data if k not in ("attention", "ffn"))
        missing = [k for k in ("attention", "ffn") if k not in data]
        if unknown or missing:
            what = (f"unknown key(s) {', '.join(unknown)}" if unknown
                    else f"missing key(s) {', '.join(missing)}")
            raise AfdInputError(f"{source}: {what} (expected attention and ffn)",
                                parameter="gpus")
        try:
            return cls(attention=data["attention"], ffn=data["ffn"])
        except AfdInputError as exc:
            raise AfdInputError(f"{source}: {exc}", parameter="gpus") from None


@dataclass(frozen=True)
class GPUPrices:
    """Price of one GPU of each role per unit time (any common unit, e.g. $/GPU-hour).

    Parameters
    ----------
    attention : float
        Price of one GPU of an Attention instance, > 0.
    ffn : float
        Price of one GPU of the FFN instance, > 0.
    source : str
        Where the prices come from (``"given"`` for user input, or a citation).
    """

    attention: float
    ffn: float
    source: str = "given"

    def __post_init__(self) -> None:
        object.__setattr__(self, "attention", check_number("attention GPU price", self.attention,
                                                           minimum=0.0, strict=True))
        object.__setattr__(self, "ffn", check_number("FFN GPU price", self.ffn, minimum=0.0,
                                                     strict=True))

    def instance_prices(self, gpus: InstanceGPUs) -> InstancePrices:
        """Prices of one Attention instance and of the FFN instance: GPUs times price."""
        check_type("gpus", gpus, InstanceGPUs)
        return InstancePrices(attention=self.attention * gpus.attention,
                              ffn=self.ffn * gpus.ffn)


@dataclass(frozen=True)
class Objective:
    """What a bundle's throughput is divided by.

    Parameters
    ----------
    kind : {"instance", "gpu", "price"}
        ``"instance"``: tokens/s per instance, ``r B / ((r + 1) tau)``. ``"gpu"``: per GPU,
        ``r B / ((r g_A + g_F) tau)`` (needs ``gpus``). ``"price"`` (default): per price
        unit, ``r B / ((r p_A + p_F) tau)``; with the default prices of 1 this is the
        throughput per instance.
    prices : InstancePrices
        Prices of one Attention instance and of the FFN instance, used by ``"price"``
        (:meth:`GPUPrices.instance_prices` turns per-GPU prices into these).
    gpus : InstanceGPUs or None
        GPUs of each instance, where known: used by ``"gpu"`` and by
        :meth:`throughput_per_gpu`. None (default) where the counts are unknown.

    Raises
    ------
    AfdInputError
        For an unknown kind, or ``"gpu"`` without GPU counts.
    """

    kind: str = "price"
    prices: InstancePrices = field(default_factory=InstancePrices)
    gpus: InstanceGPUs | None = None

    def __post_init__(self) -> None:
        check_choice("objective", self.kind, OBJECTIVES)
        check_type("prices", self.prices, InstancePrices)
        if self.gpus is not None:
            check_type("gpus", self.gpus, InstanceGPUs)
        elif self.kind == "gpu":
            raise AfdInputError("objective 'gpu' needs the GPU counts of the instances (a "
                                "preset, the coefficient file's \"gpus\", or --gpus A/F)",
                                parameter="objective")

    @property
    def weights(self) -> tuple[float, float]:
        """``(w_A, w_F)``: what one Attention instance and the FFN instance count for."""
        if self.kind == "gpu":
            return float(self.gpus.attention), float(self.gpus.ffn)
        if self.kind == "price":
            return self.prices.attention, self.prices.ffn
        return 1.0, 1.0

    @property
    def weight_ratio(self) -> float:
        """``w_F / w_A`` (``pi`` of the closed forms; 1 for throughput per instance)."""
        w_a, w_f = self.weights
        return w_f / w_a

    @property
    def per_instance(self) -> bool:
        """True when the objective is the throughput per instance (both weights 1)."""
        return self.weights == (1.0, 1.0)

    @property
    def unit(self) -> str:
        """Unit of the objective, e.g. ``"tokens/s per instance"``."""
        if self.kind == "gpu":
            return "tokens/s per GPU"
        if self.per_instance:
            return "tokens/s per instance"
        return "tokens/s per price unit"

    def bundle_cost(self, ratio):
        """What an rA-1F bundle counts for, ``r w_A + w_F``."""
        w_a, w_f = self.weights
        return w_a * np.asarray(ratio, dtype=float) + w_f

    def throughput(self, ratio, batch, step_time):
        """The objective: ``r B / ((r w_A + w_F) tau)`` (tokens/s per instance, GPU or price
        unit), elementwise; the one place the objective is computed."""
        return ratio * batch / (self.bundle_cost(ratio) * np.asarray(step_time, dtype=float))

    def per_gpu(self) -> Objective | None:
        """The throughput-per-GPU objective with these GPU counts (None where unknown)."""
        return None if self.gpus is None else Objective(kind="gpu", gpus=self.gpus)

    def throughput_per_gpu(self, ratio, batch, step_time):
        """``r B / ((r g_A + g_F) tau)`` (tokens/s per GPU), or None where the GPU counts
        are unknown."""
        per_gpu = self.per_gpu()
        return None if per_gpu is None else per_gpu.throughput(ratio, batch, step_time)

    def to_dict(self) -> dict:
        """The JSON key ``objective``: kind, unit, weights and the data behind them."""
        w_a, w_f = self.weights
        return {"kind": self.kind, "unit": self.unit,
                "weights": {"attention": w_a, "ffn": w_f},
                "prices": {"attention": self.prices.attention, "ffn": self.prices.ffn},
                "gpus": None if self.gpus is None else self.gpus.to_dict()}


def choose_objective(kind: str | None = None, *, gpus: InstanceGPUs | None = None,
                     gpu_prices: GPUPrices | None = None,
                     prices: InstancePrices | None = None) -> Objective:
    """The objective an operator asked for, with the project's defaults.

    Parameters
    ----------
    kind : {"instance", "gpu", "price"} or None
        None: ``"price"`` when prices are given, else ``"gpu"`` when the GPU counts are
        known, else ``"instance"``.
    gpus : InstanceGPUs, optional
        GPUs of each instance, where known.
    gpu_prices : GPUPrices, optional
        Per-GPU prices; with ``gpus`` they give the instance prices.
    prices : InstancePrices, optional
        Instance prices given directly (exclusive with ``gpu_prices``).

    Returns
    -------
    Objective

    Raises
    ------
    AfdInputError
        For ``"gpu"`` without GPU counts, ``"price"`` without prices, per-GPU prices
        without GPU counts, or both kinds of price.
    """
    if gpus is not None:
        check_type("gpus", gpus, InstanceGPUs)
    if gpu_prices is not None and prices is not None:
        raise AfdInputError("give per-GPU prices or instance prices, not both",
                            parameter="gpu_price")
    if gpu_prices is not None:
        check_type("gpu_prices", gpu_prices, GPUPrices)
        if gpus is None:
            raise AfdInputError("per-GPU prices need the GPU counts of the instances (a preset, "
                                "the coefficient file's \"gpus\", or --gpus A/F)",
                                parameter="gpu_price")
        prices = gpu_prices.instance_prices(gpus)
    priced = prices is not None and not prices.is_uniform
    if kind is None:
        kind = "price" if priced else ("gpu" if gpus is not None else "instance")
    check_choice("objective", kind, OBJECTIVES)
    if kind == "price" and prices is None:
        raise AfdInputError("objective 'price' needs prices (per-GPU prices with GPU counts, "
                            "or instance prices)", parameter="objective")
    return Objective(kind=kind, prices=prices if prices is not None else InstancePrices(),
                     gpus=gpus)


#: Throughput per instance (both weights 1), e.g. for the simulator's instance figure.
PER_INSTANCE = Objective(kind="instance")


# ---------------------------------------------------------------------------
# The operating point
# ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OperatingPoint:
    """Everything a provisioning rule needs besides the ratio.

    All fields are keyword-only, so that two floats cannot be swapped silently.

    Parameters
    ----------
    coeffs : StepCoefficients
        Step-time coefficients (s, s/token).
    theta : float
        Per-slot stationary mean load (tokens), >= 0.
    batch : float
        Slots per Attention worker B, > 0 (real values allowed, e.g. for derivatives; the
        integer rules and the simulator need an integer).
    load_std : float
        Per-slot stationary load standard deviation sigma (tokens), >= 0 (default 0: the
        mean-field rule does not use it).
    objective : Objective
        What the throughput is divided by (default: per price unit with prices of 1, i.e.
        per instance).

    Raises
    ------
    AfdInputError
        Naming the field at fault.
    """

    coeffs: StepCoefficients
    theta: float
    batch: float
    load_std: float = 0.0
    objective: Objective = field(default_factory=Objective)

    def __post_init__(self) -> None:
        check_type("coefficients", self.coeffs, StepCoefficients,
                   "afdlib.model.StepCoefficients")
        object.__setattr__(self, "theta", check_number("theta", self.theta, minimum=0.0))
        object.__setattr__(self, "load_std", check_number("load_std", self.load_std,
                                                          minimum=0.0))
        batch = check_number("batch", self.batch, minimum=0.0, strict=True)
        object.__setattr__(self, "batch", int(batch) if batch.is_integer() else batch)
        check_type("objective", self.objective, Objective, "afdlib.model.Objective")

    @property
    def prices(self) -> InstancePrices:
        """The objective's instance prices."""
        return self.objective.prices

    def replace(self, **changes) -> OperatingPoint:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def integer_batch(self) -> int:
        """``batch`` as an int, or :class:`AfdInputError` if it is not a whole number."""
        return check_int("batch", self.batch, minimum=1)

    def throughput(self, ratio, step_time):
        """The objective at ``ratio`` for mean step times ``step_time`` (s)."""
        return self.objective.throughput(ratio, self.batch, step_time)

    @property
    def mean_attention_time(self) -> float:
        """``t_A(B theta) = alpha_A B theta + beta_A`` (s): a worker at the mean load."""
        return float(self.coeffs.attention_time(self.batch * self.theta))

    @property
    def attention_std(self) -> float:
        """``sigma_A = alpha_A sqrt(B) sigma`` (s): the spread of one worker's attention time
        when its load is the sum of B independent slots."""
        return self.coeffs.alpha_A * math.sqrt(self.batch) * self.load_std


# ---------------------------------------------------------------------------
# Maximizing an objective over the ratio
# ---------------------------------------------------------------------------


def maximize_ratio(objective, lo: float = 1e-3, hi: float = 1e6, *, grid: int = 4001,
                   rtol: float = 1e-12) -> tuple[float, float]:
    """Maximize ``objective(r)`` over ``[lo, hi]`` by a log-spaced grid and Brent refinement.

    This is the *direct* maximization the closed forms are checked against: it only
    evaluates the objective.

    Parameters
    ----------
    objective : callable
        Vectorized: maps an array of ratios to an array of values.
    lo, hi : float
        Search interval (0 < lo < hi).
    grid : int
        Number of log-spaced grid points.
    rtol : float
        Relative tolerance of the Brent refinement in r.

    Returns
    -------
    r_best, value : float
        The maximizer and the maximum.
    """
    lo = check_number("lo", lo, minimum=0.0, strict=True)
    hi = check_number("hi", hi, minimum=0.0, strict=True)
    if not hi > lo:
        raise AfdInputError(f"need lo < hi, got [{lo:g}, {hi:g}]", parameter="lo")
    r = np.geomspace(lo, hi, int(grid))
    v = np.asarray(objective(r), dtype=float)
    i = int(np.nanargmax(v))
    a, b = r[max(i - 1, 0)], r[min(i + 1, len(r) - 1)]
    best_r, best_v = float(r[i]), float(v[i])
    if b > a:
        res = optimize.minimize_scalar(lambda x: -float(np.asarray(objective(np.array([x])))[0]),
                                       bounds=(a, b), method="bounded",
                                       options={"xatol": rtol * best_r, "maxiter": 500})
        if -res.fun >= best_v:
            best_r, best_v = float(res.x), float(-res.fun)
    return best_r, best_v


def best_integer_ratio(objective, max_ratio: int) -> tuple[int, np.ndarray]:
    """The integer r in ``1 .. max_ratio`` with the largest objective (first one on ties).

    Parameters
    ----------
    objective : callable
        Vectorized objective of the ratio.
    max_ratio : int
        Largest ratio considered, >= 1.

    Returns
    -------
    r_int : int
    values : ndarray
        The objective at ``1 .. max_ratio``.
    """
    max_ratio = check_int("max_ratio", max_ratio, minimum=1)
    ratios = np.arange(1, max_ratio + 1, dtype=float)
    values = np.asarray(objective(ratios), dtype=float)
    return int(np.argmax(values)) + 1, values
