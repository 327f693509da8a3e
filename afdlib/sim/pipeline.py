"""The pipelined engine: microbatches flowing through separate resources.

Each Attention worker splits its B slots into ``m >= 2`` microbatches (sizes as equal as
possible). A microbatch cycles through four stages, each a separate single-server
resource serving microbatches in order:

1. **attention** on its worker: ``alpha_A * T_{w,k} + beta_A`` for the microbatch's load;
2. **dispatch** (Attention -> FFN direction of the interconnect), which starts once *all*
   r workers' parts of microbatch k are done: ``t_C`` for the microbatch's tokens;
3. **FFN** on the r parts together: ``alpha_F * r * b_k + beta_F``;
4. **combine** (FFN -> Attention direction): ``t_C`` again; after it the microbatch's
   next step of attention may start.

The interconnect is full duplex: each direction is busy ``t_C`` per step, the same
per-resource busy time as in the step model. Intercepts are paid per microbatch
(``intercepts="per_microbatch"``, the default: every kernel launch and message costs its
fixed time) or spread over the step (``"per_step"``, each microbatch pays ``beta / m``:
the idealization under which the step model's ``tau = max{max_w t_A, t_C, t_F}`` is the
pipeline's bottleneck).

Because every resource serves microbatches in the same cyclic order, the discrete-event
dynamics are the max-plus recursion ``finish_n = max(finish_{n-1}, ready_n) + service_n``
at each resource, solved exactly step by step; the slot loads are the same exact renewal
paths as in the step engine (the same seed gives the same requests in the same slots).
"""

from __future__ import annotations

import math

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.model import INTERCEPTS, intercept_share, microbatch_sizes
from afdlib.sim import kernels
from afdlib.sim.bundle import Bundle, check_run, worker_seeds
from afdlib.sim.loads import LoadStream
from afdlib.sim.progress import progress_bar
from afdlib.sim.results import RunAccumulator, SimResult
from afdlib.validate import check_int

__all__ = ["simulate_pipeline", "pipeline_completion_times", "PipelineState", "INTERCEPTS"]


def _chain(ready, service, last):
    """Finish times of jobs served in order by one server (pure Python, small m)."""
    out = []
    for u, t in zip(ready, service, strict=True):
        last = (u if u > last else last) + t
        out.append(last)
    return out


#: Up to this many (worker, microbatch) parts per step the recursion runs on Python
#: floats (numpy's per-call overhead would dominate); above, vectorized over workers.
#: Both do the same float operations in the same order, so they agree exactly.
SCALAR_PARTS = 48


def pipeline_completion_times(attention, comm, ffn, *, state=None) -> np.ndarray:
    """Completion time of every step of the microbatch pipeline (exact event dynamics).

    Microbatch k of step s is served, in this order, by its worker's attention
    (``attention[s, w, k]``; the r workers in parallel), the dispatch link (``comm[k]``,
    once all r parts are done), the FFN (``ffn[k]``) and the combine link (``comm[k]``);
    its attention at step s + 1 can start once its combine is done. Every resource
    serves microbatches in the order ``k = 0 .. m-1`` of step 0, then of step 1, ...,
    starting when both the resource and the microbatch are ready; all start free at 0.

    Parameters
    ----------
    attention : ndarray, shape (steps, r, m)
        Attention time of each worker's part of each microbatch (s).
    comm : sequence of float, length m
        Transfer time of each microbatch in each direction (s).
    ffn : sequence of float, length m
        FFN time of each microbatch (s).
    state : PipelineState, optional
        When each resource and microbatch is free after the steps before (updated in
        place): pass the same state to continue a run with its next steps. Default: all
        free at time 0.

    Returns
    -------
    ndarray, shape (steps,)
        Time at which the last microbatch of each step is back at the workers (s).

    Notes
    -----
    Each service starts at the later of two ready times and adds its duration, in
    floating point exactly as an event-driven simulation does.
    """
    attention = np.asarray(attention, dtype=float)
    steps, r, m = attention.shape
    comm = [float(x) for x in comm]
    ffn = [float(x) for x in ffn]
    if len(comm) != m or len(ffn) != m:
        raise AfdInputError("comm and ffn need one time per microbatch")
    if state is None:
        state = PipelineState(r, m)
    if kernels.enabled():
        return _completion_compiled(attention, comm, ffn, state)
    if r * m <= SCALAR_PARTS:
        return np.array(_completion_scalar(attention, comm, ffn, state), dtype=float)
    return _completion_vector(attention, comm, ffn, state)


