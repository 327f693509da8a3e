"""Benchmark: the step engine against a per-step numpy loop and a SimPy process model.

All three simulate the same bundle (r = 8 Attention workers, B = 256 slots each, 20,000
steps, requests resampled from a public trace, stationary start) and must agree on the
mean step time within sampling noise; the script prints their wall times and the ratios.

* ``engine``: :func:`afdlib.sim.simulate_step` (work proportional to the requests);
* ``numpy loop``: :func:`afdlib.sim.simulate_reference`, every slot advanced every step
  with vectorized numpy, the straightforward simulation;
* ``SimPy``: a process model as a researcher would write it: one process per Attention
  worker, one each for communication and FFN, a step ends when all have finished.

Timings are wall-clock on whatever machine runs this; only the ratios between runs in the
same process mean anything. The engine is timed as the best of ``--repeats`` runs, the
numpy loop as the best of ``--loop-repeats`` and the SimPy model once (it is hundreds of
times slower, so its noise matters least).

Usage::

    AFDLIB_DATA_DIR=... python benchmarks/bench_sim.py [--trace NAME ...] [--steps N]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

import numpy as np

from afdlib.costs import StepCoefficients
from afdlib.sim import Bundle, simulate_reference, simulate_step
from afdlib.traces import PUBLIC_TRACES, load_trace
from afdlib.workload import JointLengths, load_stats, sample_stationary_slots

# Illustrative coefficients (s, s/token); every trace is attention-bound or close to it
# at r = 8, so the max over workers matters in every step.
COEFFS = StepCoefficients(alpha_A=2e-8, beta_A=2e-3, alpha_F=2e-6, beta_F=5e-3,
                          alpha_C=1e-6, beta_C=1e-3)


def simpy_model(workload, bundle: Bundle, steps: int, seed: int) -> np.ndarray:
    """Step times of the bundle from a SimPy process model (one process per worker)."""
    import simpy

    rng = np.random.default_rng(seed)
    r, b, c = bundle.ratio, bundle.batch, bundle.coeffs
    ctx, rem = [], []
    for _ in range(r):
        x, y = sample_stationary_slots(workload, rng, b)
        ctx.append(x)
        rem.append(y)
    t_c, t_f = bundle.comm_time, bundle.ffn_time
    tau = np.empty(steps)
    env = simpy.Environment()

    def attention(w):
        yield env.timeout(c.alpha_A * float(ctx[w].sum()) + c.beta_A)
        ctx[w] += 1
        rem[w] -= 1
        finished = rem[w] == 0
        k = int(finished.sum())
        if k:
            p, d = workload.sample_requests(rng, k)
            ctx[w][finished] = p
            rem[w][finished] = d

    def stage(duration):
        yield env.timeout(duration)

    def bundle_process():
        for s in range(steps):
            start = env.now
            parts = [env.process(attention(w)) for w in range(r)]
            parts += [env.process(stage(t_c)), env.process(stage(t_f))]
            yield simpy.AllOf(env, parts)
            tau[s] = env.now - start

    env.process(bundle_process())
    env.run()
    return tau


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def peak_memory(fn) -> int:
    """Peak bytes allocated (numpy included) while running ``fn``."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def bench_trace(name: str, ratio: int, batch: int, steps: int, repeats: int,
                loop_repeats: int, with_simpy: bool) -> dict:
    workload = JointLengths.from_trace(load_trace(name))
    bundle = Bundle(ratio, batch, COEFFS)
    engine_times = []
    for i in range(repeats):
        t, res = timed(lambda i=i: simulate_step(workload, bundle, steps=steps, seed=i))
        engine_times.append(t)
    loop_times = []
    for i in range(loop_repeats):
        t, ref = timed(lambda i=i: simulate_reference(workload, bundle, steps=steps,
                                                      seed=100 + i))
        loop_times.append(t)
    t_loop = min(loop_times)
    row = {"trace": name, "mean_decode": load_stats(workload).mean_decode,
           "requests": res.requests, "engine_s": min(engine_times), "loop_s": t_loop,
           "engine_tau": res.mean_step_time, "loop_tau": ref.mean_step_time}
    if with_simpy:
        t_simpy, tau = timed(lambda: simpy_model(workload, bundle, steps, seed=200))
        row.update(simpy_s=t_simpy, simpy_tau=float(tau.mean()))
    row["engine_peak_mb"] = peak_memory(
        lambda: simulate_step(workload, bundle, steps=steps, seed=0)) / 2**20
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", action="append", choices=sorted(PUBLIC_TRACES),
                        help="public trace(s) to use (default: all four)")
    parser.add_argument("--ratio", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=10, help="engine runs (best is kept)")
    parser.add_argument("--loop-repeats", type=int, default=2,
                        help="numpy-loop runs (best is kept)")
    parser.add_argument("--no-simpy", action="store_true", help="skip the SimPy baseline")
    args = parser.parse_args(argv)
    traces = args.trace or ["azure2023_conv", "azure2023_code", "mooncake_conversation",
                            "sharegpt_8k"]
    print(f"bundle r = {args.ratio}, B = {args.batch}, {args.steps} steps, stationary start, "
          f"requests resampled from the trace; engine best of {args.repeats}, "
          f"numpy loop best of {args.loop_repeats}, SimPy once")
    slot_steps = args.ratio * args.batch * args.steps
    print(f"(slots x steps = {slot_steps:,}; a per-step-per-slot array would take "
          f"{8 * slot_steps / 2**20:.0f} MiB)")
    header = (f"{'trace':<22} {'E[D]':>6} {'requests':>9} {'engine s':>9} {'loop s':>7} "
              f"{'SimPy s':>8} {'loop/eng':>9} {'SimPy/eng':>10} {'peak MiB':>9}  "
              f"mean step ms (engine / loop / SimPy)")
    print(header)
    for name in traces:
        row = bench_trace(name, args.ratio, args.batch, args.steps, args.repeats,
                          args.loop_repeats, not args.no_simpy)
        simpy_s = row.get("simpy_s", float("nan"))
        print(f"{name:<22} {row['mean_decode']:>6.0f} {row['requests']:>9,} "
              f"{row['engine_s']:>9.4f} {row['loop_s']:>7.3f} {simpy_s:>8.2f} "
              f"{row['loop_s'] / row['engine_s']:>8.1f}x {simpy_s / row['engine_s']:>9.1f}x "
              f"{row['engine_peak_mb']:>9.1f}  {1e3 * row['engine_tau']:.4f} / "
              f"{1e3 * row['loop_tau']:.4f} / {1e3 * row.get('simpy_tau', float('nan')):.4f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
