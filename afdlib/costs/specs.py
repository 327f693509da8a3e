"""Model and hardware specifications: the inputs of the roofline and of memory sizing.

Three frozen dataclasses, each validated on construction:

* :class:`ModelSpec` -- a transformer's decode-relevant shape: attention type (MHA, GQA or
  MLA) and the KV bytes it caches per token, layer count, attention, dense-FFN and MoE
  (experts, top-k, shared experts) shapes, dtypes of weights, KV cache and activations.
* :class:`GPUSpec` -- one GPU: HBM capacity and bandwidth, dense tensor-core FLOP/s per
  dtype, scale-up (NVLink) and scale-out (network) bandwidth per direction, link latency.
* :class:`Deployment` -- how many GPUs form an Attention instance and an FFN instance, of
  which GPU type, and how the Attention instance splits its work (tensor or data parallel).

Preset files (JSON, one per model or GPU) carry a ``sources`` object that cites a public
source for every number; :func:`model_from_dict` and :func:`gpu_from_dict` refuse a preset
with an uncited number. Units: bytes, bytes per second, FLOP per second, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from afdlib.errors import AfdInputError
from afdlib.validate import check_choice, check_int, check_number

__all__ = ["DTYPE_BYTES", "ATTENTION_TYPES", "ATTENTION_PARALLEL", "LINKS", "ModelSpec",
           "GPUSpec", "Deployment", "model_from_dict", "gpu_from_dict"]

#: Bytes per element of the dtypes the presets use.
DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5}

AttentionType = Literal["MHA", "GQA", "MLA"]
#: Attention types of :class:`ModelSpec`.
ATTENTION_TYPES = ("MHA", "GQA", "MLA")
#: How an Attention instance splits its work: tensor parallel or data parallel.
ATTENTION_PARALLEL = ("tp", "dp")
#: Paths between Attention and FFN instances: the scale-out network, or NVLink.
LINKS = ("network", "nvlink")


def _positive(owner: str, name: str, value, *, integer: bool = False, allow_zero: bool = False):
    """One numeric field of a spec (``> 0``, or ``>= 0``), as int or float; the message
    names the spec and the field."""
    label = f"{owner}: {name}"
    if integer:
        return check_int(label, value, minimum=0 if allow_zero else 1)
    return check_number(label, value, minimum=0.0, strict=not allow_zero)


def _dtype(owner: str, name: str, value: str) -> str:
    return check_choice(f"{owner}: {name}", value, tuple(DTYPE_BYTES))


@dataclass(frozen=True)
class ModelSpec:
    """The decode-relevant shape of a transformer language model.

    Parameters
    ----------
    name : str
        Preset name (e.g. ``"deepseek-v3"``).
    attention : {"MHA", "GQA", "MLA"}
        Attention type. MHA is GQA with ``num_kv_heads == num_heads``; MLA caches one
        compressed latent of ``kv_lora_rank + qk_rope_head_dim`` elements per token and layer.
    num_layers : int
        Transformer blocks (each has one attention and one FFN).
    hidden_size : int
        Model width h (elements).
    num_heads : int
        Query heads.
    num_kv_heads : int
        Key/value heads (GQA, MHA); ignored by MLA.
    head_dim : int
        Elements per head (GQA, MHA); ignored by MLA.
    kv_lora_rank, q_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim : int
        MLA dimensions (0 for GQA/MHA; ``q_lora_rank = 0`` means no query compression).
    dense_layers : int
        Blocks whose FFN is a dense SwiGLU MLP (all of them for a dense model).
    dense_intermediate_size : int
        Intermediate width of the dense MLP (0 if there is none).
    num_experts, experts_per_token, moe_intermediate_size : int
        Routed experts per MoE layer, experts each token is sent to (top-k), and each
        expert's intermediate width (all 0 for a dense model).
    shared_experts : int
        Experts every token passes through in each MoE layer (width ``moe_intermediate_size``).
    vocab_size : int
        Vocabulary (sizes the output projection, read once per step).
    weight_dtype, kv_dtype, activation_dtype : str
        Keys of :data:`DTYPE_BYTES`: weights as served, the KV cache, and the hidden
        states exchanged between Attention and FFN.
    display_name : str
        Human-readable name.
    sources : dict
        Field name -> citation; every numeric field of a preset must have one.

    Raises
    ------
    AfdInputError
        If a size is not a positive integer, a dtype is unknown, or the shape is
        inconsistent (e.g. GQA heads not a multiple of KV heads, top-k above the experts).
    """

    name: str
    attention: AttentionType
    num_layers: int
    hidden_size: int
    num_heads: int
    vocab_size: int
    num_kv_heads: int = 0
    head_dim: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    dense_layers: int = 0
    dense_intermediate_size: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_experts: int = 0
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    activation_dtype: str = "bf16"
    display_name: str = ""
    sources: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        owner = f"model {self.name!r}"
        check_choice(f"{owner}: attention", self.attention, ATTENTION_TYPES)
        for name in ("num_layers", "hidden_size", "num_heads", "vocab_size"):
            object.__setattr__(self, name, _positive(owner, name, getattr(self, name),
                                                     integer=True))
        for name in ("num_kv_heads", "head_dim", "kv_lora_rank", "q_lora_rank",
                     "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "dense_layers",
                     "dense_intermediate_size", "num_experts", "experts_per_token",
                     "moe_intermediate_size", "shared_experts"):
            object.__setattr__(self, name, _positive(owner, name, getattr(self, name),
                                                     integer=True, allow_zero=True))
        for name in ("weight_dtype", "kv_dtype", "activation_dtype"):
            _dtype(owner, name, getattr(self, name))
        if self.attention in ("MHA", "GQA"):
            if self.num_kv_heads < 1 or self.head_dim < 1:
                raise AfdInputError(f"{owner}: {self.attention} needs num_kv_heads >= 1 and "
                                    "head_dim >= 1")
            if self.num_heads % self.num_kv_heads:
                raise AfdInputError(f"{owner}: num_heads ({self.num_heads}) must be a multiple "
                                    f"of num_kv_heads ({self.num_kv_heads})")
            if self.attention == "MHA" and self.num_kv_heads != self.num_heads:
                raise AfdInputError(f"{owner}: MHA needs num_kv_heads == num_heads")
        else:
            for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                if getattr(self, name) < 1:
                    raise AfdInputError(f"{owner}: MLA needs {name} >= 1")
        if self.dense_layers > self.num_layers:
            raise AfdInputError(f"{owner}: dense_layers ({self.dense_layers}) exceeds "
                                f"num_layers ({self.num_layers})")
        if self.dense_layers > 0 and self.dense_intermediate_size < 1:
            raise AfdInputError(f"{owner}: dense layers need dense_intermediate_size >= 1")
        if self.moe_layers > 0:
            if min(self.num_experts, self.experts_per_token, self.moe_intermediate_size) < 1:
                raise AfdInputError(f"{owner}: {self.moe_layers} MoE layers need num_experts, "
                                    "experts_per_token and moe_intermediate_size >= 1")
            if self.experts_per_token > self.num_experts:
                raise AfdInputError(f"{owner}: experts_per_token ({self.experts_per_token}) "
                                    f"exceeds num_experts ({self.num_experts})")

    # -- derived shapes ---------------------------------------------------------------
    @property
    def moe_layers(self) -> int:
        """Blocks whose FFN is a mixture of experts."""
        return self.num_layers - self.dense_layers

    @property
    def is_moe(self) -> bool:
        """True if at least one block has a mixture-of-experts FFN."""
        return self.moe_layers > 0

    @property
    def weight_bytes_per_param(self) -> float:
        """Bytes per weight (scales of block-quantized formats are neglected)."""
        return DTYPE_BYTES[self.weight_dtype]

    @property
    def kv_elements_per_token_layer(self) -> int:
        """Cached elements per token and layer: 2 * kv_heads * head_dim, or the MLA latent."""
        if self.attention == "MLA":
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token occupies across all layers (bytes/token)."""
        return self.kv_elements_per_token_layer * DTYPE_BYTES[self.kv_dtype] * self.num_layers

    @property
    def attention_params_per_layer(self) -> int:
        """Weights of one attention block: query, key/value and output projections."""
        h = self.hidden_size
        if self.attention == "MLA":
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank * self.num_heads * qk
            else:
                q = h * self.num_heads * qk
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_b = self.kv_lora_rank * self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.num_heads * self.v_head_dim * h
            return q + kv_a + kv_b + o
        q = h * self.num_heads * self.head_dim
        kv = 2 * h * self.num_kv_heads * self.head_dim
        o = self.num_heads * self.head_dim * h
        return q + kv + o

    @property
    def attention_flops_per_kv_token_layer(self) -> int:
        """FLOPs per cached token read, per layer, for one decoding query.

        GQA/MHA: scores (2 * head_dim) and weighted values (2 * head_dim) for every query
        head. MLA in its weight-absorbed decode form: every head scores against the
        ``kv_lora_rank + qk_rope_head_dim`` latent and accumulates the ``kv_lora_rank``
        latent values.
        """
        if self.attention == "MLA":
            return 2 * self.num_heads * (2 * self.kv_lora_rank + self.qk_rope_head_dim)
        return 4 * self.num_heads * self.head_dim

    @property
    def attention_intensity(self) -> float:
        """Arithmetic intensity of decode attention: FLOPs per byte of KV cache read
        (FLOP/byte). It depends on the model's shape, not on the batch."""
        return self.attention_flops_per_kv_token_layer / (
            self.kv_elements_per_token_layer * DTYPE_BYTES[self.kv_dtype])

    @property
    def expert_params(self) -> int:
        """Weights of one routed or shared expert (SwiGLU: gate, up, down)."""
        return 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def dense_ffn_params(self) -> int:
        """Weights of one dense SwiGLU MLP."""
        return 3 * self.hidden_size * self.dense_intermediate_size

    @property
    def output_params(self) -> int:
        """Weights of the output projection (hidden -> vocabulary logits)."""
        return self.hidden_size * self.vocab_size

    @property
    def attention_weight_bytes(self) -> float:
        """Attention-side weights: every attention block plus embedding and output head."""
        params = (self.num_layers * self.attention_params_per_layer + 2 * self.output_params)
        return params * self.weight_bytes_per_param

    @property
    def ffn_weight_bytes(self) -> float:
        """FFN-side weights: dense MLPs, routed and shared experts of every layer."""
        per_moe = (self.num_experts + self.shared_experts) * self.expert_params
        params = self.dense_layers * self.dense_ffn_params + self.moe_layers * per_moe
        return params * self.weight_bytes_per_param

    @property
    def total_params(self) -> int:
        """All weights (attention, FFN, embedding and output head)."""
        per_moe = (self.num_experts + self.shared_experts) * self.expert_params
        return (self.num_layers * self.attention_params_per_layer + 2 * self.output_params
                + self.dense_layers * self.dense_ffn_params + self.moe_layers * per_moe)