class PipelineState:
    """When the pipeline's resources and microbatches are free (s), between two calls of
    :func:`pipeline_completion_times`.

    Parameters
    ----------
    ratio, microbatches : int
        Workers r and microbatches m.
    """

    def __init__(self, ratio: int, microbatches: int) -> None:
        self.worker_free = [0.0] * ratio
        self.back = [0.0] * microbatches  # each microbatch's input back at the workers
        self.out_free = self.ffn_free = self.back_free = 0.0

    def shift(self, origin: float) -> None:
        """Measure the times from ``origin`` on (keeps them small over long runs)."""
        self.worker_free = [x - origin for x in self.worker_free]
        self.back = [x - origin for x in self.back]
        self.out_free -= origin
        self.ffn_free -= origin
        self.back_free -= origin


def _completion_compiled(attention, comm, ffn, state):
    """The recursion in compiled code (:func:`afdlib.sim.kernels.pipeline_steps`)."""
    worker_free = np.array(state.worker_free, dtype=float)
    back = np.array(state.back, dtype=float)
    free = np.array([state.out_free, state.ffn_free, state.back_free])
    done = np.empty(attention.shape[0])
    kernels.pipeline_steps(np.ascontiguousarray(attention), np.array(comm), np.array(ffn),
                           worker_free, back, free, done)
    state.worker_free, state.back = worker_free.tolist(), back.tolist()
    state.out_free, state.ffn_free, state.back_free = (float(x) for x in free)
    return done


def _completion_scalar(attention, comm, ffn, state):
    """The recursion on Python floats: attention as nested lists, one step at a time."""
    steps, r, m = attention.shape
    rows = attention.reshape(steps, r * m).tolist()
    done = [0.0] * steps
    worker_free = list(state.worker_free)
    back = list(state.back)  # when each microbatch's input for the next step is back
    out_free, ffn_free, back_free = state.out_free, state.ffn_free, state.back_free
    ready = [0.0] * m
    for s in range(steps):
        row = rows[s]
        for k in range(m):
            ready[k] = -math.inf
        i = 0
        for w in range(r):
            # worker w serves its parts k = 0 .. m-1 in order, each once it is back
            f = worker_free[w]
            for k in range(m):
                b = back[k]
                f = (f if f > b else b) + row[i]
                i += 1
                if f > ready[k]:
                    ready[k] = f  # all r parts of microbatch k are done
            worker_free[w] = f
        t = out_free
        for k in range(m):
            u = ready[k]
            t = (t if t > u else u) + comm[k]
            ready[k] = t
        out_free = t
        t = ffn_free
        for k in range(m):
            u = ready[k]
            t = (t if t > u else u) + ffn[k]
            ready[k] = t
        ffn_free = t
        t = back_free
        for k in range(m):
            u = ready[k]
            t = (t if t > u else u) + comm[k]
            back[k] = t
        back_free = t
        done[s] = t
    state.worker_free, state.back = worker_free, back
    state.out_free, state.ffn_free, state.back_free = out_free, ffn_free, back_free
    return done


def _completion_vector(attention, comm, ffn, state):
    """The recursion vectorized over workers (many parts per step)."""
    steps, r, m = attention.shape
    att = np.ascontiguousarray(attention.transpose(0, 2, 1))  # (steps, m, r)
    done = np.empty(steps)
    f = np.array(state.worker_free, dtype=float)  # when each worker is free
    back = list(state.back)
    out_free, ffn_free, back_free = state.out_free, state.ffn_free, state.back_free
    for s in range(steps):
        a = att[s]
        arrived = []
        for k in range(m):
            np.maximum(f, back[k], out=f)
            f += a[k]
            arrived.append(float(f.max()))  # all r parts of microbatch k are done
        sent = _chain(arrived, comm, out_free)
        out_free = sent[-1]
        ffn_done = _chain(sent, ffn, ffn_free)
        ffn_free = ffn_done[-1]
        back = _chain(ffn_done, comm, back_free)
        back_free = back[-1]
        done[s] = back_free
    state.worker_free, state.back = f.tolist(), list(back)
    state.out_free, state.ffn_free, state.back_free = out_free, ffn_free, back_free
    return done


