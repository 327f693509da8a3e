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
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from afdlib.costs.coefficients import StepCoefficients
from afdlib.costs.fit import FitQuality, linearize
from afdlib.costs.measured import FITS_FILE, find_fit, load_fits
from afdlib.costs.memory import (
    DEFAULT_RESERVE,
    KVFeasibility,
    kv_feasibility,
    smallest_attention_instance,
    smallest_ffn_instance,
)
from afdlib.costs.roofline import Efficiency, attention_roofline, comm_roofline, ffn_roofline_parts
from afdlib.costs.specs import Deployment, GPUSpec, ModelSpec, gpu_from_dict, model_from_dict
from afdlib.errors import AfdInputError

__all__ = ["DEFAULT_BATCH", "DEFAULT_THETA", "MAX_DEFAULT_RATIO", "data_dir", "model_names",
           "hardware_names", "load_model", "load_gpu", "parse_hardware", "BundleCurves",
           "bundle_curves", "PresetResult", "build_preset", "preset_coefficients"]

#: Default slots per Attention instance: the paper's setting B = 256.
DEFAULT_BATCH = 256
#: Default per-slot load: the paper's workload (geometric decode, mean prompt 100, mean
#: decode 500), theta = E[P] + E[D] - 1 = 599 tokens.
DEFAULT_THETA = 599.0
#: The default operating ratio is the best integer ratio of the non-linear curves up to this.
MAX_DEFAULT_RATIO = 64
#: The FFN linearization interval is widened until the FFN time rises this much across it.
FFN_RISE = 0.05
_MAX_TOKENS = 1.0e7