@dataclass(frozen=True)
class GPUSpec:
    """One GPU type's memory, compute and interconnect.

    Parameters
    ----------
    name : str
        Preset name (e.g. ``"h800"``).
    memory_bytes : float
        HBM capacity (bytes).
    hbm_bandwidth : float
        Peak HBM bandwidth (bytes/s).
    flops : dict
        Dense (no sparsity) tensor-core peak FLOP/s per dtype, e.g. ``{"bf16": ..., "fp8": ...}``.
    nvlink_bandwidth : float
        Scale-up bandwidth per GPU and direction (bytes/s).
    network_bandwidth : float
        Scale-out (RDMA NIC) bandwidth per GPU and direction (bytes/s).
    link_latency : float
        Latency of one message between GPUs (s).
    gpus_per_node : int
        GPUs sharing one scale-up domain.
    measured : dict
        Which AIConfigurator kernel tables describe this GPU, per role
        (``{"attention": "h100_sxm", "ffn": "h100_sxm", "comm": None}``); None where no
        measured table applies.
    display_name : str
        Human-readable name.
    sources : dict
        Field name -> citation.

    Raises
    ------
    AfdInputError
        If a number is missing, not finite or not positive, or ``flops`` has no bf16 entry.
    """

    name: str
    memory_bytes: float
    hbm_bandwidth: float
    flops: dict
    nvlink_bandwidth: float
    network_bandwidth: float
    link_latency: float
    gpus_per_node: int = 8
    measured: dict = field(default_factory=dict, compare=False)
    display_name: str = ""
    sources: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        owner = f"hardware {self.name!r}"
        for name in ("memory_bytes", "hbm_bandwidth", "nvlink_bandwidth", "network_bandwidth",
                     "link_latency"):
            object.__setattr__(self, name, _positive(owner, name, getattr(self, name)))
        object.__setattr__(self, "gpus_per_node",
                           _positive(owner, "gpus_per_node", self.gpus_per_node, integer=True))
        if not isinstance(self.flops, dict) or "bf16" not in self.flops:
            raise AfdInputError(f"{owner}: flops must be an object with at least a 'bf16' entry")
        flops = {}
        for dtype, value in self.flops.items():
            _dtype(owner, f"flops[{dtype!r}]", dtype)
            flops[dtype] = _positive(owner, f"flops[{dtype!r}]", value)
        object.__setattr__(self, "flops", flops)
        roles = {"attention", "ffn", "comm"}
        bad = sorted(set(self.measured) - roles)
        if bad:
            raise AfdInputError(f"{owner}: measured has unknown role(s) {', '.join(bad)}")

    def flops_for(self, dtype: str) -> float:
        """Dense peak FLOP/s for GEMMs in ``dtype`` (falls back to bf16 if not listed)."""
        if dtype in self.flops:
            return self.flops[dtype]
        if dtype in ("fp4",) and "fp8" in self.flops:
            return self.flops["fp8"]
        return self.flops["bf16"]

    @property
    def ridge_point(self) -> float:
        """bf16 FLOPs per HBM byte at which a kernel turns compute-bound (FLOP/byte)."""
        return self.ridge("bf16")

    def ridge(self, dtype: str = "bf16") -> float:
        """FLOPs per HBM byte at which a ``dtype`` kernel turns compute-bound (FLOP/byte):
        :meth:`flops_for` over the HBM bandwidth."""
        return self.flops_for(dtype) / self.hbm_bandwidth


