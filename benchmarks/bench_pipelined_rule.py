"""Cost of the pipelined rule against the pipelined engine, in the same process.

For each m in 2, 3, 4 it times :func:`afdlib.provision.pipelined.pipelined_ratio` over
ratios 1 .. 64 (the stationary laws included) and one pipelined-engine sweep over the
same ratios at 4,000 steps (the shortest run that resolves a best ratio at all), and
prints the engine's time over the rule's::

    AFDLIB_DATA_DIR=... .venv/bin/python benchmarks/bench_pipelined_rule.py [--trace NAME]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from afdlib.costs.presets import preset_coefficients
from afdlib.model import OperatingPoint
from afdlib.provision.pipelined import pipelined_ratio
from afdlib.sim import sweep
from afdlib.traces import load_trace
from afdlib.workload import JointLengths, load_stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="azure2023_conv")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args(argv)
    workload = JointLengths.from_trace(load_trace(args.trace))
    coeffs = preset_coefficients("deepseek-v3", "h200", batch=args.batch,
                                 theta=load_stats(workload).theta)
    stats = load_stats(workload)
    point = OperatingPoint(coeffs=coeffs, theta=stats.theta, batch=args.batch,
                           load_std=math.sqrt(stats.load_variance))
    ratios = np.arange(1, 65)
    print(f"{args.trace}, B = {args.batch}, deepseek-v3 on h200, ratios 1..64")
    for m in (2, 3, 4):
        t0 = time.perf_counter()
        rule = pipelined_ratio(point, workload, max_ratio=64, microbatches=m)
        t_rule = time.perf_counter() - t0
        t0 = time.perf_counter()
        sim = sweep(workload, point, ratios, engine="pipeline", microbatches=m,
                    steps=args.steps, seed=0)
        t_sim = time.perf_counter() - t0
        print(f"m = {m}: rule {t_rule:.3f} s (r = {rule.r_int}), engine sweep at "
              f"{args.steps} steps {t_sim:.1f} s (best r = {sim.best_ratio}): "
              f"engine / rule = {t_sim / t_rule:.0f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
