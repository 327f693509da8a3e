"""Reading measured kernel latencies (NVIDIA AIConfigurator's performance database).

The tables are third-party data (Apache-2.0) and are never copied into this repository.
:mod:`afdlib.fetch` supplies them: from the folder named by ``AFDLIB_KERNELDB_DIR`` when it
holds them, laid out as ``<root>/<system>/<table>.parquet`` (the upstream files) or
``<root>/<system>/<table>.csv.gz`` (gzipped CSV copies with the same rows, columns and
values), else downloaded once from their commit-pinned addresses (parquet) into a cache,
every file checked against a pinned SHA-256. Systems: ``h100_sxm``, ``h200_sxm``,
``b200_sxm`` (downloadable) and ``h20_3e``, which is **local-only**: no upstream commit
holding its SGLang tables could be confirmed, so it is read only from
``AFDLIB_KERNELDB_DIR``. Latencies in the tables are milliseconds (microseconds for DeepEP)
per call of one op, for one layer on one GPU; the functions that extract points for a model
return **seconds per layer per GPU**.

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
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from afdlib import fetch
from afdlib.costs.specs import ModelSpec
from afdlib.errors import AfdInputError, MissingMeasurement

__all__ = ["ENV_VAR", "SYSTEMS", "LOCAL_ONLY", "local_kerneldb_dir", "table_names",
           "table_path", "system_file", "read_table", "Points", "attention_points",
           "moe_points", "deepep_points", "ATTRIBUTION"]

ENV_VAR = fetch.KERNELDB_ENV
SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "h20_3e")
#: Systems without a public commit-pinned address: read only from ``AFDLIB_KERNELDB_DIR``.
LOCAL_ONLY = ("h20_3e",)
ATTRIBUTION = ("NVIDIA AIConfigurator performance database "
               "(https://github.com/ai-dynamo/aiconfigurator, Apache-2.0, "
               f"commit {fetch.KERNELDB_COMMIT})")

_NUMERIC = {"batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "window_size",
            "beam_width", "step", "latency", "tp_size", "num_tokens", "hidden_size",
            "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size", "node_num",
            "num_token", "num_topk", "combine_avg_t_us", "dispatch_avg_t_us", "num_gpus",
            "message_size", "combine_bandwidth_gbps", "dispatch_bandwidth_gbps"}


def local_kerneldb_dir(root: str | os.PathLike | None = None) -> Path | None:
    """The local kernel-table folder: ``root`` if given, else ``$AFDLIB_KERNELDB_DIR``, else
    None (tables are then downloaded).

    Raises
    ------
    AfdInputError
        If the folder named does not exist.
    """
    return fetch.local_dir("kerneldb", root)


def _check_system(system: str) -> None:
    if system not in SYSTEMS:
        raise AfdInputError(f"unknown kernel-table system {system!r}; known: {', '.join(SYSTEMS)}")


def table_names(system: str) -> list[str]:
    """The measured tables known for a system (its registry entries, without the spec file)."""
    _check_system(system)
    return [n.rsplit("/", 1)[1] for n in fetch.names(f"kerneldb/{system}")
            if not n.endswith("/system")]


def table_path(system: str, table: str, *, root=None, download: bool = True) -> Path:
    """Path of a verified copy of one table (parquet or csv.gz), fetching it if needed.

    Parameters
    ----------
    system, table : str
        E.g. ``"h200_sxm"``, ``"moe_perf"``.
    root : path-like, optional
        Read only from this folder (laid out like ``AFDLIB_KERNELDB_DIR``), never download.
    download : bool
        Whether a download may happen (see :func:`afdlib.fetch.fetch`).

    Raises
    ------
    MissingMeasurement
        For a table the system does not have or that is not in ``root`` ("no such kernel
        table").
    AfdInputError
        For an unknown system, a local copy with another hash, a local-only system
        without ``AFDLIB_KERNELDB_DIR``, or a failed download.
    """
    _check_system(system)
    name = f"kerneldb/{system}/{table}"
    if name not in fetch.REGISTRY or table == "system":
        raise MissingMeasurement(f"{system}/{table}: no such kernel table (known for {system}: "
                            f"{', '.join(table_names(system))})")
    if root is not None:
        folder = local_kerneldb_dir(root)
        found = fetch.find_local(fetch.entry(name), folder)
        if found is None:
            raise MissingMeasurement(f"{folder / system / table}.csv.gz: no such kernel table "
                                "(nor .parquet)")
        return found
    return fetch.fetch(name, download=download)


def system_file(system: str, *, download: bool = True) -> Path:
    """Path of a system's AIConfigurator spec file (``<system>_system.yaml``), verified."""
    _check_system(system)
    return fetch.fetch(f"kerneldb/{system}/system", download=download)


def _columns_from_csv(path: str) -> tuple[list[str], dict[str, list]]:
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = reader.fieldnames or []
    return header, {name: [r[name] for r in rows] for name in header}


def _columns_from_parquet(path: str) -> tuple[list[str], dict[str, list]]:
    try:
        with warnings.catch_warnings():  # its import may warn about pandas options it probes
            warnings.simplefilter("ignore")
            import fastparquet  # imported lazily: only the parquet form needs it
    except ImportError:
        raise AfdInputError(f"{os.path.basename(path)}: reading a parquet kernel table needs "
                            "fastparquet (pip install 'afdlib[kerneldb]'), or point "
                            "AFDLIB_KERNELDB_DIR at a local copy of the CSV tables") from None

    frame = fastparquet.ParquetFile(path).to_pandas()
    header = [str(c) for c in frame.columns]
    out = {}
    for name in header:
        col = frame[name]
        if name in _NUMERIC:
            out[name] = col.to_numpy(dtype=float, na_value=np.nan)
        else:  # text as the CSV form holds it: missing values are empty strings
            out[name] = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                         for v in col.to_numpy(dtype=object)]
    return header, out


