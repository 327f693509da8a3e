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
it to ``data/fits/kerneldb_fits.json``); :func:`load_fits` reads the committed file's JSON
objects, so presets work without the tables. Code that *uses* the fits reads them typed:
:func:`read_fit_table` gives a :class:`FitTable` of :class:`AttentionFit`, :class:`MoEFit`
and :class:`CommFit` entries (:func:`fit_entry` converts one JSON object).

A configuration without measurements is skipped by :func:`fit_all` on a
:class:`afdlib.errors.MissingMeasurement`, never on the text of
an error message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afdlib.costs import kerneldb
from afdlib.costs.fit import FitQuality, fit_linear, fit_plateau_line
from afdlib.costs.specs import ModelSpec
from afdlib.errors import AfdInputError, MissingMeasurement

__all__ = ["ATTENTION_REGION", "LINE_MIN_TOKENS", "FITS_FILE", "ROLES", "ROUTINGS",
           "ROUTING_ALIASES", "check_routing", "entry_key", "fit_attention_entry",
           "fit_moe_entry", "fit_comm_entry", "fit_all", "load_fits", "find_fit",
           "attention_tp_options", "moe_ep_options", "LineFit", "AttentionFit", "MoEFit",
           "CommFit", "FitEntry", "FitTable", "fit_entry", "read_fit_table",
           "is_missing_measurement"]

#: The roles of a step whose kernels are fitted.
ROLES = ("attention", "ffn", "comm")
#: MoE routing of the measured tables (their ``distribution`` column): every expert equally
#: loaded, or expert loads drawn from a power law of exponent 1.01 or 1.2, the timed GPU
#: being the most loaded rank of the group (a straggler time). AIConfigurator's collector
#: documentation calls 1.01 the lower and 1.2 the higher imbalance.
ROUTINGS = ("balanced", "power_law_1.01", "power_law_1.2")
#: Short names: ``power_law`` is the more skewed of the two measured power laws.
ROUTING_ALIASES = {"power_law": "power_law_1.2"}

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


def check_routing(routing: str) -> str:
    """A routing name of :data:`ROUTINGS` (or an alias of :data:`ROUTING_ALIASES`).

    Raises
    ------
    AfdInputError
        Naming the known routings (``parameter="moe_routing"``).
    """
    name = ROUTING_ALIASES.get(routing, routing) if isinstance(routing, str) else routing
    if name not in ROUTINGS:
        known = ", ".join((*ROUTINGS, *ROUTING_ALIASES))
        raise AfdInputError(f"unknown MoE routing {routing!r} (known: {known})",
                            parameter="moe_routing")
    return name


def entry_key(entry: dict) -> tuple:
    """What identifies a committed fit: role, system, model, tp or ep, and the routing
    (balanced where an entry does not say)."""
    routing = entry.get("routing", "balanced") if entry.get("role") == "ffn" else None
    return (entry.get("role"), entry.get("system"), entry.get("model"), entry.get("tp"),
            entry.get("ep"), routing)


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