@dataclass(frozen=True)
class Deployment:
    """A bundle's instances: which GPUs, how many, and how attention is split.

    Parameters
    ----------
    attention_gpu, ffn_gpu : GPUSpec
        GPU types of the Attention instances and of the FFN instance (they differ in a
        heterogeneous bundle, e.g. H20 for attention and H800 for the FFN).
    attention_gpus : int
        GPUs in one Attention instance (the MODEL.md "Attention worker").
    ffn_gpus : int
        GPUs in the FFN instance (experts spread over them by expert parallelism; a dense
        MLP is split by tensor parallelism).
    attention_parallel : {"tp", "dp"}
        Tensor parallel (heads split, weights split) or data parallel (slots split, each GPU
        holds all attention weights) inside an Attention instance.
    link : {"network", "nvlink"}
        Path between Attention and FFN instances: the scale-out network (separate nodes,
        the default) or NVLink (both in one scale-up domain).
    """

    attention_gpu: GPUSpec
    ffn_gpu: GPUSpec
    attention_gpus: int = 1
    ffn_gpus: int = 8
    attention_parallel: Literal["tp", "dp"] = "tp"
    link: Literal["network", "nvlink"] = "network"

    def __post_init__(self) -> None:
        for name in ("attention_gpus", "ffn_gpus"):
            object.__setattr__(self, name,
                               _positive("deployment", name, getattr(self, name), integer=True))
        check_choice("deployment: attention_parallel", self.attention_parallel,
                     ATTENTION_PARALLEL)
        check_choice("deployment: link", self.link, LINKS)

    @property
    def heterogeneous(self) -> bool:
        """True if Attention and FFN run on different GPU types."""
        return self.attention_gpu.name != self.ffn_gpu.name

    @property
    def label(self) -> str:
        """``"h800"`` or ``"h20/h800"``."""
        if self.heterogeneous:
            return f"{self.attention_gpu.name}/{self.ffn_gpu.name}"
        return self.attention_gpu.name


