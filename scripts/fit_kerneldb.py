"""Regenerate data/fits/kerneldb_fits.json from the measured kernel tables.

The tables (NVIDIA AIConfigurator's performance database, Apache-2.0, commit
095f58a51c4ca8e61b66ec108d86f223f8d559ce) are read through afdlib.fetch and never copied;
only the fitted coefficients and their fit quality are written.

    AFDLIB_KERNELDB_DIR=/path/to/kerneldb python scripts/fit_kerneldb.py [--check]

The H100, H200 and B200 tables are downloaded (pinned SHA-256, cached) where the folder does
not hold them, but the H20-3e tables are local-only (no upstream commit could be confirmed):
without AFDLIB_KERNELDB_DIR holding h20_3e/ the script stops with one line saying so.

With --check the fits are recomputed and compared with the committed file instead
(exit status 1 if any number differs by more than 1e-9 relative).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from afdlib.costs import measured, presets
from afdlib.errors import AfdInputError

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "fits" / measured.FITS_FILE


def compute() -> dict:
    models = {name: presets.load_model(name) for name in presets.model_names()}
    return measured.fit_all(models)


def _numbers(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(obj, float):
        yield prefix, obj


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed file instead of writing it")
    args = parser.parse_args()
    try:
        data = compute()
    except AfdInputError as exc:
        print(f"fit_kerneldb: {exc}", file=sys.stderr)
        return 2
    if args.check:
        old = json.loads(OUT.read_text(encoding="utf-8"))
        new_numbers = dict(_numbers(data))
        old_numbers = dict(_numbers(old))
        bad = [k for k in set(new_numbers) | set(old_numbers)
               if k not in new_numbers or k not in old_numbers
               or abs(new_numbers[k] - old_numbers[k]) > 1e-9 * max(1.0, abs(old_numbers[k]))]
        for k in sorted(bad)[:20]:
            print(f"differs: {k}: {old_numbers.get(k)} vs {new_numbers.get(k)}", file=sys.stderr)
        print(f"{len(new_numbers)} numbers, {len(bad)} differ", file=sys.stderr)
        return 1 if bad else 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {len(data['fits'])} fits to {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
