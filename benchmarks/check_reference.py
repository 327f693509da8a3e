"""Check ``afd simulate --json`` against an independent straightforward simulation.

For each case the command line is run in a subprocess (as a user would run it) and the
same bundle is simulated by :func:`afdlib.sim.simulate_reference`, a plain per-step loop
over every slot with its own random stream and no shared load bookkeeping. The script
prints both throughputs per instance, their 95% intervals and the relative difference;
the acceptance criterion of issue 5 is agreement within 2%.

Usage::

    AFDLIB_DATA_DIR=... python benchmarks/check_reference.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from afdlib.costs import StepCoefficients, save_coefficients
from afdlib.sim import Bundle, simulate_reference
from afdlib.traces import load_trace
from afdlib.workload import Geometric, IndependentLengths, JointLengths

CASES = [
    {
        "name": "paper setting: geometric P (mean 100), D (mean 500), B=256, r=9",
        "cli": ["--prompt", "geometric:100,start=0", "--decode", "geometric:500"],
        "workload": lambda: IndependentLengths(Geometric(100, start=0), Geometric(500)),
        "batch": 256, "ratio": 9, "steps": 60_000, "init": "stationary", "warmup": 0,
        "coeffs": StepCoefficients(5.7e-8, 1.0e-3, 2.0e-6, 5.0e-3, 5.0e-6, 5.0e-4, "B"),
    },
    {
        "name": "mooncake_conversation (heavy tails), B=64, r=4, attention-bound",
        "cli": ["--trace", "mooncake_conversation"],
        "workload": lambda: JointLengths.from_trace(load_trace("mooncake_conversation")),
        "batch": 64, "ratio": 4, "steps": 60_000, "init": "stationary", "warmup": 0,
        "coeffs": StepCoefficients(2.0e-8, 1.0e-3, 2.0e-6, 3.0e-3, 1.0e-6, 5.0e-4, "B"),
    },
    {
        "name": "sharegpt_8k, cold start with 5,000 warm-up steps, B=128, r=12, comm ~ rB",
        "cli": ["--trace", "sharegpt_8k"],
        "workload": lambda: JointLengths.from_trace(load_trace("sharegpt_8k")),
        "batch": 128, "ratio": 12, "steps": 40_000, "init": "cold", "warmup": 5_000,
        "coeffs": StepCoefficients(2.0e-8, 1.5e-3, 3.0e-6, 4.0e-3, 2.0e-6, 3.0e-4, "rB"),
    },
]


def run_case(case: dict, folder: Path) -> dict:
    coeffs_file = folder / "coeffs.json"
    save_coefficients(case["coeffs"], coeffs_file)
    args = [sys.executable, "-m", "afdlib", "simulate", *case["cli"],
            "--batch", str(case["batch"]), "--ratio", str(case["ratio"]),
            "--coeffs", str(coeffs_file), "--steps", str(case["steps"]),
            "--init", case["init"], "--warmup", str(case["warmup"]), "--seed", "1", "--json"]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    cli = json.loads(done.stdout)
    ref = simulate_reference(case["workload"](), Bundle(case["ratio"], case["batch"],
                                                        case["coeffs"]),
                             steps=case["steps"], seed=12345, init=case["init"],
                             warmup=case["warmup"])
    command = "afd " + " ".join(a if " " not in a else repr(a) for a in args[3:])
    return {"command": command.replace(str(coeffs_file), "coeffs.json"), "cli": cli, "ref": ref}


def main() -> int:
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            out = run_case(case, Path(tmp))
            cli, ref = out["cli"], out["ref"]
            diff = cli["throughput_per_instance"] / ref.throughput_per_instance - 1
            worst = max(worst, abs(diff))
            print(case["name"])
            print(f"  coefficients {json.dumps(case['coeffs'].to_dict())}")
            print(f"  {out['command']}")
            lo, hi = cli["throughput_ci95"]
            print(f"  afd simulate   {cli['throughput_per_instance']:10.1f} tokens/s per instance "
                  f"(95% CI {lo:.1f} .. {hi:.1f}), barrier {1e3 * cli['barrier_overhead']:.3f} ms")
            lo, hi = ref.throughput_ci95
            print(f"  reference loop {ref.throughput_per_instance:10.1f} tokens/s per instance "
                  f"(95% CI {lo:.1f} .. {hi:.1f}), barrier {1e3 * ref.barrier_overhead:.3f} ms")
            print(f"  difference {100 * diff:+.2f}%")
    print(f"largest |difference| {100 * worst:.2f}% (criterion: 2%)")
    return 0 if worst < 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
