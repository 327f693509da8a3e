"""Model and hardware presets, and step-time coefficients built from them.

Presets are JSON files with a cited source for every number: models in ``data/models/``,
GPUs in ``data/hardware/``, and the coefficients fitted to the measured kernel tables in
``data/fits/kerneldb_fits.json``. They are looked up first inside the installed package
(``afdlib/_data``, when the build ships them as package data) and then in the repository's
``data/`` folder next to the package.

:func:`bundle_curves` turns a model, a hardware name (``"h800"``, or ``"h20/h800"`` for
Attention on H20 and FFN on H800) and an operating point into the non-linear step-time
curves of the bundle -- from the measured fits where a table describes the GPU and the
configuration, from the roofline elsewhere -- and :func:`preset_coefficients` linearizes
them at the operating point into the :class:`StepCoefficients` the closed-form rules need.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from afdlib.costs.fit import FitQuality, linearize
from afdlib.costs.measured import (
    FITS_FILE,
    ROUTINGS,
    AttentionFit,
    CommFit,
    FitTable,
    MoEFit,
    check_routing,
    read_fit_table,
)
from afdlib.costs.memory import (
    DEFAULT_RESERVE,
    KVFeasibility,
    kv_feasibility,
    smallest_attention_instance,
    smallest_ffn_instance,
)
from afdlib.costs.roofline import (
    AttentionRoofline,
    Efficiency,
    attention_roofline,
    comm_roofline,
    ffn_roofline_parts,
    ffn_roofline_time,
)
from afdlib.costs.specs import Deployment, GPUSpec, ModelSpec, gpu_from_dict, model_from_dict
from afdlib.errors import AfdInputError
from afdlib.model import (
    COMM_SCALINGS,
    InstanceGPUs,
    Objective,
    StepCoefficients,
    best_integer_ratio,
    comm_tokens,
    step_time,
)
from afdlib.validate import check_choice, check_int, check_number

__all__ = ["DEFAULT_BATCH", "DEFAULT_THETA", "MAX_DEFAULT_RATIO", "SOURCES", "preset_dir",
           "model_names", "hardware_names", "load_model", "load_gpu", "parse_hardware",
           "BundleCurves", "bundle_curves", "PresetResult", "build_preset",
           "preset_coefficients", "resolve_hardware_name", "ROUTINGS"]

#: Default slots per Attention instance: the paper's setting B = 256.
DEFAULT_BATCH = 256
#: Default per-slot load: the paper's workload (geometric decode, mean prompt 100, mean
#: decode 500), theta = E[P] + E[D] - 1 = 599 tokens.
DEFAULT_THETA = 599.0
#: The default operating ratio is the best integer ratio of the non-linear curves up to this.
MAX_DEFAULT_RATIO = 64
#: The FFN linearization interval is widened until the FFN time rises this much across it.
FFN_RISE = 0.05
#: Where a preset's curves come from: measured fits where a table describes the GPU and the
#: configuration, else the roofline (``"auto"``); or the roofline everywhere.
SOURCES = ("auto", "roofline")
_MAX_TOKENS = 1.0e7


def preset_dir() -> Path:
    """Folder holding the presets: ``models/``, ``hardware/`` and ``fits/``.

    (Not :func:`afdlib.traces.local_trace_dir`, the folder of local request traces.)

    Raises
    ------
    AfdInputError
        If neither the packaged copy nor the repository's ``data/`` exists.
    """
    here = Path(__file__).resolve().parent.parent  # afdlib/
    for candidate in (here / "_data", here.parent / "data"):
        if (candidate / "models").is_dir() and (candidate / "hardware").is_dir():
            return candidate
    raise AfdInputError("preset data not found: expected afdlib/_data or the repository's "
                        "data/ folder with models/ and hardware/")



def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (preset_dir() / kind).glob("*.json"))


def model_names() -> list[str]:
    """Names of the model presets."""
    return _names("models")


def hardware_names() -> list[str]:
    """Names of the hardware presets."""
    return _names("hardware")


@lru_cache(maxsize=64)
def _read_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AfdInputError(f"{path}: cannot read preset ({exc})") from None


def load_model(name: str) -> ModelSpec:
    """The model preset ``name``.

    Raises
    ------
    AfdInputError
        If there is no such preset; the message lists the known ones.
    """
    known = model_names()
    if not isinstance(name, str) or name.lower() not in known:
        raise AfdInputError(f"unknown model {name!r}; known models: {', '.join(known)}")
    path = preset_dir() / "models" / f"{name.lower()}.json"
    return model_from_dict(_read_json(str(path)), source=path.name)


def resolve_hardware_name(name: str) -> str:
    """The preset a hardware name means: the name itself, or a short form of one.

    Matching ignores case, and ``_`` or spaces count as ``-``. A name that is not a
    preset but begins exactly one preset's name followed by ``-`` is that preset (``h100``
    means ``h100-sxm``; ``h20`` stays ``h20``, a preset of its own); a name that ends in
    ``-sxm`` may leave it off or add it (``b200-sxm`` is ``b200``).

    Raises
    ------
    AfdInputError
        If it means no preset, or more than one; the message lists the known ones.
    """
    known = hardware_names()
    text = name.strip().lower().replace("_", "-").replace(" ", "-") if isinstance(name, str) \
        else None
    if text in known:
        return text
    if text:
        candidates = {k for k in known if k.startswith(text + "-")}
        for form in (text.removesuffix("-sxm"), text + "-sxm"):
            if form in known:
                candidates.add(form)
        if len(candidates) == 1:
            return candidates.pop()
        if len(candidates) > 1:
            raise AfdInputError(f"hardware {name!r} is ambiguous: {', '.join(sorted(candidates))}"
                                , parameter="hardware")
    raise AfdInputError(f"unknown hardware {name!r}; known hardware: {', '.join(known)} "
                        "(short forms such as h100 work; ATTN/FFN, e.g. h20/h800, for a "
                        "heterogeneous bundle)", parameter="hardware")


def load_gpu(name: str) -> GPUSpec:
    """The hardware preset ``name`` or a short form of it (:func:`resolve_hardware_name`;
    raises AfdInputError listing the known ones)."""
    path = preset_dir() / "hardware" / f"{resolve_hardware_name(name)}.json"
    return gpu_from_dict(_read_json(str(path)), source=path.name)


def parse_hardware(hardware: str) -> tuple[GPUSpec, GPUSpec]:
    """``"h800"`` -> (h800, h800); ``"h20/h800"`` -> (h20 for attention, h800 for the FFN)."""
    if not isinstance(hardware, str) or not hardware.strip():
        raise AfdInputError(f"hardware must be a name like h800 or h20/h800, got {hardware!r}")
    parts = [p.strip() for p in hardware.split("/")]
    if len(parts) == 1:
        gpu = load_gpu(parts[0])
        return gpu, gpu
    if len(parts) == 2 and all(parts):
        return load_gpu(parts[0]), load_gpu(parts[1])
    raise AfdInputError(f"hardware must be NAME or ATTN_NAME/FFN_NAME, got {hardware!r}")


def _fit_table() -> FitTable:
    path = preset_dir() / "fits" / FITS_FILE
    if not path.exists():
        return FitTable()
    return read_fit_table(path)


@dataclass(frozen=True)
class BundleCurves:
    """Non-linear step-time curves of one bundle (seconds per step).

    Attributes
    ----------
    model : ModelSpec
    deployment : Deployment
    attention : callable
        ``attention(T, batch=B)``: one Attention instance with B slots holding T tokens.
    ffn : callable
        ``ffn(N)``: the FFN instance on N aggregated tokens.
    comm : callable
        ``comm(batch=B, ratio=r)``: the Attention <-> FFN exchange of one step.
    comm_binding : callable
        ``comm_binding(r)`` -> ``"B"`` or ``"rB"``: which traffic binds at ratio r.
    provenance : dict
        Role -> where its curve comes from (measured table and configuration, or roofline).
    fits : dict
        Role -> the committed fit entry used (absent for roofline roles).
    routing : str
        MoE routing of the measured expert tables (``"balanced"`` for dense models).
    """

    model: ModelSpec
    deployment: Deployment
    attention: Callable
    ffn: Callable
    comm: Callable
    comm_binding: Callable
    provenance: dict
    fits: dict = field(default_factory=dict)
    routing: str = "balanced"

    @property
    def gpus(self) -> InstanceGPUs:
        """GPUs of one Attention instance and of the FFN instance."""
        return InstanceGPUs(attention=self.deployment.attention_gpus,
                            ffn=self.deployment.ffn_gpus)

    def step_time(self, *, batch: int, theta: float, ratio) -> np.ndarray:
        """Mean-field step time ``max(t_A(B theta), t_C, t_F(r B))`` (s), vectorized in r."""
        ratio = np.asarray(ratio, dtype=float)
        return step_time(self.attention(batch * theta, batch=batch),
                         self.comm(batch=batch, ratio=ratio), self.ffn(ratio * batch))

    def throughput(self, *, batch: int, theta: float, ratio,
                   objective: Objective | None = None) -> np.ndarray:
        """Mean-field objective of the curves (default: tokens/s per instance)."""
        objective = objective if objective is not None else Objective()
        ratio = np.asarray(ratio, dtype=float)
        return objective.throughput(ratio, batch,
                                    self.step_time(batch=batch, theta=theta, ratio=ratio))


# ---------------------------------------------------------------------------
# The curve of each role (callable dataclasses: measured fit plus roofline parts)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredAttention:
    """Attention of one instance from a measured fit (per layer, per GPU), all layers, plus
    the roofline's output head (and projections, when the measured op lacks them).

    Attributes
    ----------
    fit : AttentionFit
    layers : int
        Transformer blocks.
    per_gpu : float
        Share of the instance's tokens and requests one GPU sees (``1/n`` data parallel).
    roofline : AttentionRoofline
        For the output head and projections.
    """

    fit: AttentionFit
    layers: int
    per_gpu: float
    roofline: AttentionRoofline

    def __call__(self, load, *, batch):
        f = self.fit
        t = self.layers * (f.beta + f.alpha * self.per_gpu * np.asarray(load, float)
                           + f.gamma * self.per_gpu * np.asarray(batch, float))
        extra = self.roofline.head_time(batch)
        if not f.includes_projections:
            extra = extra + self.roofline.projection_time(batch)
        return t + extra


@dataclass(frozen=True)
class MeasuredFFN:
    """The FFN instance: measured routed experts of every MoE layer, roofline for the shared
    experts and dense layers.

    Attributes
    ----------
    fit : MoEFit
    model : ModelSpec
    deployment : Deployment
    efficiency : Efficiency
        For the roofline parts.
    """

    fit: MoEFit
    model: ModelSpec
    deployment: Deployment
    efficiency: Efficiency

    def __call__(self, tokens):
        parts = ffn_roofline_parts(self.model, self.deployment, tokens, self.efficiency)
        return self.model.moe_layers * self.fit.time(tokens) + parts["shared"] + parts["dense"]


@dataclass(frozen=True)
class RooflineFFN:
    """The FFN instance from the roofline alone.

    Attributes
    ----------
    model : ModelSpec
    deployment : Deployment
    efficiency : Efficiency
    """

    model: ModelSpec
    deployment: Deployment
    efficiency: Efficiency

    def __call__(self, tokens):
        return ffn_roofline_time(self.model, self.deployment, tokens, self.efficiency)


@dataclass(frozen=True)
class MeasuredComm:
    """DeepEP dispatch + combine of every layer (one NVLink node): per-worker traffic.

    Attributes
    ----------
    fit : CommFit
    layers : int
        Transformer blocks.
    ranks : int
        GPUs of the Attention instance the batch is spread over.
    """

    fit: CommFit
    layers: int
    ranks: int

    def __call__(self, *, batch, ratio):
        per_rank = np.asarray(batch, float) / self.ranks
        return (self.layers * (self.fit.beta + self.fit.alpha * per_rank)
                * np.ones_like(np.asarray(ratio, float)))

    @staticmethod
    def binding(ratio) -> str:
        """Per-worker traffic binds at every ratio."""
        return "B"


def _measured_system(gpu: GPUSpec, role: str, source: str) -> str | None:
    if source == "roofline":
        return None
    return (gpu.measured or {}).get(role)


def _attention_curve(model: ModelSpec, dep: Deployment, eff: Efficiency, fits: FitTable,
                     source: str):
    """``(curve, provenance, fit or None)`` of the Attention instance."""
    roof = attention_roofline(model, dep, eff)
    system = _measured_system(dep.attention_gpu, "attention", source)
    tp = dep.attention_gpus if dep.attention_parallel == "tp" else 1
    entry = fits.find("attention", system, model.name, tp=tp) if system else None
    if entry is None:
        return roof.time, "roofline", None
    per_gpu = 1.0 / dep.attention_gpus if dep.attention_parallel == "dp" else 1.0  # share of T, B
    curve = MeasuredAttention(entry, model.num_layers, per_gpu, roof)
    text = (f"measured: {entry.system} {entry.table} (tp={tp}, "
            f"{'with' if entry.includes_projections else 'plus roofline'} projections), "
            "roofline output head")
    return curve, text, entry


def _ffn_curve(model: ModelSpec, dep: Deployment, eff: Efficiency, fits: FitTable, source: str,
               routing: str = "balanced"):
    """``(curve, provenance, fit or None)`` of the FFN instance under a MoE routing."""
    system = _measured_system(dep.ffn_gpu, "ffn", source)
    entry = (fits.find("ffn", system, model.name, ep=dep.ffn_gpus, routing=routing)
             if system and model.is_moe else None)
    if entry is None:
        if routing != "balanced":
            why = (f"{model.name} has no MoE layers" if not model.is_moe else
                   f"no measured {routing} MoE table for {dep.ffn_gpu.name} at ep="
                   f"{dep.ffn_gpus}" + (" (source roofline)" if source == "roofline" else ""))
            raise AfdInputError(f"MoE routing {routing} needs a measured MoE table: {why}; the "
                                "roofline assumes balanced routing", parameter="moe_routing")
        return RooflineFFN(model, dep, eff), "roofline", None
    # balanced routing keeps the text of earlier versions; a power law says so
    skew = "" if routing == "balanced" else f", {routing} routing, the most loaded rank"
    text = (f"measured: {entry.system} moe_perf (ep={dep.ffn_gpus}{skew}) for routed experts; "
            "roofline for shared experts and dense layers")
    return MeasuredFFN(entry, model, dep, eff), text, entry


def _comm_curve(model: ModelSpec, dep: Deployment, eff: Efficiency, fits: FitTable, source: str):
    """``(curve, binding, provenance, fit or None)`` of the Attention <-> FFN exchange."""
    roof = comm_roofline(model, dep, eff)
    # DeepEP was measured inside one NVLink node: it describes an NVLink path only
    system = _measured_system(dep.attention_gpu, "comm", source) if dep.link == "nvlink" else None
    same = system is not None and system == _measured_system(dep.ffn_gpu, "comm", source)
    entry = fits.find("comm", system, model.name) if same and model.is_moe else None
    if entry is None:
        return roof.time, roof.binding, f"roofline ({dep.link})", None
    curve = MeasuredComm(entry, model.num_layers, dep.attention_gpus)
    text = (f"measured: {entry.system} DeepEP low-latency dispatch + combine (one node), "
            "every layer")
    return curve, curve.binding, text, entry


def bundle_curves(model: ModelSpec | str, hardware: str | tuple[GPUSpec, GPUSpec], *,
                  batch: int = DEFAULT_BATCH, theta: float = DEFAULT_THETA,
                  source: str = "auto", efficiency: Efficiency | None = None,
                  attention_gpus: int | None = None, ffn_gpus: int | None = None,
                  attention_parallel: str | None = None, link: str = "network",
                  reserve: float = DEFAULT_RESERVE, routing: str = "balanced") -> BundleCurves:
    """Step-time curves of ``model`` on ``hardware`` at the operating point.

    Parameters
    ----------
    model : ModelSpec or str
    hardware : str or (GPUSpec, GPUSpec)
        ``"NAME"`` or ``"ATTN_NAME/FFN_NAME"``.
    batch, theta : int, float
        Slots per Attention instance and mean tokens per slot: they size the Attention
        instance (its KV cache must fit) unless ``attention_gpus`` is given.
    source : {"auto", "roofline"}
        ``auto``: measured fits where the GPU has a table for the role and configuration,
        roofline elsewhere; ``roofline``: the roofline everywhere.
    efficiency : Efficiency, optional
        Roofline efficiencies (default :class:`Efficiency()`).
    attention_gpus, ffn_gpus : int, optional
        Instance sizes (default: the smallest power of two that holds weights and KV).
    attention_parallel : {"tp", "dp"}, optional
        Default: dp for MLA, tp otherwise.
    link : {"network", "nvlink"}
        Attention <-> FFN path. The measured DeepEP fits (one NVLink node) are used only
        for ``"nvlink"``; over the network communication is the roofline.
    reserve : float
        Fraction of HBM kept free when sizing instances.
    routing : str
        MoE routing of the measured expert tables (:data:`afdlib.costs.measured.ROUTINGS`,
        or ``"power_law"`` for the more skewed one): ``"balanced"`` (default) or a power law,
        whose times are the most loaded rank's. A power law needs a measured MoE table.
    """
    check_choice("source", source, SOURCES)
    routing = check_routing(routing)
    eff = efficiency if efficiency is not None else Efficiency()
    if isinstance(model, str):
        model = load_model(model)
    gpu_a, gpu_f = parse_hardware(hardware) if isinstance(hardware, str) else hardware
    parallel = attention_parallel or ("dp" if model.attention == "MLA" else "tp")
    if attention_gpus is None:
        attention_gpus, parallel = smallest_attention_instance(model, gpu_a, batch, theta,
                                                               parallel=parallel, reserve=reserve)
    if ffn_gpus is None:
        ffn_gpus = smallest_ffn_instance(model, gpu_f, reserve=reserve)
    dep = Deployment(attention_gpu=gpu_a, ffn_gpu=gpu_f, attention_gpus=attention_gpus,
                     ffn_gpus=ffn_gpus, attention_parallel=parallel, link=link)
    fits = _fit_table()
    attention, prov_a, fit_a = _attention_curve(model, dep, eff, fits, source)
    ffn, prov_f, fit_f = _ffn_curve(model, dep, eff, fits, source, routing)
    comm, binding, prov_c, fit_c = _comm_curve(model, dep, eff, fits, source)
    used = {role: e for role, e in (("attention", fit_a), ("ffn", fit_f), ("comm", fit_c))
            if e is not None}
    return BundleCurves(model=model, deployment=dep, attention=attention, ffn=ffn, comm=comm,
                        comm_binding=binding,
                        provenance={"attention": prov_a, "ffn": prov_f, "comm": prov_c},
                        fits=used, routing=routing)


@dataclass(frozen=True)
class PresetResult:
    """Coefficients of a preset bundle with everything that produced them.

    Attributes
    ----------
    coefficients : StepCoefficients
    curves : BundleCurves
    batch : int
        Slots per Attention instance B.
    theta : float
        Mean tokens per slot (tokens).
    ratio : float
        The A/F ratio at which the curves were linearized.
    ffn_region : (float, float)
        Aggregated-token interval of the FFN linearization.
    ffn_linearization : FitQuality
        How well the FFN line matches the curve there.
    memory : KVFeasibility
        Whether the B slots fit one Attention instance, and the largest B that does.
    curves_best_ratio : int or None
        The best integer ratio of the non-linear curves (mean field) when it was chosen as
        the linearization point (``ratio`` not given), else None. The linear coefficients
        are tangents there; a rule on them that lands far from it has left the region where
        they follow the curves.
    """

    coefficients: StepCoefficients
    curves: BundleCurves
    batch: int
    theta: float
    ratio: float
    ffn_region: tuple
    ffn_linearization: FitQuality
    memory: KVFeasibility
    curves_best_ratio: int | None = None

    @property
    def gpus(self) -> InstanceGPUs:
        """GPUs of one Attention instance and of the FFN instance (for a per-GPU objective)."""
        return self.curves.gpus

    @property
    def gpu_seconds_per_token(self) -> tuple[float, float]:
        """``(alpha_A g_A, alpha_F g_F)``: the slopes times the GPUs of each instance, the
        fair per-token cost when instances differ in size (GPU-seconds per token)."""
        c, g = self.coefficients, self.gpus
        return c.alpha_A * g.attention, c.alpha_F * g.ffn


def _linear_comm(curves: BundleCurves, batch: int, ratio: float,
                 scaling: str) -> tuple[float, float]:
    """``(alpha_C, beta_C)`` of the line through the communication curve at ``ratio`` whose
    tokens scale as ``scaling`` says (:func:`afdlib.model.comm_tokens`)."""
    c1 = float(curves.comm(batch=batch, ratio=ratio))
    beta_c = float(curves.comm(batch=0.0, ratio=ratio if scaling == "B" else 1.0))
    alpha_c = (c1 - beta_c) / float(comm_tokens(scaling, batch=batch, ratio=ratio))
    return max(alpha_c, 0.0), max(beta_c, 0.0)


def _linearization_objective(objective, gpus: InstanceGPUs) -> Objective:
    """The objective whose best ratio of the curves sets the linearization point."""
    if isinstance(objective, Objective):
        if objective.gpus is None and objective.kind != "gpu":
            return Objective(kind=objective.kind, prices=objective.prices, gpus=gpus)
        return objective
    kind = check_choice("objective", objective, ("instance", "gpu"))
    return Objective(kind=kind, gpus=gpus)


def build_preset(model: str | ModelSpec, hardware: str, *, batch: int | None = None,
                 theta: float | None = None, ratio: float | None = None,
                 comm_scales_with: str | None = None, objective: str | Objective = "instance",
                 **kwargs) -> PresetResult:
    """Curves of a preset bundle and their linearization at an operating point.

    Parameters
    ----------
    model, hardware : str
        Preset names; hardware ``"ATTN/FFN"`` for a heterogeneous bundle.
    batch : int, optional
        Slots B per Attention instance (default :data:`DEFAULT_BATCH` = 256).
    theta : float, optional
        Mean tokens per slot (default :data:`DEFAULT_THETA` = 599).
    ratio : float, optional
        A/F ratio around which the FFN curve is linearized (least squares over aggregated
        batches ``[max(1, r/2) B, 2 r B]``, the upper end doubled until the FFN time rises by
        :data:`FFN_RISE` across the interval, so a plateau does not give a flat line).
        Default: the best integer ratio in 1..:data:`MAX_DEFAULT_RATIO` of the non-linear
        mean-field ``objective`` -- where the closed-form rule will land.
    comm_scales_with : {"B", "rB"}, optional
        Force the communication scaling (default: whichever traffic binds at the ratio).
    objective : {"instance", "gpu"} or Objective
        The objective whose best ratio of the curves is the default linearization point:
        tokens/s per instance (default), per GPU of the preset's instances, or an
        :class:`~afdlib.model.Objective` (its GPU counts filled in from the preset).
    **kwargs
        Passed to :func:`bundle_curves` (``source``, ``efficiency``, ``attention_gpus``,
        ``ffn_gpus``, ``attention_parallel``, ``link``, ``reserve``, ``routing``).

    Returns
    -------
    PresetResult
    """
    batch = check_int("batch", DEFAULT_BATCH if batch is None else batch, minimum=1)
    theta = check_number("theta", DEFAULT_THETA if theta is None else theta, minimum=0.0,
                         strict=True, unit="tokens")
    if ratio is not None:
        ratio = check_number("ratio", ratio, minimum=0.0, strict=True)
    curves = bundle_curves(model, hardware, batch=batch, theta=theta, **kwargs)
    curves_best = None
    if ratio is None:
        goal = _linearization_objective(objective, curves.gpus)
        curves_best, _ = best_integer_ratio(
            lambda r: curves.throughput(batch=batch, theta=theta, ratio=r, objective=goal),
            MAX_DEFAULT_RATIO)
        curves_best = int(curves_best)
        ratio = float(curves_best)
    lo, hi = max(1.0, ratio / 2.0) * batch, max(2.0, 2.0 * ratio) * batch
    # a region lying wholly on the weight-streaming plateau would give a flat line (and
    # an unbounded r_peak): widen it until the FFN time rises by FFN_RISE across it
    f_lo = float(curves.ffn(lo))
    while float(curves.ffn(hi)) < (1.0 + FFN_RISE) * f_lo and hi < _MAX_TOKENS:
        hi *= 2.0
    alpha_f, beta_f, quality = linearize(curves.ffn, lo, hi)
    if alpha_f <= 0:
        raise AfdInputError(f"the FFN curve is flat on [{lo:g}, {hi:g}] tokens; choose another "
                            "operating ratio", parameter="ratio")
    beta_f = max(beta_f, 0.0)
    t0 = float(curves.attention(0.0, batch=batch))
    alpha_a = float(curves.attention(1.0e6, batch=batch) - t0) / 1.0e6
    scaling = check_choice("comm_scales_with", comm_scales_with or curves.comm_binding(ratio),
                           COMM_SCALINGS)
    alpha_c, beta_c = _linear_comm(curves, batch, ratio, scaling)
    coeffs = StepCoefficients(alpha_A=alpha_a, beta_A=t0, alpha_F=alpha_f, beta_F=beta_f,
                              alpha_C=alpha_c, beta_C=beta_c, comm_scales_with=scaling)
    memory = kv_feasibility(curves.model, curves.deployment, batch, theta,
                            reserve=kwargs.get("reserve", DEFAULT_RESERVE))
    return PresetResult(coefficients=coeffs, curves=curves, batch=batch, theta=theta,
                        ratio=ratio, ffn_region=(lo, hi), ffn_linearization=quality,
                        memory=memory, curves_best_ratio=curves_best)


def preset_coefficients(model: str, hardware: str, *, batch: int | None = None,
                        theta: float | None = None, ratio: float | None = None,
                        **kwargs) -> StepCoefficients:
    """Linear step-time coefficients of a preset model on preset hardware.

    Parameters
    ----------
    model : str
        A model preset (see :func:`model_names`), e.g. ``"deepseek-v3"``.
    hardware : str
        A hardware preset, or ``"ATTN_NAME/FFN_NAME"`` (e.g. ``"h20/h800"``) for Attention
        on one GPU type and the FFN on another.
    batch : int, optional
        Slots per Attention instance (default 256).
    theta : float, optional
        Mean tokens per slot (default 599, the paper's workload).
    ratio : float, optional
        A/F ratio at which the non-linear FFN curve is linearized (default: the best integer
        ratio of the non-linear curves).
    **kwargs
        See :func:`build_preset`.

    Returns
    -------
    StepCoefficients
        Seconds and seconds per token, for one step of the whole model.

    Raises
    ------
    AfdInputError
        For unknown names (the message lists the known ones), bad operating points, or a
        batch whose KV cache fits no Attention instance.
    """
    return build_preset(model, hardware, batch=batch, theta=theta, ratio=ratio,
                        **kwargs).coefficients
