"""The bundle a simulation runs, and the checks shared by the engines.

A :class:`Bundle` is what both engines take: ``r`` Attention workers with ``B`` slots
each, one FFN worker, and the linear step-time coefficients. Run-length options
(steps, warm-up, seed, start state) are plain keyword arguments of the engines, checked
here so that every engine rejects the same bad input with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from afdlib._checks import check_int
from afdlib.costs import StepCoefficients
from afdlib.errors import AfdInputError
from afdlib.workload import IndependentLengths, JointLengths

__all__ = ["Bundle", "INITS"]

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

    Raises
    ------
    AfdInputError
        If ``ratio`` or ``batch`` is not an integer >= 1 or ``coeffs`` is not a
        :class:`~afdlib.costs.StepCoefficients`.
    """

    ratio: int
    batch: int
    coeffs: StepCoefficients

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", check_int("ratio r", self.ratio, minimum=1))
        object.__setattr__(self, "batch", check_int("batch B", self.batch, minimum=1))
        if not isinstance(self.coeffs, StepCoefficients):
            raise AfdInputError(f"coeffs must be StepCoefficients, got {type(self.coeffs).__name__}")

    @property
    def slots(self) -> int:
        """Slots in the bundle, ``r * B``."""
        return self.ratio * self.batch

    @property
    def comm_time(self) -> float:
        """Communication time of one step, ``t_C`` (s)."""
        return float(self.coeffs.comm_time(self.ratio, self.batch))

    @property
    def ffn_time(self) -> float:
        """FFN time of one step on ``r * B`` tokens, ``t_F`` (s)."""
        return float(self.coeffs.ffn_time(self.ratio, self.batch))

    def throughput(self, mean_step_time):
        """Throughput per instance, ``r B / ((r + 1) E[tau])`` (tokens/s per instance)."""
        return self.ratio * self.batch / ((self.ratio + 1) * np.asarray(mean_step_time, float))


def check_workload(workload):
    """Reject anything that is not a workload of :mod:`afdlib.workload`."""
    if not isinstance(workload, (IndependentLengths, JointLengths)):
        raise AfdInputError(f"not a workload (IndependentLengths or JointLengths): "
                            f"{type(workload).__name__}")
    return workload


def check_run(steps, warmup, init) -> tuple[int, int, str]:
    """Validate the run length, the warm-up and the start state."""
    steps = check_int("steps", steps, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    if warmup >= steps:
        raise AfdInputError(f"warmup ({warmup}) must be smaller than steps ({steps})")
    if init not in INITS:
        raise AfdInputError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    return steps, warmup, init


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
