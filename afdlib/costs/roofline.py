"""Roofline step times of attention, FFN and communication from specifications.

A kernel that moves ``bytes`` through HBM and performs ``flops`` takes at least
``max(bytes / (e_m * BW), flops / (e_c * F))`` seconds (the roofline of Williams et al.),
with peak bandwidth ``BW`` and peak FLOP/s ``F`` scaled by efficiencies ``e_m, e_c`` that
no kernel reaches 1 on. Every function here applies that bound to one decode step of an
AFD bundle, layer by layer, on one GPU of an instance (all GPUs of an instance run in
parallel on equal shares), and adds a fixed per-layer overhead. Assumptions, all explicit
in :class:`Efficiency` and :class:`afdlib.costs.specs.Deployment`:

* Attention reads each cached token's KV once per step and does
  ``ModelSpec.attention_flops_per_kv_token_layer`` FLOPs on it; its projections read their
  weights once per step and do ``2 * params`` FLOPs per slot. The output projection
  (vocabulary head) runs on the Attention side, once per step.
* Tensor-parallel attention splits heads, weights and FLOPs over the instance's GPUs; KV is
  split only as far as there are KV heads (an MLA latent is not split at all). Data-parallel
  attention splits slots (so KV and FLOPs) and replicates weights.
* The FFN instance spreads routed experts evenly over its GPUs (expert parallelism), with
  uniform independent top-k routing: a GPU streams the weights of the local experts that at
  least one token chose, ``E/G * (1 - (1 - k/E)**N)`` of them in expectation; shared experts
  are replicated and see ``N/G`` tokens; dense MLPs are tensor parallel.
* Communication per layer: each slot's hidden state goes to every FFN GPU holding one of its
  experts and comes back (dispatch and combine), through the Attention instance's NICs and
  the FFN instance's NICs, whichever is slower, plus one link latency each way.

All times are seconds for one step (all layers); tokens are counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afdlib.costs.specs import DTYPE_BYTES, Deployment, ModelSpec
from afdlib.errors import AfdInputError
from afdlib.validate import check_number

__all__ = ["Efficiency", "AttentionRoofline", "attention_roofline", "ffn_roofline_time",
           "ffn_roofline_parts", "comm_roofline", "CommRoofline", "experts_touched",
           "ffn_gpus_per_token", "ffn_intensity", "kv_split", "weight_split"]


@dataclass(frozen=True)
class Efficiency:
    """Fractions of peak a real kernel reaches, and fixed overheads (all settable).

    Parameters
    ----------
    hbm : float
        Achieved fraction of peak HBM bandwidth, in (0, 1]. Default 0.8, the empirical
        scaling factor of NVIDIA AIConfigurator's system files.
    compute : float
        Achieved fraction of peak dense tensor-core FLOP/s, in (0, 1]. Default 0.8
        (an assumption; the measured fits in the chapter show how far real kernels are).
    network : float
        Achieved fraction of link bandwidth, in (0, 1]. Default 0.8 (assumption).
    layer_overhead : float
        Fixed time per layer and role (launches, synchronization), s. Default 3e-6,
        AIConfigurator's empirical constant memory latency.
    """

    hbm: float = 0.8
    compute: float = 0.8
    network: float = 0.8
    layer_overhead: float = 3e-6

    def __post_init__(self) -> None:
        for name in ("hbm", "compute", "network"):
            object.__setattr__(self, name, check_number(f"efficiency {name}", getattr(self, name),
                                                        minimum=0.0, strict=True, maximum=1.0))
        object.__setattr__(self, "layer_overhead",
                           check_number("efficiency layer_overhead", self.layer_overhead,
                                        minimum=0.0, unit="s"))


def kv_split(model: ModelSpec, dep: Deployment) -> int:
    """Over how many GPUs of an Attention instance the KV cache is divided: all of them
    when data parallel, as many as there are KV heads when tensor parallel (an MLA latent
    is not split)."""
    n = dep.attention_gpus
    if dep.attention_parallel == "dp":
        return n
    heads = 1 if model.attention == "MLA" else model.num_kv_heads
    return min(n, heads)


def weight_split(dep: Deployment) -> int:
    """Over how many GPUs of an Attention instance its weights are divided (tensor parallel:
    all; data parallel: none, each GPU holds them all)."""
    return dep.attention_gpus if dep.attention_parallel == "tp" else 1


@dataclass(frozen=True)
class AttentionRoofline:
    """Roofline of one Attention instance: ``t_A(T, B) = alpha * T + fixed(B)``.

    Attributes
    ----------
    alpha : float
        Time per cached token read, all layers (s/token).
    alpha_memory, alpha_compute : float
        The two candidates of the per-token roofline (s/token): KV bytes over bandwidth and
        attention FLOPs over FLOP/s; ``alpha`` is their maximum.
    layer_weight_time, head_weight_time : float
        Streaming the projection weights of all layers, and the output head, once (s).
    layer_flops_per_slot, head_flops_per_slot : float
        Their FLOPs for one slot (s/slot); weights and FLOPs of a kernel overlap (the
        larger counts).
    overhead : float
        Fixed per-layer overhead of the step (s).
    """

    alpha: float
    alpha_memory: float
    alpha_compute: float
    layer_weight_time: float
    head_weight_time: float
    layer_flops_per_slot: float
    head_flops_per_slot: float
    overhead: float

    def projection_time(self, batch) -> np.ndarray:
        """Q/KV/O projections of all layers for ``batch`` slots (s)."""
        batch = np.asarray(batch, dtype=float)
        return np.maximum(self.layer_weight_time, self.layer_flops_per_slot * batch)

    def head_time(self, batch) -> np.ndarray:
        """Output head (vocabulary logits) for ``batch`` slots (s)."""
        batch = np.asarray(batch, dtype=float)
        return np.maximum(self.head_weight_time, self.head_flops_per_slot * batch)

    def fixed(self, batch) -> np.ndarray:
        """The part that does not depend on the cached tokens (s), for ``batch`` slots."""
        return self.projection_time(batch) + self.head_time(batch) + self.overhead

    def time(self, load, *, batch) -> np.ndarray:
        """Attention time (s) of an instance with ``batch`` slots holding ``load`` tokens."""
        return self.alpha * np.asarray(load, dtype=float) + self.fixed(batch)


def attention_roofline(model: ModelSpec, dep: Deployment,
                       eff: Efficiency = Efficiency()) -> AttentionRoofline:
    """Roofline of one Attention instance of ``dep`` serving ``model``.

    Parameters
    ----------
    model : ModelSpec
    dep : Deployment
        Its ``attention_gpu``, ``attention_gpus`` and ``attention_parallel`` are used.
    eff : Efficiency

    Returns
    -------
    AttentionRoofline
    """
    gpu = dep.attention_gpu
    n = dep.attention_gpus
    bw = eff.hbm * gpu.hbm_bandwidth
    layers = model.num_layers
    kv_bytes_layer = model.kv_elements_per_token_layer * DTYPE_BYTES[model.kv_dtype]
    # attention scores and values run in bf16 arithmetic
    f_attn = eff.compute * gpu.flops_for("bf16")
    f_gemm = eff.compute * gpu.flops_for(model.weight_dtype)
    alpha_memory = layers * kv_bytes_layer / (kv_split(model, dep) * bw)
    alpha_compute = layers * model.attention_flops_per_kv_token_layer / (n * f_attn)
    wsplit = weight_split(dep)
    wb = model.weight_bytes_per_param
    layer_params = layers * model.attention_params_per_layer
    head_params = model.output_params
    return AttentionRoofline(
        alpha=max(alpha_memory, alpha_compute), alpha_memory=alpha_memory,
        alpha_compute=alpha_compute,
        layer_weight_time=layer_params * wb / (wsplit * bw),
        head_weight_time=head_params * wb / (wsplit * bw),
        layer_flops_per_slot=2.0 * layer_params / (n * f_gemm),
        head_flops_per_slot=2.0 * head_params / (n * f_gemm),
        overhead=layers * eff.layer_overhead)


def experts_touched(num_experts: int, top_k: int, tokens) -> np.ndarray:
    """Expected fraction of experts chosen by at least one of ``tokens`` tokens.

    Under uniform independent routing a token avoids a given expert with probability
    ``1 - k/E``, so the fraction touched is ``1 - (1 - k/E)**N``.
    """
    tokens = np.asarray(tokens, dtype=float)
    return 1.0 - (1.0 - top_k / num_experts) ** tokens


def ffn_gpus_per_token(model: ModelSpec, ffn_gpus: int) -> float:
    """Expected number of distinct FFN GPUs one token's hidden state is sent to.

    With ``E`` experts spread evenly over ``G`` GPUs and ``k`` distinct experts per token,
    a GPU is skipped with probability ``C(E - E/G, k) / C(E, k)``. A dense FFN receives each
    token once.
    """
    if not model.is_moe:
        return 1.0
    e, k, g = model.num_experts, model.experts_per_token, ffn_gpus
    local = e / g
    if e - local < k:
        return float(g)
    # log C(E - E/G, k) - log C(E, k), with real-valued E/G via lgamma
    log_skip = (math.lgamma(e - local + 1) - math.lgamma(e - local - k + 1)
                - math.lgamma(e + 1) + math.lgamma(e - k + 1))
    return g * (1.0 - math.exp(log_skip))


def ffn_intensity(model: ModelSpec, tokens) -> np.ndarray:
    """Arithmetic intensity of the FFN: FLOPs per byte of FFN weights read, for a batch of
    ``tokens`` tokens (FLOP/byte), vectorized.

    A dense MLP applies all its weights to every token: ``2 N / b`` for ``b`` bytes per
    weight. A mixture of experts reads only the experts some token chose (a fraction
    :func:`experts_touched` of them) and applies ``k`` of them to each token:
    ``2 N k / (touched E b)``, which is ``2 N k / (E b)`` once every expert is touched.
    """
    tokens = np.asarray(tokens, dtype=float)
    if not model.is_moe:
        return 2 * tokens / model.weight_bytes_per_param
    touched = experts_touched(model.num_experts, model.experts_per_token, tokens)
    routed = tokens * model.experts_per_token  # token-expert pairs
    return 2 * routed / (touched * model.num_experts * model.weight_bytes_per_param)


def ffn_roofline_parts(model: ModelSpec, dep: Deployment, tokens,
                       eff: Efficiency = Efficiency()) -> dict[str, np.ndarray]:
    """Roofline FFN time (s) of one step, split into routed experts, shared experts and
    dense MLPs (each summed over its layers, with the per-layer overhead in "routed" or
    "dense"); vectorized over ``tokens``."""
    gpu = dep.ffn_gpu
    g = dep.ffn_gpus
    n = np.asarray(tokens, dtype=float)
    if np.any(~np.isfinite(n)) or np.any(n < 0):
        raise AfdInputError("tokens must be finite and >= 0")
    bw = eff.hbm * gpu.hbm_bandwidth
    flops = eff.compute * gpu.flops_for(model.weight_dtype)
    wb = model.weight_bytes_per_param
    zero = np.zeros_like(n)
    parts = {"routed": zero, "shared": zero, "dense": zero}
    if model.moe_layers:
        if g > model.num_experts:
            raise AfdInputError(f"ffn_gpus ({g}) exceeds the {model.num_experts} experts of "
                                f"{model.name}")
        local = model.num_experts / g
        touched = local * experts_touched(model.num_experts, model.experts_per_token, n)
        routed = np.maximum(touched * model.expert_params * wb / bw,
                            2.0 * model.expert_params * n * model.experts_per_token / g / flops)
        parts["routed"] = model.moe_layers * (routed + eff.layer_overhead)
        if model.shared_experts:
            p = model.shared_experts * model.expert_params
            parts["shared"] = model.moe_layers * np.maximum(p * wb / bw, 2.0 * p * n / g / flops)
    if model.dense_layers:
        p = model.dense_ffn_params
        parts["dense"] = model.dense_layers * (np.maximum(p * wb / g / bw, 2.0 * p * n / g / flops)
                                               + eff.layer_overhead)
    return parts


def ffn_roofline_time(model: ModelSpec, dep: Deployment, tokens,
                      eff: Efficiency = Efficiency()) -> np.ndarray:
    """Roofline FFN time (s) of one step for ``tokens`` aggregated tokens (vectorized).

    For MoE layers the curve has the three regions the measured tables show: a ramp while
    new experts are touched, a plateau while all local expert weights stream from HBM, and
    a compute-bound line once ``N * k / G`` tokens per GPU outweigh the weights.
    """
    parts = ffn_roofline_parts(model, dep, tokens, eff)
    return parts["routed"] + parts["shared"] + parts["dense"]


@dataclass(frozen=True)
class CommRoofline:
    """Roofline of the Attention <-> FFN exchange of one step.

    ``t_C(B, r) = latency + max(per_slot_egress * B, per_slot_ingress * r * B)``: the
    Attention instance's links carry its own B slots, the FFN instance's links carry the
    r*B slots of the whole bundle.

    Attributes
    ----------
    latency : float
        Two link latencies (dispatch and combine) per layer, all layers (s).
    per_slot_egress : float
        Time per slot through one Attention instance's links, all layers (s/token).
    per_slot_ingress : float
        Time per bundle slot through the FFN instance's links, all layers (s/token).
    gpus_per_token : float
        Expected distinct FFN GPUs a token is sent to.
    """

    latency: float
    per_slot_egress: float
    per_slot_ingress: float
    gpus_per_token: float

    def time(self, *, batch, ratio) -> np.ndarray:
        """Communication time (s) of a step with ``ratio`` workers of ``batch`` slots."""
        batch = np.asarray(batch, dtype=float)
        ratio = np.asarray(ratio, dtype=float)
        return self.latency + np.maximum(self.per_slot_egress * batch,
                                         self.per_slot_ingress * ratio * batch)

    def binding(self, ratio: float) -> str:
        """``"B"`` if the Attention side's links bind at ``ratio``, else ``"rB"``."""
        return "B" if self.per_slot_egress >= self.per_slot_ingress * ratio else "rB"