@lru_cache(maxsize=32)
def _read(path: str) -> dict:
    """All columns of a kernel table file (``.csv.gz`` or ``.parquet``), numeric ones as
    float arrays (NaN where empty), the others as object arrays of strings."""
    parquet = path.endswith(".parquet")
    try:
        header, columns = (_columns_from_parquet if parquet else _columns_from_csv)(path)
    except FileNotFoundError:
        raise AfdInputError(f"{path}: no such kernel table") from None
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise AfdInputError(f"{path}: cannot read kernel table ({exc})") from None
    except Exception as exc:  # a parquet reader's errors come in many types
        if not parquet:
            raise
        first = " ".join(str(exc).split())[:200]
        raise AfdInputError(f"{path}: cannot read kernel table ({type(exc).__name__}: "
                            f"{first})") from None
    if not header or len(columns[header[0]]) == 0:
        raise AfdInputError(f"{path}: empty kernel table")
    out = {}
    for name in header:
        col = columns[name]
        if name in _NUMERIC:
            if isinstance(col, np.ndarray):
                out[name] = col.astype(float)
            else:
                out[name] = np.array([float(v) if v not in ("", None) else np.nan for v in col])
        else:
            out[name] = np.array(col, dtype=object)
    return out


def read_table(system: str, table: str, *, root=None) -> dict[str, np.ndarray]:
    """All columns of one measured table of a system (numeric ones as float arrays).

    The table comes from :func:`table_path`: ``root`` or ``AFDLIB_KERNELDB_DIR`` first
    (parquet or csv.gz), else a verified download. Both forms give the same arrays.

    Raises
    ------
    AfdInputError
        For an unknown system or table, a missing or unreadable file, a hash that differs,
        or a failed download.
    """
    return _read(str(table_path(system, table, root=root)))


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
        raise MissingMeasurement(f"{system}: no measured {what} rows for {points.config}")
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
