"""Reading measured kernel latencies (NVIDIA AIConfigurator's performance database).

The tables are third-party data (Apache-2.0) and are never copied into this repository:
they are read from the folder named by the environment variable ``AFDLIB_KERNELDB_DIR``,
laid out as ``<root>/<system>/<table>.csv.gz`` (systems ``h100_sxm``, ``h200_sxm``,
``b200_sxm``, ``h20_3e``). Latencies in the tables are milliseconds (microseconds for
DeepEP) per call of one op, for one layer on one GPU; the functions that extract points
for a model return **seconds per layer per GPU**.

Point extractors (one per role):

* :func:`attention_points` -- decode attention: KV tokens read ``T``, requests ``B``,
  latency. GQA/MHA from ``generation_attention_perf`` (``T = B * (step + 1)``), MLA from
  ``mla_generation_module_perf`` (the whole block with projections, ``T = B * step``) or,
  where that table is absent, the kernel-only ``generation_mla_perf``.
* :func:`moe_points` -- routed experts of one MoE layer against tokens entering the
  expert-parallel group (``moe_perf``, balanced routing unless asked otherwise).
* :func:`deepep_points` -- DeepEP low-latency dispatch plus combine against tokens per
  rank (``wideep_deepep_ll_perf``).
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from afdlib.costs.specs import ModelSpec
from afdlib.errors import AfdInputError

__all__ = ["ENV_VAR", "SYSTEMS", "kerneldb_dir", "read_table", "Points", "attention_points",
           "moe_points", "deepep_points", "ATTRIBUTION"]

ENV_VAR = "AFDLIB_KERNELDB_DIR"
SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "h20_3e")
ATTRIBUTION = ("NVIDIA AIConfigurator performance database "
               "(https://github.com/ai-dynamo/aiconfigurator, Apache-2.0, "
               "commit 095f58a51c4ca8e61b66ec108d86f223f8d559ce)")

_NUMERIC = {"batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "window_size",
            "beam_width", "step", "latency", "tp_size", "num_tokens", "hidden_size",
            "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size", "node_num",
            "num_token", "num_topk", "combine_avg_t_us", "dispatch_avg_t_us", "num_gpus",
            "message_size"}


def kerneldb_dir(root: str | os.PathLike | None = None) -> Path:
    """The kernel-table folder: ``root`` if given, else ``$AFDLIB_KERNELDB_DIR``.

    Raises
    ------
    AfdInputError
        If the variable is unset or the folder does not exist.
    """
    if root is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise AfdInputError(f"{ENV_VAR} is not set: point it at a local copy of the "
                                "measured kernel tables (one folder per system)")
    path = Path(root)
    if not path.is_dir():
        raise AfdInputError(f"{ENV_VAR}: {path} is not a folder")
    return path


@lru_cache(maxsize=32)
def _read(path: str) -> dict:
    try:
        with gzip.open(path, "rt", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except FileNotFoundError:
        raise AfdInputError(f"{path}: no such kernel table") from None
    except (OSError, EOFError, csv.Error) as exc:
        raise AfdInputError(f"{path}: cannot read kernel table ({exc})") from None
    if not rows:
        raise AfdInputError(f"{path}: empty kernel table")
    out = {}
    for name in header:
        col = [r[name] for r in rows]
        if name in _NUMERIC:
            out[name] = np.array([float(v) if v not in ("", None) else np.nan for v in col])
        else:
            out[name] = np.array(col, dtype=object)
    return out


def read_table(system: str, table: str, *, root=None) -> dict[str, np.ndarray]:
    """All columns of ``<root>/<system>/<table>.csv.gz`` (numeric ones as float arrays).

    Raises
    ------
    AfdInputError
        For an unknown system, a missing folder or file, or an unreadable table.
    """
    if system not in SYSTEMS:
        raise AfdInputError(f"unknown kernel-table system {system!r}; known: {', '.join(SYSTEMS)}")
    path = kerneldb_dir(root) / system / f"{table}.csv.gz"
    return _read(str(path))


def _mask(table: dict, **equal) -> np.ndarray:
    n = len(next(iter(table.values())))
    m = np.ones(n, dtype=bool)
    for key, value in equal.items():
        if key not in table:
            raise AfdInputError(f"kernel table has no column {key!r}")
        col = table[key]
        m &= (col == value) if col.dtype == object else np.isclose(col, float(value))
    return m


@dataclass(frozen=True)
class Points:
    """Measured points of one op configuration (seconds per layer per GPU).

    Attributes
    ----------
    x : dict of str -> ndarray
        Explanatory variables (e.g. ``{"T": ..., "B": ...}`` or ``{"N": ...}``).
    latency : ndarray
        Seconds per call, one layer on one GPU.
    table : str
        Source table.
    config : dict
        The filter that selected the rows.
    """

    x: dict
    latency: np.ndarray
    table: str
    config: dict

    def __len__(self) -> int:
        return len(self.latency)


def _kv_name(model: ModelSpec, system: str) -> str:
    if model.kv_dtype == "fp8":
        return "fp8"
    # TensorRT-LLM tables say bfloat16, the SGLang H20-3e tables float16 (same 2 bytes)
    return "float16" if system == "h20_3e" else "bfloat16"


def _nonempty(points: Points, what: str, system: str) -> Points:
    if len(points) == 0:
        raise AfdInputError(f"{system}: no measured {what} rows for {points.config}")
    return points


def attention_points(system: str, model: ModelSpec, *, tp: int = 1, root=None) -> Points:
    """Decode-attention latency per layer on one GPU holding ``1/tp`` of the heads.

    Returns points with ``x = {"T": KV tokens read, "B": requests}`` and a config whose
    ``includes_projections`` says whether the op covers the Q/KV/O projections (the MLA
    module table does; the kernel tables do not).

    Raises
    ------
    AfdInputError
        If no table or no row matches the model's shape on this system.
    """
    kv = _kv_name(model, system)
    if model.attention == "MLA":
        if tp != 1:
            raise AfdInputError("MLA attention is fitted per GPU with all heads (data "
                                "parallel); tp must be 1")
        if system != "h20_3e":
            t = read_table(system, "mla_generation_module_perf", root=root)
            cfg = {"model": "deepseek-ai/DeepSeek-V3", "num_heads": model.num_heads,
                   "kv_cache_dtype": kv, "tp_size": 1,
                   "gemm_type": "fp8_block" if model.weight_dtype == "fp8" else "bfloat16"}
            m = _mask(t, **cfg)
            b, s = t["batch_size"][m], t["step"][m]
            pts = Points({"T": b * s, "B": b}, t["latency"][m] * 1e-3,
                         "mla_generation_module_perf", {**cfg, "includes_projections": True})
            return _nonempty(pts, "MLA module", system)
        t = read_table(system, "generation_mla_perf", root=root)
        cfg = {"num_heads": model.num_heads, "kv_cache_dtype": kv, "tp_size": 1}
        m = _mask(t, **cfg)
        b, s = t["batch_size"][m], t["step"][m]
        pts = Points({"T": b * (s + 1), "B": b}, t["latency"][m] * 1e-3, "generation_mla_perf",
                     {**cfg, "includes_projections": False})
        return _nonempty(pts, "MLA kernel", system)
    if model.num_heads % tp:
        raise AfdInputError(f"tp={tp} does not divide the {model.num_heads} heads of {model.name}")
    t = read_table(system, "generation_attention_perf", root=root)
    cfg = {"num_heads": model.num_heads // tp,
           "num_key_value_heads": max(1, model.num_kv_heads // tp),
           "head_dim": model.head_dim, "kv_cache_dtype": kv}
    m = _mask(t, **cfg)
    if "window_size" in t:
        w = t["window_size"]
        m &= np.isnan(w) | (w == 0)
    b, s = t["batch_size"][m], t["step"][m]
    pts = Points({"T": b * (s + 1), "B": b}, t["latency"][m] * 1e-3, "generation_attention_perf",
                 {**cfg, "includes_projections": False})
    return _nonempty(pts, "attention", system)


def moe_points(system: str, model: ModelSpec, *, ep: int, distribution: str = "balanced",
               root=None) -> Points:
    """Routed-expert latency of one MoE layer on the most loaded GPU of an EP group.

    ``x = {"N": tokens entering the expert-parallel group}``.
    """
    if not model.is_moe:
        raise AfdInputError(f"{model.name} has no MoE layers")
    t = read_table(system, "moe_perf", root=root)
    dtype = "fp8_block" if model.weight_dtype == "fp8" else "bfloat16"
    cfg = {"moe_dtype": dtype, "hidden_size": model.hidden_size,
           "inter_size": model.moe_intermediate_size, "topk": model.experts_per_token,
           "num_experts": model.num_experts, "moe_tp_size": 1, "moe_ep_size": ep,
           "distribution": distribution}
    m = _mask(t, **cfg)
    order = np.argsort(t["num_tokens"][m], kind="stable")
    pts = Points({"N": t["num_tokens"][m][order]}, t["latency"][m][order] * 1e-3, "moe_perf", cfg)
    return _nonempty(pts, "MoE", system)


def deepep_points(system: str, model: ModelSpec, *, root=None) -> Points:
    """DeepEP low-latency dispatch + combine per layer against tokens per rank (8 GPUs)."""
    t = read_table(system, "wideep_deepep_ll_perf", root=root)
    cfg = {"hidden_size": model.hidden_size, "num_topk": model.experts_per_token,
           "num_experts": model.num_experts, "node_num": 1}
    m = _mask(t, **cfg)
    order = np.argsort(t["num_token"][m], kind="stable")
    lat = (t["dispatch_avg_t_us"][m] + t["combine_avg_t_us"][m])[order] * 1e-6
    pts = Points({"tokens": t["num_token"][m][order]}, lat, "wideep_deepep_ll_perf", cfg)
    return _nonempty(pts, "DeepEP", system)