def data_dir() -> Path:
    """Folder holding ``models/``, ``hardware/`` and ``fits/``.

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
    return sorted(p.stem for p in (data_dir() / kind).glob("*.json"))


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
    path = data_dir() / "models" / f"{name.lower()}.json"
    return model_from_dict(_read_json(str(path)), source=path.name)


def load_gpu(name: str) -> GPUSpec:
    """The hardware preset ``name`` (raises AfdInputError listing the known ones)."""
    known = hardware_names()
    if not isinstance(name, str) or name.lower() not in known:
        raise AfdInputError(f"unknown hardware {name!r}; known hardware: {', '.join(known)} "
                            "(ATTN/FFN, e.g. h20/h800, for a heterogeneous bundle)")
    path = data_dir() / "hardware" / f"{name.lower()}.json"
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


def _fits() -> list[dict]:
    path = data_dir() / "fits" / FITS_FILE
    if not path.exists():
        return []
    return load_fits(path)


@dataclass(frozen=True)
class BundleCurves:
    """Non-linear step-time curves of one bundle (seconds per step).

    Attributes
    ----------
    model : ModelSpec
    deployment : Deployment
    attention : callable
        ``attention(T, B)``: one Attention instance with B slots holding T tokens.
    ffn : callable
        ``ffn(N)``: the FFN instance on N aggregated tokens.
    comm : callable
        ``comm(B, r)``: the Attention <-> FFN exchange of one step.
    comm_binding : callable
        ``comm_binding(r)`` -> ``"B"`` or ``"rB"``: which traffic binds at ratio r.
    provenance : dict
        Role -> where its curve comes from (measured table and configuration, or roofline).
    fits : dict
        Role -> the committed fit entry used (absent for roofline roles).
    """

    model: ModelSpec
    deployment: Deployment
    attention: Callable
    ffn: Callable
    comm: Callable
    comm_binding: Callable
    provenance: dict
    fits: dict = field(default_factory=dict)

    def step_time(self, batch: int, theta: float, ratio) -> np.ndarray:
        """Mean-field step time ``max(t_A(B theta), t_C, t_F(r B))`` (s), vectorized in r."""
        ratio = np.asarray(ratio, dtype=float)
        t_a = self.attention(batch * theta, batch)
        return np.maximum(np.maximum(t_a, self.comm(batch, ratio)), self.ffn(ratio * batch))

    def throughput(self, batch: int, theta: float, ratio) -> np.ndarray:
        """Mean-field throughput per instance ``r B / ((r + 1) tau)`` (tokens/s)."""
        ratio = np.asarray(ratio, dtype=float)
        return ratio * batch / ((ratio + 1.0) * self.step_time(batch, theta, ratio))


def _measured_system(gpu: GPUSpec, role: str, source: str) -> str | None:
    if source == "roofline":
        return None
    return (gpu.measured or {}).get(role)


def bundle_curves(model: ModelSpec | str, hardware: str | tuple[GPUSpec, GPUSpec], *,
                  batch: int = DEFAULT_BATCH, theta: float = DEFAULT_THETA,
                  source: str = "auto", efficiency: Efficiency | None = None,
                  attention_gpus: int | None = None, ffn_gpus: int | None = None,
                  attention_parallel: str | None = None, link: str = "network",
                  reserve: float = DEFAULT_RESERVE) -> BundleCurves:
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
    """
    if source not in ("auto", "roofline"):
        raise AfdInputError(f"source must be 'auto' or 'roofline', got {source!r}")
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
    fits = _fits()
    used = {}
    prov = {}
    layers = model.num_layers
    n_a = dep.attention_gpus

    # -- attention ---------------------------------------------------------------------
    roof_a = attention_roofline(model, dep, eff)
    sys_a = _measured_system(gpu_a, "attention", source)
    tp = n_a if parallel == "tp" else 1
    entry = find_fit(fits, "attention", sys_a, model.name, tp=tp) if sys_a else None
    if entry is not None:
        per_gpu = 1.0 / n_a if parallel == "dp" else 1.0  # share of T and B each GPU sees
        a, g, b0 = entry["alpha"], entry["gamma"], entry["beta"]
        with_proj = entry["config"].get("includes_projections", False)

        def attention(load, batch_, a=a, g=g, b0=b0, with_proj=with_proj, per_gpu=per_gpu):
            t = layers * (b0 + a * per_gpu * np.asarray(load, float)
                          + g * per_gpu * np.asarray(batch_, float))
            extra = roof_a.head_time(batch_)
            if not with_proj:
                extra = extra + roof_a.projection_time(batch_)
            return t + extra

        used["attention"] = entry
        prov["attention"] = (f"measured: {entry['system']} {entry['table']} (tp={tp}, "
                             f"{'with' if with_proj else 'plus roofline'} projections), "
                             "roofline output head")
    else:
        attention = roof_a.time
        prov["attention"] = "roofline"

    # -- FFN ---------------------------------------------------------------------------
    sys_f = _measured_system(gpu_f, "ffn", source)
    entry = (find_fit(fits, "ffn", sys_f, model.name, ep=dep.ffn_gpus)
             if sys_f and model.is_moe else None)
    if entry is not None:
        p, s, c = entry["plateau"], entry["slope"], entry["intercept"]

        def ffn(tokens, p=p, s=s, c=c):
            parts = ffn_roofline_parts(model, dep, tokens, eff)
            routed = model.moe_layers * np.maximum(p, s * np.asarray(tokens, float) + c)
            return routed + parts["shared"] + parts["dense"]

        used["ffn"] = entry
        prov["ffn"] = (f"measured: {entry['system']} moe_perf (ep={dep.ffn_gpus}) for routed "
                       "experts; roofline for shared experts and dense layers")
    else:
        def ffn(tokens):
            parts = ffn_roofline_parts(model, dep, tokens, eff)
            return parts["routed"] + parts["shared"] + parts["dense"]

        prov["ffn"] = "roofline"

    # -- communication -----------------------------------------------------------------
    roof_c = comm_roofline(model, dep, eff)
    # DeepEP was measured inside one NVLink node: it describes an NVLink path only
    sys_c = _measured_system(gpu_a, "comm", source) if dep.link == "nvlink" else None
    same = sys_c is not None and sys_c == _measured_system(gpu_f, "comm", source)
    entry = find_fit(fits, "comm", sys_c, model.name) if same and model.is_moe else None
    if entry is not None:
        a, b0 = entry["alpha"], entry["beta"]

        def comm(batch_, ratio, a=a, b0=b0):
            ratio = np.asarray(ratio, float)
            per_rank = np.asarray(batch_, float) / n_a
            return layers * (b0 + a * per_rank) * np.ones_like(ratio)

        def binding(ratio):
            return "B"

        used["comm"] = entry
        prov["comm"] = (f"measured: {entry['system']} DeepEP low-latency dispatch + combine "
                        "(one node), every layer")
    else:
        comm = roof_c.time
        binding = roof_c.binding
        prov["comm"] = f"roofline ({dep.link})"
    return BundleCurves(model=model, deployment=dep, attention=attention, ffn=ffn, comm=comm,
                        comm_binding=binding, provenance=prov, fits=used)


