"""A straightforward per-step simulation, the independent check of the fast engines.

This is what one writes first: hold every slot's context and remaining decode steps in
``(r, B)`` arrays and advance them one step at a time, refilling finished slots with fresh
requests. It shares no code with :mod:`afdlib.sim.loads` (no renewal jumps, no cumulative
sums) and uses its own single random stream, so agreement between the two is evidence,
not an identity. Its cost is ``O(r * B)`` per step; the benchmark uses it as the baseline.
It shares with the engines only the step model (:mod:`afdlib.model`), the run check and the
summary statistics. It holds its whole run in memory (``O(r * steps)``).
"""

from __future__ import annotations

import numpy as np

from afdlib.model import step_time
from afdlib.sim.bundle import Bundle, check_run
from afdlib.sim.results import RunAccumulator, SimResult
from afdlib.workload import sample_stationary_slots

__all__ = ["simulate_reference"]


def simulate_reference(workload, bundle: Bundle, *, steps: int = 20_000, seed=0,
                       init: str = "stationary", replay: bool = False, warmup: int = 0,
                       record: bool = False, n_batches: int | None = None) -> SimResult:
    """Simulate the step model with a plain loop over steps (slow, obviously correct).

    Parameters
    ----------
    workload : IndependentLengths or JointLengths
        Request lengths (P tokens, D >= 1 steps).
    bundle : Bundle
        Ratio r, batch B and coefficients.
    steps : int
        Steps, >= 1.
    seed : int or numpy.random.Generator
        One stream for everything (unlike the fast engines' per-worker streams).
    init : {"stationary", "cold"}
        Start state. With ``replay`` and ``"cold"`` the first r*B trace rows fill the
        slots in order.
    replay : bool
        Finished slots (in slot order) take the trace's next rows, cycling.
    warmup : int
        Leading steps excluded from the statistics.
    record : bool
        Keep per-step records.
    n_batches : int or None
        Batches for the confidence interval (``None``: automatic).

    Returns
    -------
    SimResult
        With ``engine="reference"``.
    """
    run = check_run(workload, bundle, steps=steps, warmup=warmup, init=init, replay=replay,
                    n_batches=n_batches)
    steps, warmup = run.steps, run.warmup
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    r, b, c = bundle.ratio, bundle.batch, bundle.coeffs
    n = r * b
    next_row = 0
    if replay and init == "cold":
        rows = np.arange(n) % len(workload)
        ctx, rem = workload.prompt[rows].copy(), workload.decode[rows].copy()
        next_row = n % len(workload)
    elif init == "stationary":
        ctx, rem = sample_stationary_slots(workload, rng, n)
    else:
        ctx, rem = workload.sample_requests(rng, n)
    ctx = np.asarray(ctx, dtype=np.int64).reshape(r, b)
    rem = np.asarray(rem, dtype=np.int64).reshape(r, b)

    loads = np.empty((steps, r))
    requests = 0
    for s in range(steps):
        loads[s] = ctx.sum(axis=1)
        ctx += 1
        rem -= 1
        finished = rem == 0
        k = int(finished.sum())
        if k:
            if replay:
                rows = (next_row + np.arange(k)) % len(workload)
                p, d = workload.prompt[rows], workload.decode[rows]
                next_row = (next_row + k) % len(workload)
            else:
                p, d = workload.sample_requests(rng, k)
            ctx[finished] = p
            rem[finished] = d
            requests += k if s + 1 < steps else 0
    t_c, t_f = bundle.comm_time, bundle.ffn_time
    loads = loads.T  # (r, steps), workers as rows like the engines
    tau = step_time(c.attention_time(loads).max(axis=0), t_c, t_f)
    acc = RunAccumulator(bundle, run, attention_intercept=c.beta_A, record=record)
    acc.add(0, tau, loads)
    return acc.result(engine="reference", microbatches=1, comm_busy=t_c, ffn_busy=t_f,
                      requests=requests)
