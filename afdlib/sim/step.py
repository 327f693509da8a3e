"""The step engine: synchronized steps, exact slot renewals, the exact barrier.

Each step every Attention worker ``w`` runs attention over its load ``T_w`` (the sum of
its B slots' contexts), communication and the FFN overlap with it, and the step lasts

    tau = max{ max_w t_A(T_w), t_C, t_F(rB) }.

Nothing is averaged or approximated: each slot is its own renewal process (a finished
request's slot takes a fresh request at the next step), and the max over workers is
taken step by step. The loads come from :class:`afdlib.sim.loads.LoadStream`, whose work
is proportional to the number of requests, not to slots times steps, chunk by chunk of
steps: memory does not grow with the run (unless per-step records are kept in memory).
"""

from __future__ import annotations

from afdlib.model import step_time
from afdlib.sim.bundle import Bundle, check_run, worker_seeds
from afdlib.sim.loads import LoadStream
from afdlib.sim.progress import progress_bar
from afdlib.sim.results import RunAccumulator, SimResult

__all__ = ["simulate_step"]


def simulate_step(workload, bundle: Bundle, *, steps: int = 20_000, seed=0,
                  init: str = "stationary", replay: bool = False, warmup: int = 0,
                  record: bool = False, n_batches: int | None = None, record_to=None,
                  progress: bool | None = False, stream=None) -> SimResult:
    """Simulate an rA-1F bundle step by step.

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
        Request lengths: prompt P (tokens of context before decoding) and D >= 1 decode
        steps, drawn i.i.d. (laws, or trace rows with replacement) unless ``replay``.
    bundle : Bundle
        Ratio r, batch B and step-time coefficients.
    steps : int
        Steps to simulate, >= 1.
    seed : int or numpy.random.Generator or numpy.random.SeedSequence
        Randomness; worker w has its own stream (see
        :func:`afdlib.sim.bundle.worker_seeds`).
    init : {"stationary", "cold"}
        Stationary start (length-biased request at a uniform position in every slot)
        or cold start (every slot begins a fresh request).
    replay : bool
        Hand out a trace's rows in order (earliest-free slot first, cycling).
    warmup : int
        Leading steps excluded from the statistics, ``0 <= warmup < steps``.
    record : bool
        Keep per-step records in memory (step times, worker loads and attention times:
        ``O(r * steps)`` numbers).
    n_batches : int or None
        Batches for the batch-means confidence intervals, >= 2; ``None`` (default)
        chooses them from the autocorrelation time (see
        :func:`afdlib.sim.batch_means`).
    record_to : callable, optional
        ``record_to(first_step, StepRecords)`` receives the per-step records chunk by
        chunk (bounded memory; e.g. :func:`afdlib.sim.records.open_records`).
    progress : bool or None or ProgressBar
        Draw a progress bar with a time estimate: True always, None when ``stream`` is a
        terminal, False never (default); or advance a caller's
        :class:`afdlib.sim.progress.ProgressBar` by the steps done.
    stream : file-like, optional
        Where the bar goes (default ``sys.stderr``).

    Returns
    -------
    SimResult

    Raises
    ------
    AfdInputError
        On a bad workload, bundle or run option.
    """
    run = check_run(workload, bundle, steps=steps, warmup=warmup, init=init, replay=replay,
                    n_batches=n_batches)
    r, b, c = bundle.ratio, bundle.batch, bundle.coeffs
    loads = LoadStream(workload, worker_seeds(seed, r), b, run.steps, init=run.init,
                       replay=run.replay)
    t_c, t_f = bundle.comm_time, bundle.ffn_time
    acc = RunAccumulator(bundle, run, attention_intercept=c.beta_A, record=record,
                         record_to=record_to)
    with progress_bar(progress, run.steps, stream=stream, label="simulate ") as bar:
        for chunk in loads:
            # t_A is increasing in the load: the slowest worker is the most loaded one
            top = chunk.loads.max(axis=0)
            tau = step_time(c.attention_time(top), t_c, t_f)
            acc.add(chunk.first, tau, chunk.loads, top)
            bar.update(chunk.steps)
    return acc.result(engine="step", microbatches=1, comm_busy=t_c, ffn_busy=t_f,
                      requests=loads.requests)