def fit_moe_entry(system: str, model: ModelSpec, *, ep: int, routing: str = "balanced",
                  root=None) -> dict:
    """Fit one MoE configuration under a routing (:data:`ROUTINGS`); returns the
    committed-file entry."""
    routing = check_routing(routing)
    pts = kerneldb.moe_points(system, model, ep=ep, distribution=routing, root=root)
    n, y = pts.x["N"], pts.latency
    sel = n * model.experts_per_token >= model.num_experts
    pl = fit_plateau_line(n[sel], y[sel])
    hi = n >= LINE_MIN_TOKENS
    line = fit_linear({"N": n[hi]}, y[hi])
    return {
        "role": "ffn", "system": system, "model": model.name, "ep": ep, "routing": routing,
        "table": pts.table, "config": dict(pts.config),
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


def is_missing_measurement(exc: BaseException) -> bool:
    """True if ``exc`` says that a configuration has no measurement (a
    :class:`~afdlib.errors.MissingMeasurement`: no such kernel table, or no measured row)."""
    return isinstance(exc, MissingMeasurement)


def _if_measured(fit, *args, **kwargs) -> list[dict]:
    """``[fit(...)]``, or ``[]`` when the tables hold no measurement for that configuration."""
    try:
        return [fit(*args, **kwargs)]
    except AfdInputError as exc:
        if not is_missing_measurement(exc):
            raise
        return []


def fit_all(models: dict[str, ModelSpec], *, root=None) -> dict:
    """Fit every table configuration the presets can use; the committed file's content.

    Balanced-routing entries come first, in the order of earlier versions of the file; the
    power-law routings (:data:`ROUTINGS`) follow, so that adding them moved no entry.
    """
    entries = []
    for system in kerneldb.SYSTEMS:
        for model in models.values():
            for tp in attention_tp_options(model):
                entries += _if_measured(fit_attention_entry, system, model, tp=tp, root=root)
            for ep in moe_ep_options(model):
                entries += _if_measured(fit_moe_entry, system, model, ep=ep, root=root)
            if model.is_moe:
                entries += _if_measured(fit_comm_entry, system, model, root=root)
    for routing in ROUTINGS[1:]:
        for system in kerneldb.SYSTEMS:
            for model in models.values():
                for ep in moe_ep_options(model):
                    entries += _if_measured(fit_moe_entry, system, model, ep=ep,
                                            routing=routing, root=root)
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


# ---------------------------------------------------------------------------
# Typed entries
# ---------------------------------------------------------------------------


def _quality_of(data: dict) -> FitQuality:
    return FitQuality(r2=float(data["r2"]), mean_rel_err=float(data["mean_rel_err"]),
                      max_rel_err=float(data["max_rel_err"]), n=int(data["n"]))


@dataclass(frozen=True)
class LineFit:
    """A one-line fit ``t = beta + alpha x`` next to a better form.

    Attributes
    ----------
    alpha : float
        Slope (s per token).
    beta : float
        Intercept (s).
    quality : FitQuality
    min_tokens : float or None
        Lower end of the fitted region (MoE: tokens entering the group), if any.
    """

    alpha: float
    beta: float
    quality: FitQuality
    min_tokens: float | None = None


@dataclass(frozen=True, kw_only=True)
class _Entry:
    """Fields every committed fit has (see the subclasses).

    Attributes
    ----------
    system, model : str
        Kernel-table system (e.g. ``"h200_sxm"``) and model preset name.
    table : str
        Source table.
    config : dict
        The filter that selected the rows.
    region : dict
        The fitted region.
    form : str
        The fitted form, in words.
    """

    system: str
    model: str
    table: str
    config: dict = field(compare=False)
    region: dict = field(compare=False)
    form: str


@dataclass(frozen=True, kw_only=True)
class AttentionFit(_Entry):
    """Decode attention per layer and GPU: ``t = beta + alpha T + gamma B`` (seconds).

    Attributes
    ----------
    system, model, table, config, region, form : str, str, str, dict, dict, str
        As every entry (see ``_Entry``): system, model, table, row filter, region, form.
    tp : int
        Tensor-parallel size the GPU's share of heads corresponds to.
    alpha : float
        Per KV token read (s/token).
    gamma : float
        Per request (s/request).
    beta : float
        Intercept (s).
    quality : FitQuality
    one_line : LineFit
        ``beta + alpha T`` on the same points.
    """

    tp: int
    alpha: float
    gamma: float
    beta: float
    quality: FitQuality
    one_line: LineFit
    role = "attention"

    @property
    def includes_projections(self) -> bool:
        """Whether the measured op covers the Q/KV/O projections (the MLA module table)."""
        return bool(self.config.get("includes_projections", False))


@dataclass(frozen=True, kw_only=True)
class MoEFit(_Entry):
    """Routed experts of one MoE layer on the busiest GPU of an EP group:
    ``t = max(plateau, slope N + intercept)`` (seconds, N tokens entering the group).

    Attributes
    ----------
    system, model, table, config, region, form : str, str, str, dict, dict, str
        As every entry (see ``_Entry``): system, model, table, row filter, region, form.
    ep : int
        Expert-parallel group size.
    routing : str
        Routing of the measured rows (:data:`ROUTINGS`); under a power law the timed GPU
        is the most loaded rank.
    plateau : float
        Weight-streaming time (s).
    slope : float
        Compute time per token (s/token).
    intercept : float
        Intercept of the compute line (s).
    quality : FitQuality
    one_line : LineFit
        The single line fitted above :data:`LINE_MIN_TOKENS` tokens.
    """

    ep: int
    plateau: float
    slope: float
    intercept: float
    quality: FitQuality
    one_line: LineFit
    routing: str = "balanced"
    role = "ffn"

    @property
    def knee(self) -> float:
        """Tokens where the compute line meets the plateau."""
        return (self.plateau - self.intercept) / self.slope

    @property
    def min_tokens(self) -> float:
        """Lower end of the fitted region (every local expert can be touched)."""
        return float(self.region["min_tokens"])

    def time(self, tokens) -> np.ndarray:
        """The fitted form at ``tokens`` (s per layer)."""
        return np.maximum(self.plateau, self.slope * np.asarray(tokens, float) + self.intercept)


@dataclass(frozen=True, kw_only=True)
class CommFit(_Entry):
    """DeepEP low-latency dispatch + combine per layer: ``t = beta + alpha x`` (seconds, x
    tokens per rank).

    Attributes
    ----------
    system, model, table, config, region, form : str, str, str, dict, dict, str
        As every entry (see ``_Entry``): system, model, table, row filter, region, form.
    alpha : float
        Per token per rank (s/token).
    beta : float
        Intercept, the latency (s).
    quality : FitQuality
    """

    alpha: float
    beta: float
    quality: FitQuality
    role = "comm"


FitEntry = AttentionFit | MoEFit | CommFit


def fit_entry(data: dict, *, source: str = "fit") -> FitEntry:
    """The typed entry of one committed-file JSON object (``role`` picks the class).

    Raises
    ------
    AfdInputError
        Naming the missing or bad field.
    """
    try:
        common = dict(system=data["system"], model=data["model"], table=data["table"],
                      config=dict(data.get("config", {})), region=dict(data.get("region", {})),
                      form=data.get("form", ""))
        role = data["role"]
        if role == "attention":
            one = data["one_line"]
            return AttentionFit(**common, tp=int(data["tp"]), alpha=float(data["alpha"]),
                                gamma=float(data["gamma"]), beta=float(data["beta"]),
                                quality=_quality_of(data["quality"]),
                                one_line=LineFit(float(one["alpha"]), float(one["beta"]),
                                                 _quality_of(one["quality"])))
        if role == "ffn":
            one = data["one_line"]
            return MoEFit(**common, ep=int(data["ep"]), routing=str(data.get("routing",
                                                                          "balanced")),
                          plateau=float(data["plateau"]),
                          slope=float(data["slope"]), intercept=float(data["intercept"]),
                          quality=_quality_of(data["quality"]),
                          one_line=LineFit(float(one["alpha"]), float(one["beta"]),
                                           _quality_of(one["quality"]),
                                           float(one["min_tokens"])))
        if role == "comm":
            return CommFit(**common, alpha=float(data["alpha"]), beta=float(data["beta"]),
                           quality=_quality_of(data["quality"]))
    except KeyError as exc:
        raise AfdInputError(f"{source}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise AfdInputError(f"{source}: bad field ({exc})") from None
    raise AfdInputError(f"{source}: unknown role {data.get('role')!r} (known: "
                        f"{', '.join(ROLES)})")


@dataclass(frozen=True)
class FitTable:
    """The committed fits, typed.

    Attributes
    ----------
    entries : tuple of AttentionFit, MoEFit or CommFit
    """

    entries: tuple = ()

    def find(self, role: str, system: str, model: str, **config) -> FitEntry | None:
        """The entry for a role, system, model and configuration (``tp=``, ``ep=``), or None."""
        for e in self.entries:
            if e.role == role and e.system == system and e.model == model and \
                    all(getattr(e, k, None) == v for k, v in config.items()):
                return e
        return None


def read_fit_table(path: str | Path) -> FitTable:
    """The committed fit file at ``path`` as a :class:`FitTable`.

    Raises
    ------
    AfdInputError
        If the file is missing or an entry is malformed.
    """
    entries = load_fits(path)
    return FitTable(tuple(fit_entry(e, source=f"{Path(path).name}: fit {i}")
                          for i, e in enumerate(entries)))