def comm_roofline(model: ModelSpec, dep: Deployment,
                  eff: Efficiency = Efficiency()) -> CommRoofline:
    """Roofline of the per-step Attention <-> FFN traffic of ``dep``.

    Parameters
    ----------
    model : ModelSpec
    dep : Deployment
        ``link`` picks the network (default) or NVLink bandwidth of each side.
    eff : Efficiency

    Returns
    -------
    CommRoofline
    """
    a, f = dep.attention_gpu, dep.ffn_gpu
    if dep.link == "nvlink":
        bw_a, bw_f = a.nvlink_bandwidth, f.nvlink_bandwidth
    else:
        bw_a, bw_f = a.network_bandwidth, f.network_bandwidth
    m = ffn_gpus_per_token(model, dep.ffn_gpus)
    # dispatch + combine: each slot's hidden state out to m GPUs and back, every layer
    bytes_per_slot = 2.0 * model.num_layers * m * model.hidden_size * \
        DTYPE_BYTES[model.activation_dtype]
    latency = 2.0 * model.num_layers * max(a.link_latency, f.link_latency)
    return CommRoofline(latency=latency,
                        per_slot_egress=bytes_per_slot / (dep.attention_gpus * eff.network * bw_a),
                        per_slot_ingress=bytes_per_slot / (dep.ffn_gpus * eff.network * bw_f),
                        gpus_per_token=m)
