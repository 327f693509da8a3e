"""KV-cache memory feasibility of an Attention instance, and instance sizing.

An Attention instance holds its share of the attention weights (plus the embedding and the
output head) and the KV cache of its B slots. With a stationary mean load of ``theta``
tokens per slot, the cache holds ``B * theta`` tokens on average; paged KV caches allocate
close to what is used, so the mean load (optionally plus ``z`` standard deviations of the
instance's total load, ``z * sqrt(B) * sigma``) is what must fit. A fraction of HBM is held
back for activations, CUDA graphs, communication buffers and fragmentation.

Units: bytes, tokens, slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from afdlib.costs.roofline import kv_split, weight_split
from afdlib.costs.specs import Deployment, GPUSpec, ModelSpec
from afdlib.errors import AfdInputError, DoesNotFit
from afdlib.validate import check_int, check_number

__all__ = ["DEFAULT_RESERVE", "KVFeasibility", "kv_feasibility", "max_feasible_batch",
           "smallest_attention_instance", "smallest_ffn_instance"]

#: Fraction of HBM kept free of weights and KV (activations, graphs, buffers). An
#: assumption; AIConfigurator budgets about 3.5 GB plus NCCL buffers (~5 % of an H100).
DEFAULT_RESERVE = 0.10
_MAX_BATCH = 10_000_000


@dataclass(frozen=True)
class KVFeasibility:
    """Whether B slots fit one Attention instance, per GPU of the instance.

    Attributes
    ----------
    fits : bool
        Weights plus KV fit the usable memory of every GPU.
    batch : int
        Slots asked for.
    max_batch : int
        Largest B that fits at the same per-slot load (0 if not even the weights fit).
    weight_bytes : float
        Attention-side weights per GPU (bytes).
    kv_bytes : float
        KV cache per GPU for ``batch`` slots (bytes).
    usable_bytes : float
        HBM per GPU after the reserve (bytes).
    tokens_per_slot : float
        Load per slot used (theta, plus the sigma margin spread over the slots).
    """

    fits: bool
    batch: int
    max_batch: int
    weight_bytes: float
    kv_bytes: float
    usable_bytes: float
    tokens_per_slot: float


def _per_gpu(model: ModelSpec, dep: Deployment):
    weights = model.attention_weight_bytes / weight_split(dep)
    kv_per_token = model.kv_bytes_per_token / kv_split(model, dep)
    return weights, kv_per_token


def _load(batch: float, theta: float, sigma: float, z: float) -> float:
    return batch * theta + z * math.sqrt(batch) * sigma


def kv_feasibility(model: ModelSpec, dep: Deployment, batch: int, theta: float, *,
                   sigma: float = 0.0, z: float = 0.0,
                   reserve: float = DEFAULT_RESERVE) -> KVFeasibility:
    """Check that ``batch`` slots at mean load ``theta`` fit one Attention instance.

    Parameters
    ----------
    model : ModelSpec
    dep : Deployment
    batch : int
        Slots B of the instance (>= 1).
    theta : float
        Mean tokens cached per slot (tokens, > 0).
    sigma : float
        Standard deviation of one slot's load (tokens), used with ``z``.
    z : float
        Safety margin in standard deviations of the instance's load (0: the mean).
    reserve : float
        Fraction of HBM kept free, in [0, 1).

    Returns
    -------
    KVFeasibility
        Including the largest feasible B.

    Raises
    ------
    AfdInputError
        On a non-positive batch or theta, negative sigma or z, or a reserve outside [0, 1).
    """
    batch = check_int("batch", batch, minimum=1)
    theta = check_number("theta", theta, minimum=0.0, strict=True)
    sigma = check_number("sigma", sigma, minimum=0.0)
    z = check_number("z", z, minimum=0.0)
    reserve = check_number("reserve", reserve, minimum=0.0)
    if reserve >= 1:
        raise AfdInputError(f"reserve must be < 1, got {reserve}", parameter="reserve")
    weights, kv_per_token = _per_gpu(model, dep)
    usable = dep.attention_gpu.memory_bytes * (1.0 - reserve)
    kv = kv_per_token * _load(batch, theta, sigma, z)
    return KVFeasibility(fits=weights + kv <= usable, batch=batch,
                         max_batch=max_feasible_batch(model, dep, theta, sigma=sigma, z=z,
                                                      reserve=reserve),
                         weight_bytes=weights, kv_bytes=kv, usable_bytes=usable,
                         tokens_per_slot=_load(batch, theta, sigma, z) / batch)


def max_feasible_batch(model: ModelSpec, dep: Deployment, theta: float, *, sigma: float = 0.0,
                       z: float = 0.0, reserve: float = DEFAULT_RESERVE) -> int:
    """Largest B whose KV cache at load ``theta`` (plus margin) fits (0 if none).

    The required memory grows with B, so a bisection finds the boundary exactly.
    """
    weights, kv_per_token = _per_gpu(model, dep)
    usable = dep.attention_gpu.memory_bytes * (1.0 - reserve)

    def fits(b: int) -> bool:
        return weights + kv_per_token * _load(b, theta, sigma, z) <= usable

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= _MAX_BATCH and fits(hi):
        lo, hi = hi, hi * 2
    if hi > _MAX_BATCH:
        return _MAX_BATCH
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def smallest_attention_instance(model: ModelSpec, gpu: GPUSpec, batch: int, theta: float, *,
                                parallel: str | None = None, reserve: float = DEFAULT_RESERVE,
                                max_gpus: int = 64) -> tuple[int, str]:
    """Fewest GPUs (a power of two) whose Attention instance holds ``batch`` slots.

    Parameters
    ----------
    parallel : {"tp", "dp"}, optional
        Default: data parallel for MLA (its single latent cannot be split by heads),
        tensor parallel otherwise.

    Returns
    -------
    gpus, parallel : int, str

    Raises
    ------
    DoesNotFit
        If no instance of up to ``max_gpus`` GPUs holds them; the message gives the largest
        feasible B of the biggest instance tried.
    """
    parallel = parallel or ("dp" if model.attention == "MLA" else "tp")
    n = 1
    last = None
    while n <= max_gpus:
        dep = Deployment(attention_gpu=gpu, ffn_gpu=gpu, attention_gpus=n,
                         attention_parallel=parallel)
        last = kv_feasibility(model, dep, batch, theta, reserve=reserve)
        if last.fits:
            return n, parallel
        n *= 2
    raise DoesNotFit(
        f"{batch} slots at theta = {theta:g} tokens do not fit an Attention instance of up to "
        f"{max_gpus} {gpu.name} GPUs for {model.name} (largest feasible B there: "
        f"{last.max_batch if last else 0})")


def smallest_ffn_instance(model: ModelSpec, gpu: GPUSpec, *, reserve: float = DEFAULT_RESERVE,
                          max_gpus: int = 256) -> int:
    """Fewest GPUs (a power of two) whose FFN instance holds all FFN weights.

    Raises
    ------
    DoesNotFit
        If even ``max_gpus`` GPUs (or one GPU per expert) cannot hold them.
    """
    usable = gpu.memory_bytes * (1.0 - reserve)
    limit = min(max_gpus, model.num_experts) if model.is_moe else max_gpus
    g = 1
    while g <= limit:
        if model.ffn_weight_bytes / g <= usable:
            return g
        g *= 2
    raise DoesNotFit(f"the FFN weights of {model.name} ({model.ffn_weight_bytes / 1e9:.0f} GB) "
                        f"do not fit {limit} {gpu.name} GPUs")
