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
from afdlib.sim.bundle import Bundle, check_run, worker_seeds
from afdlib.sim.loads import load_path
from afdlib.sim.results import SimResult, summarize
from afdlib.validate import check_int

__all__ = ["simulate_pipeline", "pipeline_completion_times", "INTERCEPTS"]


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


def pipeline_completion_times(attention, comm, ffn) -> np.ndarray:
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
    if r * m <= SCALAR_PARTS:
        return np.array(_completion_scalar(attention, comm, ffn), dtype=float)
    return _completion_vector(attention, comm, ffn)


def _completion_scalar(attention, comm, ffn):
    """The recursion on Python floats: attention as nested lists, one step at a time."""
    steps, r, m = attention.shape
    rows = attention.reshape(steps, r * m).tolist()
    done = [0.0] * steps
    worker_free = [0.0] * r
    back = [0.0] * m  # when each microbatch's input for the next step is back
    out_free = ffn_free = back_free = 0.0
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
    return done


def _completion_vector(attention, comm, ffn):
    """The recursion vectorized over workers (many parts per step)."""
    steps, r, m = attention.shape
    att = np.ascontiguousarray(attention.transpose(0, 2, 1))  # (steps, m, r)
    done = np.empty(steps)
    f = np.zeros(r)  # when each worker is free
    back = [0.0] * m
    out_free = ffn_free = back_free = 0.0
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
    return done


def simulate_pipeline(workload, bundle: Bundle, *, microbatches: int = 2, steps: int = 20_000,
                      seed=0, init: str = "stationary", replay: bool = False,
                      warmup: int = 0, intercepts: str = "per_microbatch",
                      record: bool = False, n_batches: int | None = None) -> SimResult:
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
        Keep per-step records.
    n_batches : int or None
        Batches for the batch-means intervals, >= 2; ``None`` (default) chooses them
        from the autocorrelation time.

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
    steps, warmup = run.steps, run.warmup
    m = check_int("microbatches m", microbatches, minimum=2)
    if m > bundle.batch:
        raise AfdInputError(f"microbatches m ({m}) must be <= batch B ({bundle.batch})",
                            parameter="microbatches")
    share = intercept_share(intercepts, m)
    r, b, c = bundle.ratio, bundle.batch, bundle.coeffs
    sizes = microbatch_sizes(b, m)
    slot_group = np.repeat(np.arange(m), sizes)
    path = load_path(workload, worker_seeds(seed, r), b, steps, slot_group=slot_group,
                     init=run.init, replay=run.replay)
    mb_loads = path.loads  # (r*m, steps), group w*m + k
    att = c.attention_time(np.ascontiguousarray(mb_loads.T),  # (steps, r*m), C order
                           intercept_scale=share).reshape(steps, r, m)
    t_comm = c.comm_time(batch=sizes, ratio=r, intercept_scale=share).tolist()
    t_ffn = c.ffn_time(batch=sizes, ratio=r, intercept_scale=share).tolist()

    done = pipeline_completion_times(att, t_comm, t_ffn)
    step_time = np.diff(done, prepend=0.0)
    worker_att = att.sum(axis=2).T  # (r, steps)
    loads = mb_loads.reshape(r, m, steps).sum(axis=1)
    measured = steps - warmup
    elapsed = float(done[-1] - (done[warmup - 1] if warmup else 0.0))
    return summarize(
        engine="pipeline", bundle=bundle, run=run, microbatches=m,
        step_time=step_time, loads=loads, attention_time=worker_att,
        attention_busy=float(worker_att[:, warmup:].sum()), comm_busy=sum(t_comm) * measured,
        ffn_busy=sum(t_ffn) * measured, elapsed=elapsed, requests=path.requests,
        record=record)
