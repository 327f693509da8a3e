"""A straightforward per-step simulation, the independent check of the fast engines.

This is what one writes first: hold every slot's context and remaining decode steps in
``(r, B)`` arrays and advance them one step at a time, refilling finished slots with fresh
requests. It shares no code with :mod:`afdlib.sim.loads` (no renewal jumps, no cumulative
sums) and uses its own single random stream, so agreement between the two is evidence,
not an identity. Its cost is ``O(r * B)`` per step; the benchmark uses it as the baseline.
"""

from __future__ import annotations

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.sim.bundle import Bundle, check_run, check_workload
from afdlib.sim.results import SimResult, StepRecords, _fraction, batch_means
from afdlib.workload import JointLengths, sample_stationary_slots

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
    workload = check_workload(workload)
    if not isinstance(bundle, Bundle):
        raise AfdInputError(f"bundle must be a Bundle, got {type(bundle).__name__}")
    steps, warmup, init = check_run(steps, warmup, init)
    if replay and not isinstance(workload, JointLengths):
        raise AfdInputError("replay needs a trace (rows of requests), not length laws")
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

    t_c = float(c.comm_time(r, b))
    t_f = float(c.ffn_time(r, b))
    tau = np.empty(steps)
    loads = np.empty((steps, r))
    requests = 0
    for s in range(steps):
        load = ctx.sum(axis=1)
        loads[s] = load
        tau[s] = max(float((c.alpha_A * load + c.beta_A).max()), t_c, t_f)
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
    attention = c.alpha_A * loads + c.beta_A
    kept = tau[warmup:]
    mean, lo, hi = batch_means(kept, n_batches)
    scale = r * b / (r + 1)
    elapsed = kept.sum()
    return SimResult(
        engine="reference", ratio=r, batch=b, steps=steps, warmup=warmup, init=init,
        lengths="replay" if replay else "resample", microbatches=1,
        mean_step_time=mean, step_time_ci95=(lo, hi),
        throughput_per_instance=scale / mean, throughput_ci95=(scale / hi, scale / lo),
        attention_idle=_fraction(1 - attention[warmup:].sum() / (r * elapsed)),
        comm_idle=_fraction(1 - t_c * kept.size / elapsed),
        ffn_idle=_fraction(1 - t_f * kept.size / elapsed),
        barrier_overhead=float(np.mean(attention[warmup:].max(axis=1)
                                       - attention[warmup:].mean(axis=1))),
        mean_load=float(loads[warmup:].mean()), load_std=float(loads[warmup:].std()),
        requests=requests,
        records=StepRecords(tau, loads, attention) if record else None,
    )