def simulate_pipeline(workload, bundle: Bundle, *, microbatches: int = 2, steps: int = 20_000,
                      seed=0, init: str = "stationary", replay: bool = False,
                      warmup: int = 0, intercepts: str = "per_microbatch",
                      record: bool = False, n_batches: int | None = None, record_to=None,
                      progress: bool | None = False, stream=None) -> SimResult:
    """Simulate an rA-1F bundle as a pipeline of microbatches (discrete-event model).

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
        Request lengths (P tokens, D >= 1 steps).
    bundle : Bundle
        Ratio r, batch B and step-time coefficients.
    microbatches : int
        Microbatches per Attention worker, ``2 <= m <= B``.
    steps : int
        Steps to simulate (every microbatch advances once per step), >= 1.
    seed : int or numpy.random.Generator or numpy.random.SeedSequence
        Randomness (the same seed gives the step engine's slot paths).
    init : {"stationary", "cold"}
        Start state of the slots.
    replay : bool
        Hand out a trace's rows in order instead of resampling.
    warmup : int
        Leading steps excluded from the statistics (the pipeline also fills up here).
    intercepts : {"per_microbatch", "per_step"}
        Whether each microbatch pays the full intercepts ``beta_A, beta_C, beta_F`` or
        ``1/m`` of them.
    record : bool
        Keep per-step records in memory.
    n_batches : int or None
        Batches for the batch-means intervals, >= 2; ``None`` (default) chooses them
        from the autocorrelation time.
    record_to : callable, optional
        Receives the per-step records chunk by chunk (see
        :func:`afdlib.sim.simulate_step`).
    progress : bool or None or ProgressBar
        Progress bar: True always, None on a terminal, False never (default), or a
        caller's bar to advance (see :func:`afdlib.sim.simulate_step`).
    stream : file-like, optional
        Where the bar goes (default ``sys.stderr``).

    Returns
    -------
    SimResult
        Step time is the time between the completions (return of the last
        microbatch) of consecutive steps.

    Raises
    ------
    AfdInputError
        On bad input, e.g. ``m < 2`` or ``m > B``.
    """
    run = check_run(workload, bundle, steps=steps, warmup=warmup, init=init, replay=replay,
                    n_batches=n_batches)
    m = check_int("microbatches m", microbatches, minimum=2)
    if m > bundle.batch:
        raise AfdInputError(f"microbatches m ({m}) must be <= batch B ({bundle.batch})",
                            parameter="microbatches")
    share = intercept_share(intercepts, m)
    r, b, c = bundle.ratio, bundle.batch, bundle.coeffs
    sizes = microbatch_sizes(b, m)
    slot_group = np.repeat(np.arange(m), sizes)
    loads = LoadStream(workload, worker_seeds(seed, r), b, run.steps, slot_group=slot_group,
                       init=run.init, replay=run.replay)
    t_comm = c.comm_time(batch=sizes, ratio=r, intercept_scale=share).tolist()
    t_ffn = c.ffn_time(batch=sizes, ratio=r, intercept_scale=share).tolist()
    state = PipelineState(r, m)
    acc = RunAccumulator(bundle, run, attention_intercept=m * share * c.beta_A,
                         record=record, record_to=record_to)
    with progress_bar(progress, run.steps, stream=stream, label="simulate ") as bar:
        for chunk in loads:
            width = chunk.steps
            mb_loads = chunk.loads  # (r*m, steps), group w*m + k
            att = c.attention_time(np.ascontiguousarray(mb_loads.T),  # (steps, r*m)
                                   intercept_scale=share).reshape(width, r, m)
            done = pipeline_completion_times(att, t_comm, t_ffn, state=state)
            # the state's times count from the last completion: the next chunk's first
            # step time is its first completion
            step_time = np.diff(done, prepend=0.0)
            state.shift(float(done[-1]))
            acc.add(chunk.first, step_time, mb_loads.reshape(r, m, width).sum(axis=1))
            bar.update(width)
    return acc.result(engine="pipeline", microbatches=m, comm_busy=sum(t_comm),
                      ffn_busy=sum(t_ffn), requests=loads.requests)
