"""Fitted forms of the measured kernel tables, and the committed fit file.

For each measured system and model the fits are, per layer and per GPU:

* attention: ``t = beta + alpha * T + gamma * B`` (KV tokens read T, requests B) -- the
  per-request form -- next to the one-line ``t = beta + alpha * T`` it improves on;
* MoE FFN (routed experts, one layer, expert-parallel group of ``ep`` GPUs):
  ``t = max(plateau, slope * N + intercept)`` for N tokens entering the group, next to the
  single line fitted above 512 tokens;
* communication: DeepEP low-latency dispatch + combine, ``t = beta + alpha * tokens per rank``.

Fit regions (the region of AFD operating points, stated in every entry): attention with
at least :data:`ATTENTION_REGION` ``min_batch`` requests per GPU and ``min_context`` to
``max_context`` cached tokens per request; MoE with ``N * top_k >= experts`` (every local
expert can be touched); DeepEP on all measured token counts.

:func:`fit_all` recomputes everything from the tables (``scripts/fit_kerneldb.py`` writes
it to ``data/fits/kerneldb_fits.json``); :func:`load_fits` reads the committed numbers, so
presets work without the tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from afdlib.costs import kerneldb
from afdlib.costs.fit import fit_linear, fit_plateau_line
from afdlib.costs.specs import ModelSpec
from afdlib.errors import AfdInputError

__all__ = ["ATTENTION_REGION", "LINE_MIN_TOKENS", "FITS_FILE", "fit_attention_entry",
           "fit_moe_entry", "fit_comm_entry", "fit_all", "load_fits", "find_fit",
           "attention_tp_options", "moe_ep_options"]

ATTENTION_REGION = {"min_batch": 8, "min_context": 128, "max_context": 32768}
#: Lower end of the one-line MoE fit (the line the README of the tables says holds there).
LINE_MIN_TOKENS = 512
FITS_FILE = "kerneldb_fits.json"


def attention_tp_options(model: ModelSpec) -> list[int]:
    """Tensor-parallel sizes fitted for a model's attention (MLA: data parallel only)."""
    if model.attention == "MLA":
        return [1]
    return [t for t in (1, 2, 4, 8) if model.num_heads % t == 0]


def moe_ep_options(model: ModelSpec) -> list[int]:
    """Expert-parallel sizes fitted for a model's MoE layers."""
    return [e for e in (2, 4, 8, 16, 32, 64) if model.is_moe and e <= model.num_experts]


def _quality(fit) -> dict:
    return {k: float(v) if k != "n" else int(v) for k, v in fit.quality.to_dict().items()}


def fit_attention_entry(system: str, model: ModelSpec, *, tp: int = 1, root=None) -> dict:
    """Fit one attention configuration; returns the committed-file entry (seconds)."""
    pts = kerneldb.attention_points(system, model, tp=tp, root=root)
    t, b, y = pts.x["T"], pts.x["B"], pts.latency
    ctx = t / b
    r = ATTENTION_REGION
    sel = (b >= r["min_batch"]) & (ctx >= r["min_context"]) & (ctx <= r["max_context"])
    three = fit_linear({"T": t[sel], "B": b[sel]}, y[sel])
    two = fit_linear({"T": t[sel]}, y[sel])
    return {
        "role": "attention", "system": system, "model": model.name, "tp": tp,
        "table": pts.table, "config": {k: v for k, v in pts.config.items()},
        "region": dict(r), "form": "beta + alpha*T + gamma*B (per layer, per GPU)",
        "alpha": three["T"], "gamma": three["B"], "beta": three.intercept,
        "quality": _quality(three),
        "one_line": {"alpha": two["T"], "beta": two.intercept, "quality": _quality(two)},
    }


