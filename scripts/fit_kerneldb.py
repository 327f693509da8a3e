"""Regenerate data/fits/kerneldb_fits.json from the measured kernel tables.

The tables (NVIDIA AIConfigurator's performance database, Apache-2.0, commit
095f58a51c4ca8e61b66ec108d86f223f8d559ce) are read through afdlib.fetch and never copied;
only the fitted coefficients and their fit quality are written.

    AFDLIB_KERNELDB_DIR=/path/to/kerneldb python scripts/fit_kerneldb.py [--check]

The H100, H200 and B200 tables are downloaded (pinned SHA-256, cached) where the folder does
not hold them, but the H20-3e tables are local-only (no upstream commit could be confirmed):
without AFDLIB_KERNELDB_DIR holding h20_3e/ the script stops with one line saying so.

With --check the fits are recomputed and compared with the committed file instead: entries
are matched by what identifies them (role, system, model, tp or ep, MoE routing), every
number of a committed entry must agree to 1e-9 relative, and a committed entry that is no
longer produced counts as a difference (exit status 1). Entries the committed file does not
have yet are listed as new (they do not fail the check).
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


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _keep_digits(new, old):
    """``new`` with each float that agrees with ``old`` to 1e-9 replaced by ``old``'s (refits
    on another CPU or BLAS differ in the last digits; the committed file should not churn)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _keep_digits(v, old[k]) if k in old else v for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [_keep_digits(a, b) for a, b in zip(new, old, strict=True)]
    if isinstance(new, float) and isinstance(old, float) and _close(new, old):
        return old
    return new


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
        new_by_key = {measured.entry_key(e): e for e in data["fits"]}
        old_by_key = {measured.entry_key(e): e for e in old["fits"]}
        bad, count = [], 0
        for key, entry in old_by_key.items():
            label = "/".join(str(k) for k in key if k is not None)
            if key not in new_by_key:
                bad.append(f"{label}: no longer produced")
                continue
            new_numbers = dict(_numbers(new_by_key[key]))
            for path, value in _numbers(entry):
                count += 1
                other = new_numbers.get(path)
                if other is None or not _close(other, value):
                    bad.append(f"{label}{path}: {value} vs {other}")
        added = [k for k in new_by_key if k not in old_by_key]
        for line in bad[:20]:
            print(f"differs: {line}", file=sys.stderr)
        for key in added[:20]:
            print(f"new: {'/'.join(str(k) for k in key if k is not None)}", file=sys.stderr)
        print(f"{count} numbers in {len(old_by_key)} committed entries, {len(bad)} differ; "
              f"{len(added)} new entries", file=sys.stderr)
        return 1 if bad else 0
    if OUT.exists():
        committed = {measured.entry_key(e): e
                     for e in json.loads(OUT.read_text(encoding="utf-8"))["fits"]}
        data["fits"] = [_keep_digits(e, committed[measured.entry_key(e)])
                        if measured.entry_key(e) in committed else e for e in data["fits"]]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {len(data['fits'])} fits to {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