@dataclass(frozen=True)
class PresetResult:
    """Coefficients of a preset bundle with everything that produced them.

    Attributes
    ----------
    coefficients : StepCoefficients
    curves : BundleCurves
    batch, theta, ratio : float
        The operating point (ratio: where the curves were linearized).
    ffn_region : (float, float)
        Aggregated-token interval of the FFN linearization.
    ffn_linearization : FitQuality
        How well the FFN line matches the curve there.
    memory : KVFeasibility
        Whether the B slots fit one Attention instance, and the largest B that does.
    """

    coefficients: StepCoefficients
    curves: BundleCurves
    batch: int
    theta: float
    ratio: float
    ffn_region: tuple
    ffn_linearization: FitQuality
    memory: KVFeasibility


def _check_point(batch, theta, ratio):
    if batch is None:
        batch = DEFAULT_BATCH
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise AfdInputError(f"batch must be an integer >= 1, got {batch!r}")
    if theta is None:
        theta = DEFAULT_THETA
    if isinstance(theta, bool) or not isinstance(theta, (int, float, np.floating, np.integer)) \
            or not math.isfinite(theta) or theta <= 0:
        raise AfdInputError(f"theta must be a finite number > 0 (tokens), got {theta!r}")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(
            ratio, (int, float, np.floating, np.integer)) or not math.isfinite(ratio) or ratio <= 0):
        raise AfdInputError(f"ratio must be a finite number > 0, got {ratio!r}")
    return int(batch), float(theta), (None if ratio is None else float(ratio))


def build_preset(model: str | ModelSpec, hardware: str, *, batch: int | None = None,
                 theta: float | None = None, ratio: float | None = None,
                 comm_scales_with: str | None = None, **kwargs) -> PresetResult:
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
        :data:`FFN_RISE` across the interval, so a plateau does not give a flat line). Default: the best integer ratio in
        1..:data:`MAX_DEFAULT_RATIO` of the non-linear mean-field throughput -- where the
        closed-form rule will land.
    comm_scales_with : {"B", "rB"}, optional
        Force the communication scaling (default: whichever traffic binds at the ratio).
    **kwargs
        Passed to :func:`bundle_curves` (``source``, ``efficiency``, ``attention_gpus``,
        ``ffn_gpus``, ``attention_parallel``, ``link``, ``reserve``).

    Returns
    -------
    PresetResult
    """
    batch, theta, ratio = _check_point(batch, theta, ratio)
    curves = bundle_curves(model, hardware, batch=batch, theta=theta, **kwargs)
    if ratio is None:
        grid = np.arange(1, MAX_DEFAULT_RATIO + 1, dtype=float)
        ratio = float(grid[int(np.argmax(curves.throughput(batch, theta, grid)))])
    lo, hi = max(1.0, ratio / 2.0) * batch, max(2.0, 2.0 * ratio) * batch
    # a region lying wholly on the weight-streaming plateau would give a flat line (and
    # an unbounded r_peak): widen it until the FFN time rises by FFN_RISE across it
    f_lo = float(curves.ffn(lo))
    while float(curves.ffn(hi)) < (1.0 + FFN_RISE) * f_lo and hi < _MAX_TOKENS:
        hi *= 2.0
    alpha_f, beta_f, quality = linearize(curves.ffn, lo, hi)
    if alpha_f <= 0:
        raise AfdInputError(f"the FFN curve is flat on [{lo:g}, {hi:g}] tokens; choose another "
                            "operating ratio")
    beta_f = max(beta_f, 0.0)
    t0 = float(curves.attention(0.0, batch))
    alpha_a = float(curves.attention(1.0e6, batch) - t0) / 1.0e6
    scaling = comm_scales_with or curves.comm_binding(ratio)
    if scaling not in ("B", "rB"):
        raise AfdInputError(f"comm_scales_with must be 'B' or 'rB', got {scaling!r}")
    c1 = float(curves.comm(batch, ratio))
    if scaling == "B":
        beta_c = float(curves.comm(0.0, ratio))
        alpha_c = (c1 - beta_c) / batch
    else:
        beta_c = float(curves.comm(0.0, 1.0))
        alpha_c = max((c1 - beta_c) / (ratio * batch), 0.0)
    coeffs = StepCoefficients(alpha_A=alpha_a, beta_A=t0, alpha_F=alpha_f, beta_F=beta_f,
                              alpha_C=max(alpha_c, 0.0), beta_C=max(beta_c, 0.0),
                              comm_scales_with=scaling)
    memory = kv_feasibility(curves.model, curves.deployment, batch, theta,
                            reserve=kwargs.get("reserve", DEFAULT_RESERVE))
    return PresetResult(coefficients=coeffs, curves=curves, batch=batch, theta=theta,
                        ratio=ratio, ffn_region=(lo, hi), ffn_linearization=quality,
                        memory=memory)


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
