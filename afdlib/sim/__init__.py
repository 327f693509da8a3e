"""The AFD simulator: the referee for the provisioning rules.

It takes the step model from :mod:`afdlib.model` (stage and step times, the objective, so
that it reports the figure the rules maximize, prices included) and never imports
:mod:`afdlib.provision`, the rules it referees.

Two engines over the same workload and step-time inputs:

* :func:`simulate_step` -- synchronized steps with exact per-slot renewal dynamics and
  the exact max over workers every step; its work grows with the number of requests,
  not with slots times steps;
* :func:`simulate_pipeline` -- a discrete-event model with ``m >= 2`` microbatches per
  Attention worker, in which attention, communication and FFN are separate resources.

:func:`simulate` picks an engine by name, :func:`sweep` runs one over a range of
ratios (common random numbers, optional progress bar) and finds the ratios statistically
indistinguishable from the best (:mod:`afdlib.sim.compare`), :func:`replicate` pools
independent runs, :func:`simulate_finite_trace` serves a finite trace once and measures
until 80% of it completes (:mod:`afdlib.sim.finite`), and :func:`simulate_reference` is a
deliberately plain per-step loop over slots, kept as an independent check and as the
benchmark's baseline.

Cost and memory: the step engine does ``O(requests + r * steps)`` work, about
``r * B * steps / E[D]`` requests (replay: in rounds of several steps each), and its
memory does not grow with the run: load paths come in chunks of steps
(:class:`LoadStream`), and the statistics are bounded summaries
(:mod:`afdlib.sim.streaming`: batch means over at most 2^18 micro-batches, a histogram for
the step-time quantiles). Per-step records are kept only when asked for, in memory
(``record=True``) or written chunk by chunk (``record_to=``, :mod:`afdlib.sim.records`).
The pipelined engine adds a Python loop over steps. Where numba is installed, the load
stream's loops and the pipelined recursion run compiled (:mod:`afdlib.sim.kernels`);
elsewhere (in the browser) the numpy code runs, with the same results to the bit.
"""

from afdlib.sim.bundle import INITS, Bundle, RunOptions, check_run, worker_seeds
from afdlib.sim.compare import Screening, paired_batches, screen_to_the_best
from afdlib.sim.finite import (
    FiniteSweep,
    FiniteTraceResult,
    simulate_finite_trace,
    sweep_finite_trace,
)
from afdlib.sim.loads import LoadChunk, LoadPath, LoadStream, load_path
from afdlib.sim.pipeline import INTERCEPTS, simulate_pipeline
from afdlib.sim.reference import simulate_reference
from afdlib.sim.results import (
    SimResult,
    StepRecords,
    autocorrelation_time,
    batch_means,
    idle_fraction,
    predicted_halfwidth,
)
from afdlib.sim.step import simulate_step
from afdlib.sim.sweep import (
    ENGINES,
    Replications,
    SweepResult,
    compare_ratios,
    replicate,
    simulate,
    sweep,
    throughput_gap,
)

__all__ = [
    "Bundle",
    "RunOptions",
    "check_run",
    "worker_seeds",
    "idle_fraction",
    "predicted_halfwidth",
    "throughput_gap",
    "INITS",
    "INTERCEPTS",
    "ENGINES",
    "LoadChunk",
    "LoadPath",
    "LoadStream",
    "load_path",
    "SimResult",
    "StepRecords",
    "SweepResult",
    "Replications",
    "replicate",
    "autocorrelation_time",
    "batch_means",
    "simulate",
    "simulate_pipeline",
    "simulate_reference",
    "simulate_step",
    "sweep",
    "compare_ratios",
    "Screening",
    "paired_batches",
    "screen_to_the_best",
    "FiniteSweep",
    "FiniteTraceResult",
    "simulate_finite_trace",
    "sweep_finite_trace",
]
