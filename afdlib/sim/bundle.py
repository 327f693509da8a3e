"""The bundle a simulation runs, and the run check shared by the engines.

A :class:`Bundle` is what every engine takes: ``r`` Attention workers with ``B`` slots
each, one FFN worker, the linear step-time coefficients and the objective its throughput
is reported in. Run-length options (steps, warm-up, seed, start state) are plain keyword
arguments of the engines, checked by :func:`check_run` so that every engine rejects the
same bad input with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import PER_INSTANCE, Objective, OperatingPoint, StepCoefficients
from afdlib.validate import check_choice, check_int, check_type
from afdlib.workload import JointLengths, check_workload

__all__ = ["Bundle", "INITS", "RunOptions", "check_run", "worker_seeds", "check_int",
           "check_workload"]

#: Start states: ``"stationary"`` (each slot holds a length-biased request at a uniform
#: position, the renewal process's stationary state) or ``"cold"`` (every slot starts a
#: fresh request at step 0).
INITS = ("stationary", "cold")

@dataclass(frozen=True)
class Bundle:
    """An rA-1F bundle: ``ratio`` Attention workers of ``batch`` slots and one FFN worker.

    Parameters
    ----------
    ratio : int
        Attention workers per FFN worker, ``r >= 1``.
    batch : int
        Slots (concurrent decoding requests) per Attention worker, ``B >= 1``.
    coeffs : StepCoefficients
        Linear step-time coefficients (s, s/token).
    objective : Objective
        What the reported throughput is divided by (default: per price unit with prices
        of 1, i.e. per instance), the same objective as the rules'.

    Raises
    ------
    AfdInputError
        If ``ratio`` or ``batch`` is not an integer >= 1, ``coeffs`` is not a
        :class:`~afdlib.model.StepCoefficients` or ``objective`` not an
        :class:`~afdlib.model.Objective`.
    """

    ratio: int
    batch: int
    coeffs: StepCoefficients
    objective: Objective = field(default_factory=Objective)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", check_int("ratio r", self.ratio, minimum=1))
        object.__setattr__(self, "batch", check_int("batch B", self.batch, minimum=1))
        check_type("coeffs", self.coeffs, StepCoefficients, "StepCoefficients")
        check_type("objective", self.objective, Objective, "an afdlib.model.Objective")

    @classmethod
    def at(cls, point: OperatingPoint, ratio: int) -> Bundle:
        """The bundle of ``ratio`` workers at an operating point (its coefficients, integer
        batch and objective; theta and load_std are the workload's business)."""
        check_type("point", point, OperatingPoint, "an afdlib.model.OperatingPoint")
        return cls(ratio, point.integer_batch(), point.coeffs, point.objective)

    @property
    def slots(self) -> int:
        """Slots in the bundle, ``r * B``."""
        return self.ratio * self.batch

    @property
    def comm_time(self) -> float:
        """Communication time of one step, ``t_C`` (s)."""
        return float(self.coeffs.comm_time(batch=self.batch, ratio=self.ratio))

    @property
    def ffn_time(self) -> float:
        """FFN time of one step on ``r * B`` tokens, ``t_F`` (s)."""
        return float(self.coeffs.ffn_time(batch=self.batch, ratio=self.ratio))

    def throughput(self, mean_step_time):
        """The objective, ``r B / ((r w_A + w_F) E[tau])`` (tokens/s per instance, per GPU
        or per price unit)."""
        return self.objective.throughput(self.ratio, self.batch, mean_step_time)

    def throughput_per_instance(self, mean_step_time):
        """Throughput per instance, ``r B / ((r + 1) E[tau])`` (tokens/s per instance)."""
        return PER_INSTANCE.throughput(self.ratio, self.batch, mean_step_time)

    def throughput_per_gpu(self, mean_step_time):
        """Throughput per GPU, ``r B / ((r g_A + g_F) E[tau])`` (tokens/s per GPU), where
        the objective knows the GPU counts of the instances; else None
        (:meth:`afdlib.model.Objective.throughput_per_gpu` computes it)."""
        return self.objective.throughput_per_gpu(self.ratio, self.batch, mean_step_time)


@dataclass(frozen=True)
class RunOptions:
    """A checked run: what every engine needs besides its own options.

    Attributes
    ----------
    steps, warmup : int
        Steps simulated and leading steps left out of the statistics.
    init : str
        One of :data:`INITS`.
    replay : bool
        Hand out a trace's rows in order.
    n_batches : int or None
        Batches for the batch-means intervals (None: automatic).
    """

    steps: int
    warmup: int
    init: str
    replay: bool
    n_batches: int | None

    @property
    def lengths(self) -> str:
        """``"replay"`` or ``"resample"``."""
        return "replay" if self.replay else "resample"


def check_run(workload, bundle, *, steps, warmup, init, replay=False,
              n_batches=None) -> RunOptions:
    """Check an engine's inputs: the workload, the bundle and the run options.

    Raises
    ------
    AfdInputError
        Naming the parameter (``steps``, ``warmup``, ``init``, ``replay``, ``n_batches``, or
        the workload or bundle).
    """
    check_workload(workload)
    check_type("bundle", bundle, Bundle, "a Bundle")
    steps = check_int("steps", steps, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    if warmup >= steps:
        raise AfdInputError(f"warmup ({warmup}) must be smaller than steps ({steps})",
                            parameter="warmup")
    check_choice("init", init, INITS)
    if replay and not isinstance(workload, JointLengths):
        raise AfdInputError("replay needs a trace (rows of requests), not length laws",
                            parameter="replay")
    if n_batches is not None:
        n_batches = check_int("n_batches", n_batches, minimum=2)
    return RunOptions(steps, warmup, init, bool(replay), n_batches)


def worker_seeds(seed, ratio: int) -> list[np.random.SeedSequence]:
    """One independent seed sequence per Attention worker.

    Worker ``w``'s stream depends on ``seed`` and ``w`` only, not on ``ratio``, so runs
    at different ratios with one seed share their first workers' request streams
    (common random numbers: differences between ratios are not sampling noise).

    Parameters
    ----------
    seed : int or numpy.random.Generator or numpy.random.SeedSequence
        An int >= 0 or a SeedSequence gives reproducible streams; a Generator
        spawns fresh children (its own state advances).
    ratio : int
        Number of workers.
    """
    if isinstance(seed, np.random.Generator):
        return [np.random.SeedSequence(g.bit_generator.seed_seq.entropy,
                                       spawn_key=g.bit_generator.seed_seq.spawn_key)
                for g in seed.spawn(ratio)]
    if isinstance(seed, np.random.SeedSequence):
        root = seed
    else:
        root = np.random.SeedSequence(check_int("seed", seed, minimum=0))
    return [np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, w))
            for w in range(ratio)]
