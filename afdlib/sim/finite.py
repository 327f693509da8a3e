"""A finite trace, replayed once: the throughput until a share of its requests completes.

The stationary throughput of the other engines is a long-run rate with every slot
always busy. A benchmark on a real system instead serves a *finite* set of requests:
here the rows of a trace, handed out in arrival order from a cold start (slot ``i``
starts row ``i`` at step 0, a freed slot takes the next row, ties to the lower slot),
until they run out; the slots then drain. The paper's metric is the throughput over
the time until a fraction (80%) of the requests have completed, which leaves out most
of the drain:

    Lambda_f = (decode tokens produced until the ceil(f N)-th completion)
               / (time of that completion) / (r w_A + w_F)

(in the objective's units; tokens of requests still running are counted, since every
busy slot produces a token per step).

While slots are idle, a step is shorter: a worker with no request does no attention,
the FFN runs on the tokens of the busy slots (``t_F = alpha_F n + beta_F`` for ``n``
busy slots) and so does the link (``t_C`` with the busiest worker's slots as its batch
when communication scales with ``B``, all busy slots when it scales with ``r B``). With
every slot busy this is the step model. The run is deterministic (no random numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import OperatingPoint, step_time
from afdlib.sim.bundle import Bundle, worker_seeds
from afdlib.sim.loads import LoadStream
from afdlib.sim.progress import progress_bar
from afdlib.validate import check_number, check_type
from afdlib.workload import JointLengths

__all__ = ["FiniteTraceResult", "FiniteSweep", "simulate_finite_trace", "sweep_finite_trace"]


@dataclass(frozen=True)
class FiniteTraceResult:
    """A finite trace served once by one bundle, measured until a share of it completes.

    Attributes
    ----------
    ratio, batch : int
        The bundle.
    requests : int
        Requests in the trace, ``N``.
    fraction : float
        Share of them whose completion ends the measurement, ``f``.
    completed : int
        ``ceil(f N)``.
    steps : int
        Steps until that completion (its request's last decode step included).
    time : float
        Time of that completion (s).
    tokens : int
        Decode tokens produced by then (every busy slot's, at every step).
    mean_step_time : float
        ``time / steps`` (s).
    effective_step_time : float
        ``time r B / tokens``: the step time at which full slots would give the same
        token rate (s); the throughputs are the step model's at this step time.
    throughput : float
        The bundle's objective, ``tokens / (time (r w_A + w_F))``.
    throughput_per_instance : float
        ``tokens / (time (r + 1))`` (tokens/s per instance).
    throughput_per_gpu : float or None
        Per GPU, where the objective knows the GPU counts.
    throughput_unit : str
        Unit of ``throughput``.
    full_until : int or None
        First step at which some slot is idle (the trace has run out), or None if every
        slot was busy until the end of the measurement.
    """

    ratio: int
    batch: int
    requests: int
    fraction: float
    completed: int
    steps: int
    time: float
    tokens: int
    mean_step_time: float
    effective_step_time: float
    throughput: float
    throughput_per_instance: float
    throughput_per_gpu: float | None
    throughput_unit: str
    full_until: int | None

    def to_dict(self) -> dict:
        """The JSON-ready summary."""
        return dict(self.__dict__)


def simulate_finite_trace(workload: JointLengths, bundle: Bundle, *, fraction: float = 0.8,
                          progress: bool | None = False, stream=None) -> FiniteTraceResult:
    """Serve the rows of a trace once, in order, and measure until ``fraction`` complete.

    Parameters
    ----------
    workload : JointLengths
        The finite set of requests, in arrival order.
    bundle : Bundle
        Ratio r, batch B, step-time coefficients and objective.
    fraction : float
        Share of the requests whose completion ends the measurement, in (0, 1] (the
        paper's: 0.8).
    progress : bool or None or ProgressBar
        Progress bar (over an upper bound of the steps): True, None (on a terminal),
        False (default), or a caller's bar.
    stream : file-like, optional
        Where the bar goes.

    Returns
    -------
    FiniteTraceResult

    Raises
    ------
    AfdInputError
        For a workload that is not a trace, a bad bundle or fraction.
    """
    if not isinstance(workload, JointLengths):
        raise AfdInputError("a finite trace needs the rows of a trace (JointLengths), not "
                            "length laws", parameter="workload")
    check_type("bundle", bundle, Bundle, "a Bundle")
    fraction = check_number("fraction", fraction, minimum=0.0, strict=True)
    if fraction > 1:
        raise AfdInputError(f"fraction must be in (0, 1], got {fraction:g}",
                            parameter="fraction")
    r, b, c = bundle.ratio, bundle.batch, bundle.coeffs
    n_rows = len(workload)
    target = max(1, math.ceil(fraction * n_rows - 1e-9))
    slots = r * b
    decode = workload.decode
    # list scheduling finishes every request by sum(D) / slots + max(D) steps (Graham)
    bound = int(-(-int(decode.sum()) // slots) + int(decode.max()) + 2)
    loads = LoadStream(workload, worker_seeds(0, r), b, bound, init="cold", replay=True,
                       finite=True)
    per_worker = c.comm_scales_with == "B"
    completed = tokens = 0
    elapsed = 0.0
    full_until = None
    with progress_bar(progress, bound, stream=stream, label="finite trace ") as bar:
        for chunk in loads:
            busy = chunk.active  # (r, L) busy slots of each worker
            total = busy.sum(axis=0)
            if full_until is None and (total < slots).any():
                full_until = chunk.first + int(np.argmax(total < slots))
            att = np.where(busy > 0, c.attention_time(chunk.loads), 0.0).max(axis=0)
            comm_batch = busy.max(axis=0) if per_worker else total / r
            tau = step_time(att, c.comm_time(batch=comm_batch, ratio=r),
                            c.ffn_time(batch=total / r, ratio=r))
            tau = np.where(total > 0, tau, 0.0)
            # the slots freed at step t finished their requests at the end of step t - 1
            done = completed + np.cumsum(chunk.freed)
            if done[-1] < target:
                completed = int(done[-1])
                elapsed += float(tau.sum())
                tokens += int(total.sum())
                bar.update(chunk.steps)
                continue
            j = int(np.searchsorted(done, target))  # event step: the target's end
            elapsed += float(tau[:j].sum())
            tokens += int(total[:j].sum())
            steps = chunk.first + j
            bar.update(j)
            break
        else:  # pragma: no cover - the bound makes every request complete
            raise AfdInputError("the finite trace did not complete within its step bound")
    if full_until is not None and full_until >= steps:
        full_until = None
    effective = elapsed * slots / tokens
    per_gpu = bundle.throughput_per_gpu(effective)
    return FiniteTraceResult(
        ratio=r, batch=b, requests=n_rows, fraction=fraction, completed=target, steps=steps,
        time=elapsed, tokens=tokens, mean_step_time=elapsed / steps,
        effective_step_time=effective, throughput=float(bundle.throughput(effective)),
        throughput_per_instance=float(bundle.throughput_per_instance(effective)),
        throughput_per_gpu=None if per_gpu is None else float(per_gpu),
        throughput_unit=bundle.objective.unit, full_until=full_until)


@dataclass(frozen=True, eq=False)
class FiniteSweep:
    """A finite trace served by the bundle at each of several ratios.

    Attributes
    ----------
    ratios : ndarray of int
    results : tuple of FiniteTraceResult
    """

    ratios: np.ndarray
    results: tuple[FiniteTraceResult, ...]

    @property
    def throughput(self) -> np.ndarray:
        """The objective at each ratio."""
        return np.array([x.throughput for x in self.results])

    @property
    def best_ratio(self) -> int:
        """The ratio of the highest throughput (exact: the run has no noise)."""
        return int(self.ratios[int(np.argmax(self.throughput))])


def sweep_finite_trace(workload: JointLengths, point: OperatingPoint, ratios, *,
                       fraction: float = 0.8) -> FiniteSweep:
    """:func:`simulate_finite_trace` at each ratio (the bundle from ``point``).

    Returns
    -------
    FiniteSweep
    """
    check_type("point", point, OperatingPoint, "an afdlib.model.OperatingPoint")
    values = sorted({int(r) for r in ratios})
    if not values:
        raise AfdInputError("no ratios to sweep", parameter="ratios")
    results = tuple(simulate_finite_trace(workload, Bundle.at(point, r), fraction=fraction)
                    for r in values)
    return FiniteSweep(np.array(values), results)
