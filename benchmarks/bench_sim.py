"""Benchmark: the engines against a per-step numpy loop and against SimPy process models.

Every comparison simulates the same bundle (r = 8 Attention workers, B = 256 slots
each, 20,000 steps, requests resampled from a public trace, stationary start), and the
two sides must agree on the mean step time within sampling noise; the script prints
their times and the ratios.

Step engine (:func:`afdlib.sim.simulate_step`, its per-request loops compiled with numba;
the column ``numpy s`` times the same engine with them off, ``AFDLIB_NUMBA=0``, as in the
browser: the same results) against

* ``numpy loop``: :func:`afdlib.sim.simulate_reference`, every slot advanced every step
  with vectorized numpy, the straightforward simulation;
* ``SimPy``: a process model as a researcher would write it: one process per Attention
  worker, one each for communication and FFN, a step ends when all have finished.

Pipelined engine (:func:`afdlib.sim.simulate_pipeline`, ``m`` microbatches, intercepts
paid per microbatch) against

* ``SimPy``: one process per microbatch that, step after step, has each worker's
  attention resource serve its part (its load read from its slots, which then advance
  and renew), then the dispatch link, the FFN and the combine link (FIFO resources).

The step engine also replays each trace in arrival order (cold start) against the numpy
loop doing the same, an exact agreement.

Times are CPU seconds of this process (``time.process_time``; ``--clock wall`` for
wall-clock), so that other programs sharing the machine's cores do not count; caches
and memory bandwidth are still shared, so only ratios between runs of this process
mean anything. Engines and the numpy loop run in alternation and each keeps its best
of ``--repeats`` / ``--loop-repeats`` runs; a SimPy model runs once (it is hundreds of
times slower, so its noise matters least).

Usage::

    AFDLIB_DATA_DIR=... python benchmarks/bench_sim.py [--trace NAME ...] [--steps N]
        [--microbatches M ...] [--no-simpy]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

import numpy as np

from afdlib.costs import StepCoefficients
from afdlib.model import microbatch_sizes
from afdlib.sim import Bundle, kernels, simulate_pipeline, simulate_reference, simulate_step
from afdlib.sim.loads import release_work_arrays
from afdlib.traces import PUBLIC_TRACES, load_trace
from afdlib.workload import JointLengths, load_stats, sample_stationary_slots

# Illustrative coefficients (s, s/token); every trace is attention-bound or close to it
# at r = 8, so the max over workers matters in every step.
COEFFS = StepCoefficients(alpha_A=2e-8, beta_A=2e-3, alpha_F=2e-6, beta_F=5e-3,
                          alpha_C=1e-6, beta_C=1e-3)
TRACES = ["azure2023_conv", "azure2023_code", "mooncake_conversation", "sharegpt_8k"]
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def _renew(workload, rng, ctx, rem):
    """Advance slots one step; finished ones take fresh requests (in place)."""
    ctx += 1
    rem -= 1
    finished = rem == 0
    k = int(finished.sum())
    if k:
        p, d = workload.sample_requests(rng, k)
        ctx[finished] = p
        rem[finished] = d


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
        _renew(workload, rng, ctx[w], rem[w])

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


def simpy_pipeline_model(workload, bundle: Bundle, microbatches: int, steps: int,
                         seed: int) -> np.ndarray:
    """Completion time of every step from a SimPy model of the microbatch pipeline.

    Intercepts are paid per microbatch. Written from the engine's description, not its
    code: resources serve requests first come, first served.
    """
    import simpy

    rng = np.random.default_rng(seed)
    r, b, c, m = bundle.ratio, bundle.batch, bundle.coeffs, microbatches
    sizes = microbatch_sizes(b, m)
    cuts = np.concatenate([[0], np.cumsum(sizes)])
    ctx, rem = [], []  # per worker, then per microbatch: the slots' state
    for _ in range(r):
        x, y = sample_stationary_slots(workload, rng, b)
        ctx.append([x[cuts[k]:cuts[k + 1]].copy() for k in range(m)])
        rem.append([y[cuts[k]:cuts[k + 1]].copy() for k in range(m)])
    tokens = sizes * (r if c.comm_scales_with == "rB" else 1)
    t_comm = c.alpha_C * tokens + c.beta_C
    t_ffn = c.alpha_F * r * sizes + c.beta_F
    env = simpy.Environment()
    workers = [simpy.Resource(env, capacity=1) for _ in range(r)]
    dispatch, ffn, combine = (simpy.Resource(env, capacity=1) for _ in range(3))
    done = np.zeros((steps, m))

    def part(w, k):
        with workers[w].request() as req:
            yield req
            yield env.timeout(c.alpha_A * float(ctx[w][k].sum()) + c.beta_A)
        _renew(workload, rng, ctx[w][k], rem[w][k])

    def serve(resource, duration):
        with resource.request() as req:
            yield req
            yield env.timeout(duration)

    def microbatch(k):
        for s in range(steps):
            yield simpy.AllOf(env, [env.process(part(w, k)) for w in range(r)])
            yield env.process(serve(dispatch, t_comm[k]))
            yield env.process(serve(ffn, t_ffn[k]))
            yield env.process(serve(combine, t_comm[k]))
            done[s, k] = env.now

    for k in range(m):
        env.process(microbatch(k))
    env.run()
    return done[:, -1]


def timed(fn, clock):
    start = clock()
    out = fn()
    return clock() - start, out


def peak_memory(fn) -> int:
    """Peak bytes allocated (numpy included) while running ``fn``, work arrays included."""
    release_work_arrays()  # else those kept from the timed runs would not be counted
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def bench_step(workload, bundle, steps, repeats, loop_repeats, with_simpy, clock) -> dict:
    """Step engine against the numpy loop (alternating runs) and SimPy (once)."""
    engine, loop, plain = [], [], []
    compiled = kernels.enabled()
    for i in range(repeats):
        t, res = timed(lambda i=i: simulate_step(workload, bundle, steps=steps, seed=i), clock)
        engine.append(t)
        if (i * loop_repeats) // repeats != ((i + 1) * loop_repeats) // repeats:
            t, ref = timed(lambda i=i: simulate_reference(workload, bundle, steps=steps,
                                                          seed=100 + i), clock)
            loop.append(t)
    # the same engine with the compiled loops off (as in the browser), timed the same way
    kernels.use_compiled(False)
    try:
        for i in range(repeats):
            t, same = timed(lambda i=i: simulate_step(workload, bundle, steps=steps, seed=i),
                            clock)
            plain.append(t)
    finally:
        kernels.use_compiled(compiled)
    if same.mean_step_time != res.mean_step_time or same.requests != res.requests:
        raise SystemExit("the compiled loops and the numpy code disagree")
    row = {"requests": res.requests, "engine_s": min(engine), "loop_s": min(loop),
           "numpy_s": min(plain),
           "engine_tau": res.mean_step_time, "loop_tau": ref.mean_step_time}
    # replay in arrival order (cold start): the same rows in the same slots on both sides,
    # so the step times agree exactly
    replay, loop_replay = [], []
    for _ in range(loop_repeats):
        t, rep = timed(lambda: simulate_step(workload, bundle, steps=steps, init="cold",
                                             replay=True), clock)
        replay.append(t)
        t, ref_rep = timed(lambda: simulate_reference(workload, bundle, steps=steps,
                                                      init="cold", replay=True), clock)
        loop_replay.append(t)
    if rep.mean_step_time != ref_rep.mean_step_time:
        raise SystemExit("replay: engine and loop disagree")
    row.update(replay_s=min(replay), loop_replay_s=min(loop_replay))
    if with_simpy:
        t, tau = timed(lambda: simpy_model(workload, bundle, steps, seed=200), clock)
        row.update(simpy_s=t, simpy_tau=float(tau.mean()))
    row["peak_mb"] = peak_memory(
        lambda: simulate_step(workload, bundle, steps=steps, seed=0)) / 2**20
    return row


def bench_pipeline(workload, bundle, m, steps, repeats, with_simpy, clock) -> dict:
    """Pipelined engine (best of ``repeats``) against its SimPy model (once)."""
    engine = []
    for i in range(repeats):
        t, res = timed(lambda i=i: simulate_pipeline(workload, bundle, microbatches=m,
                                                     steps=steps, seed=i), clock)
        engine.append(t)
    row = {"engine_s": min(engine), "engine_tau": res.mean_step_time}
    if with_simpy:
        t, done = timed(lambda: simpy_pipeline_model(workload, bundle, m, steps, seed=300),
                        clock)
        row.update(simpy_s=t, simpy_tau=float(done[-1] / steps))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", action="append", choices=sorted(PUBLIC_TRACES),
                        help="public trace(s) to use (default: all four)")
    parser.add_argument("--ratio", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--microbatches", type=int, action="append",
                        help="microbatches of the pipelined runs (default: 2)")
    parser.add_argument("--repeats", type=int, default=12, help="engine runs (best is kept)")
    parser.add_argument("--loop-repeats", type=int, default=4,
                        help="numpy-loop runs (best is kept)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--no-simpy", action="store_true", help="skip the SimPy baselines")
    args = parser.parse_args(argv)
    traces = args.trace or TRACES
    clock = CLOCKS[args.clock]
    nan = float("nan")
    slot_steps = args.ratio * args.batch * args.steps
    print(f"bundle r = {args.ratio}, B = {args.batch}, {args.steps} steps, stationary start, "
          f"requests resampled from the trace; {args.clock} time; engines best of "
          f"{args.repeats}, numpy loop best of {args.loop_repeats} (alternating), SimPy once")
    print(f"(slots x steps = {slot_steps:,}; a per-step-per-slot array would take "
          f"{8 * slot_steps / 2**20:.0f} MiB)")
    print("compiled loops (numba): " + ("on" if kernels.enabled() else "OFF (numpy code)"))
    print("\nstep engine (resampled requests; replay: the trace's rows in order, cold start)")
    print(f"{'trace':<22} {'E[D]':>6} {'requests':>9} {'engine s':>9} {'numpy s':>8} "
          f"{'loop s':>7} {'SimPy s':>8} {'loop/eng':>9} {'loop/numpy':>11} {'SimPy/eng':>10} "
          f"{'peak MiB':>9} {'replay s':>9} {'loop/replay':>12}  "
          f"mean step ms (engine / loop / SimPy)")
    workloads = {name: JointLengths.from_trace(load_trace(name)) for name in traces}
    bundle = Bundle(args.ratio, args.batch, COEFFS)
    for name in traces:
        w = workloads[name]
        row = bench_step(w, bundle, args.steps, args.repeats, args.loop_repeats,
                         not args.no_simpy, clock)
        simpy_s = row.get("simpy_s", nan)
        print(f"{name:<22} {load_stats(w).mean_decode:>6.0f} {row['requests']:>9,} "
              f"{row['engine_s']:>9.4f} {row['numpy_s']:>8.4f} {row['loop_s']:>7.3f} "
              f"{simpy_s:>8.2f} {row['loop_s'] / row['engine_s']:>8.1f}x "
              f"{row['loop_s'] / row['numpy_s']:>10.1f}x {simpy_s / row['engine_s']:>9.1f}x "
              f"{row['peak_mb']:>9.1f} {row['replay_s']:>9.4f} "
              f"{row['loop_replay_s'] / row['replay_s']:>11.1f}x  {1e3 * row['engine_tau']:.4f} / "
              f"{1e3 * row['loop_tau']:.4f} / {1e3 * row.get('simpy_tau', nan):.4f}")
        sys.stdout.flush()
    for m in args.microbatches or [2]:
        print(f"\npipelined engine, m = {m} microbatches, intercepts per microbatch")
        print(f"{'trace':<22} {'engine s':>9} {'SimPy s':>8} {'SimPy/eng':>10}  "
              f"mean step ms (engine / SimPy)")
        for name in traces:
            row = bench_pipeline(workloads[name], bundle, m, args.steps, args.repeats,
                                 not args.no_simpy, clock)
            simpy_s = row.get("simpy_s", nan)
            print(f"{name:<22} {row['engine_s']:>9.4f} {simpy_s:>8.2f} "
                  f"{simpy_s / row['engine_s']:>9.1f}x  {1e3 * row['engine_tau']:.4f} / "
                  f"{1e3 * row.get('simpy_tau', nan):.4f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