_MODEL_NUMERIC = [f.name for f in fields(ModelSpec)
                  if f.name not in ("name", "attention", "weight_dtype", "kv_dtype",
                                    "activation_dtype", "display_name", "sources")]
_GPU_NUMERIC = ["memory_bytes", "hbm_bandwidth", "nvlink_bandwidth",
                "network_bandwidth", "link_latency", "gpus_per_node"]


def _check_sources(owner: str, data: dict, numeric: list[str]) -> dict:
    sources = data.get("sources")
    if not isinstance(sources, dict):
        raise AfdInputError(f"{owner}: a preset needs a 'sources' object citing every number")
    missing = [k for k in numeric if k in data and data[k] not in (0, None)
               and not str(sources.get(k, "")).strip()]
    if missing:
        raise AfdInputError(f"{owner}: no source cited for {', '.join(missing)}")
    return sources


def model_from_dict(data: dict, *, source: str = "model preset") -> ModelSpec:
    """Build a :class:`ModelSpec` from a preset's JSON object.

    Keys are the dataclass fields; keys starting with ``_`` are ignored. Every non-zero
    numeric field must be cited in ``sources``.

    Raises
    ------
    AfdInputError
        On unknown keys, missing citations or an invalid shape.
    """
    if not isinstance(data, dict):
        raise AfdInputError(f"{source}: expected a JSON object")
    known = {f.name for f in fields(ModelSpec)}
    unknown = sorted(k for k in data if k not in known and not k.startswith("_"))
    if unknown:
        raise AfdInputError(f"{source}: unknown key(s) {', '.join(unknown)}")
    _check_sources(source, data, _MODEL_NUMERIC)
    try:
        return ModelSpec(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise AfdInputError(f"{source}: {exc}") from None


def gpu_from_dict(data: dict, *, source: str = "hardware preset") -> GPUSpec:
    """Build a :class:`GPUSpec` from a preset's JSON object (see :func:`model_from_dict`)."""
    if not isinstance(data, dict):
        raise AfdInputError(f"{source}: expected a JSON object")
    known = {f.name for f in fields(GPUSpec)}
    unknown = sorted(k for k in data if k not in known and not k.startswith("_"))
    if unknown:
        raise AfdInputError(f"{source}: unknown key(s) {', '.join(unknown)}")
    sources = _check_sources(source, data, _GPU_NUMERIC)
    flops = data.get("flops", {})
    if isinstance(flops, dict):
        missing = [f"flops.{k}" for k in flops if not str(sources.get(f"flops.{k}", "")).strip()
                   and not str(sources.get("flops", "")).strip()]
        if missing:
            raise AfdInputError(f"{source}: no source cited for {', '.join(missing)}")
    try:
        return GPUSpec(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise AfdInputError(f"{source}: {exc}") from None
