"""Regenerate the validation study's cache, data/study/study.json.

Runs every setting of :func:`afdlib.study.default_settings` (rules, referee sweeps in
independent replications, the finite-trace measurement) and the coverage check of the
equivalence set, and writes the raw results the chapter "Does the prediction hold?"
reads. Each setting's seed derives from the study seed and the setting's identity, so
the numbers do not depend on the executor or the order::

    AFDLIB_DATA_DIR=... .venv/bin/python scripts/run_study.py              # processes
    AFDLIB_DATA_DIR=... .venv/bin/python scripts/run_study.py --dask tcp://host:8786
    AFDLIB_DATA_DIR=... .venv/bin/python scripts/run_study.py --quick --out /tmp/q.json

A full run takes about three minutes on two cores. ``--write-coefficients`` rewrites the
plain coefficient files of data/study/coefficients from their recipe first.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from afdlib.study import (  # noqa: E402
    DEFAULT_SEED,
    RunPlan,
    StudyResult,
    coverage_check,
    default_settings,
    load_study,
    run_study,
    save_study,
    write_plain_coefficients,
)
from afdlib.study.grid import study_data_dir  # noqa: E402


def refresh_coverage(path: Path, experiments: int, jobs: int) -> int:
    """Rerun the coverage check and store it in the cache at ``path`` (settings kept)."""
    study = load_study(path)
    t0 = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        coverage = coverage_check(experiments=experiments, executor=pool)
    meta = {**study.meta, "coverage_seconds": round(time.perf_counter() - t0, 1)}
    save_study(dataclasses.replace(study, coverage=coverage, meta=meta), path)
    print(f"coverage: {coverage.best_in_set}/{coverage.experiments} sets hold the true best; "
          f"{coverage.regret_covered}/{coverage.regret_checked} regret intervals cover "
          f"({meta['coverage_seconds']} s)", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="cache file (default data/study/study.json)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: one per core)")
    parser.add_argument("--dask", type=str, default=None,
                        help="address of a Dask scheduler to run the settings on")
    parser.add_argument("--quick", action="store_true",
                        help="every 12th setting and a short coverage check")
    parser.add_argument("--only", type=str, default=None,
                        help="only settings whose key contains this text")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--coverage-experiments", type=int, default=1000)
    parser.add_argument("--write-coefficients", action="store_true",
                        help="rewrite the plain coefficient files from their recipe")
    parser.add_argument("--coverage-only", action="store_true",
                        help="rerun only the coverage check and replace it in the cache")
    args = parser.parse_args(argv)
    settings = default_settings()
    if args.write_coefficients:
        for path in write_plain_coefficients(settings):
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    if args.only:
        settings = [s for s in settings if args.only in s.key]
    if args.quick:
        settings = settings[::12]
    experiments = 100 if args.quick else args.coverage_experiments
    out = args.out if args.out is not None else study_data_dir() / "study.json"
    plan = RunPlan()
    if args.coverage_only:
        return refresh_coverage(out, args.coverage_experiments, args.jobs)

    def progress(done, total, res):
        note = "skipped" if res.skipped else f"{res.seconds:6.1f} s"
        print(f"[{done:3d}/{total}] {note}  {res.key}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    client = None
    if args.dask:
        from dask.distributed import Client
        client = Client(args.dask)
        executor = client
    else:
        executor = concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs)
    try:
        t1 = time.perf_counter()
        pool = executor.get_executor() if client is not None else executor
        coverage = coverage_check(experiments=experiments, executor=pool)
        t_cov = time.perf_counter() - t1
        print(f"coverage: {coverage.best_in_set}/{coverage.experiments} sets hold the true "
              f"best; {coverage.regret_covered}/{coverage.regret_checked} regret intervals "
              f"cover ({t_cov:.0f} s)", file=sys.stderr)
        results = run_study(settings, plan=plan, seed=args.seed, executor=executor,
                            progress=progress)
    finally:
        if client is not None:
            client.close()
        else:
            executor.shutdown()
    wall = time.perf_counter() - t0
    meta = {"command": "scripts/run_study.py " + " ".join(argv if argv is not None
                                                        else sys.argv[1:]),
            "wall_seconds": round(wall, 1), "coverage_seconds": round(t_cov, 1),
            "setting_seconds": round(sum(r.seconds for r in results), 1),
            "workers": "dask" if args.dask else args.jobs, "python": platform.python_version()}
    study = StudyResult(tuple(results), plan, args.seed, coverage, meta)
    save_study(study, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {wall:.0f} s", file=sys.stderr)
    for kind, block in study.headline().items():
        for rule, s in block.items():
            print(f"{kind:9s} {rule:20s} n={s.settings:3d} worst {100 * s.worst_regret:6.2f}% "
                  f"mean {100 * s.mean_regret:5.2f}% in set {100 * s.in_set:4.0f}%",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