def fit_moe_entry(system: str, model: ModelSpec, *, ep: int, root=None) -> dict:
    """Fit one MoE configuration (balanced routing); returns the committed-file entry."""
    pts = kerneldb.moe_points(system, model, ep=ep, root=root)
    n, y = pts.x["N"], pts.latency
    sel = n * model.experts_per_token >= model.num_experts
    pl = fit_plateau_line(n[sel], y[sel])
    hi = n >= LINE_MIN_TOKENS
    line = fit_linear({"N": n[hi]}, y[hi])
    return {
        "role": "ffn", "system": system, "model": model.name, "ep": ep, "table": pts.table,
        "config": dict(pts.config),
        "region": {"min_tokens": float(model.num_experts / model.experts_per_token)},
        "form": "max(plateau, slope*N + intercept) (routed experts, per layer, per GPU)",
        "plateau": pl.plateau, "slope": pl.slope, "intercept": pl.intercept,
        "quality": _quality(pl),
        "one_line": {"alpha": line["N"], "beta": line.intercept, "min_tokens": LINE_MIN_TOKENS,
                     "quality": _quality(line)},
    }


def fit_comm_entry(system: str, model: ModelSpec, *, root=None) -> dict:
    """Fit DeepEP dispatch + combine for a model's shape; returns the committed entry."""
    pts = kerneldb.deepep_points(system, model, root=root)
    x, y = pts.x["tokens"], pts.latency
    f = fit_linear({"tokens": x}, y)
    return {
        "role": "comm", "system": system, "model": model.name, "table": pts.table,
        "config": dict(pts.config), "region": {"tokens_per_rank": [float(x.min()), float(x.max())]},
        "form": "beta + alpha*tokens_per_rank (dispatch + combine, per layer)",
        "alpha": f["tokens"], "beta": f.intercept, "quality": _quality(f),
    }


def _if_measured(fit, *args, **kwargs) -> list[dict]:
    """``[fit(...)]``, or ``[]`` when the tables hold no measurement for that configuration."""
    try:
        return [fit(*args, **kwargs)]
    except AfdInputError as exc:
        if "no measured" not in str(exc) and "no such kernel table" not in str(exc):
            raise
        return []


def fit_all(models: dict[str, ModelSpec], *, root=None) -> dict:
    """Fit every table configuration the presets can use; the committed file's content."""
    entries = []
    for system in kerneldb.SYSTEMS:
        for model in models.values():
            for tp in attention_tp_options(model):
                entries += _if_measured(fit_attention_entry, system, model, tp=tp, root=root)
            for ep in moe_ep_options(model):
                entries += _if_measured(fit_moe_entry, system, model, ep=ep, root=root)
            if model.is_moe:
                entries += _if_measured(fit_comm_entry, system, model, root=root)
    return {
        "_attribution": "Derived numbers: least-squares fits to latencies measured by "
                        + kerneldb.ATTRIBUTION + ". No table rows are reproduced here.",
        "_generated_by": "scripts/fit_kerneldb.py",
        "_units": "seconds per layer per GPU; alpha per KV token (attention) or per token "
                  "(ffn, comm); gamma per request",
        "fits": entries,
    }


def load_fits(path: str | Path) -> list[dict]:
    """The entries of a committed fit file.

    Raises
    ------
    AfdInputError
        If the file is missing or not a fit file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AfdInputError(f"{path}: no such fit file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise AfdInputError(f"{path}: cannot read fit file ({exc})") from None
    fits = data.get("fits") if isinstance(data, dict) else None
    if not isinstance(fits, list):
        raise AfdInputError(f"{path}: expected an object with a 'fits' list")
    for i, e in enumerate(fits):
        for key in ("role", "system", "model"):
            if key not in e:
                raise AfdInputError(f"{path}: fit {i} has no {key!r}")
        for key in ("alpha", "beta", "gamma", "plateau", "slope", "intercept"):
            if key in e and not np.isfinite(e[key]):
                raise AfdInputError(f"{path}: fit {i} has a non-finite {key}")
    return fits


def find_fit(fits: list[dict], role: str, system: str, model: str, **config) -> dict | None:
    """The entry for a role, system, model and configuration (``tp=``, ``ep=``), or None."""
    for e in fits:
        if e["role"] == role and e["system"] == system and e["model"] == model and \
                all(e.get(k) == v for k, v in config.items()):
            return e
    return None
