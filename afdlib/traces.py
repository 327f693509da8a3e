"""Request traces: readers for public trace formats and a data layer for the public traces.

A trace is a table of requests with a prompt length and an output length in tokens. This
module reads the formats of the public traces and a plain CSV, validates every value
(naming file, line and field of anything wrong), and fetches the four public traces the
book uses through :mod:`afdlib.fetch`: from their commit-pinned addresses with a pinned
SHA-256 into a cache, reading a local copy first when the environment variable
``AFDLIB_DATA_DIR`` names a folder laid out as
``<AFDLIB_DATA_DIR>/<trace name>/<original file name>``.

Formats (``format=``):

``azure``
    Azure LLM inference traces (2023 and 2024): CSV with ``TIMESTAMP, ContextTokens,
    GeneratedTokens``.
``mooncake``
    Mooncake traces: JSON lines with ``input_length`` and ``output_length``.
``sharegpt``
    The processed ShareGPT statistics of Sarathi-Serve: CSV with ``num_prefill_tokens,
    num_decode_tokens``.
``burstgpt``
    BurstGPT: CSV with ``Request tokens, Response tokens``.
``csv``
    Any CSV with a header holding ``prompt_tokens`` and ``output_tokens``.
``auto``
    Pick by extension (``.jsonl`` -> mooncake) and by the CSV header.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afdlib import fetch
from afdlib.errors import AfdInputError, TraceFormatError

__all__ = [
    "Trace",
    "TraceSource",
    "PUBLIC_TRACES",
    "FORMATS",
    "read_trace",
    "load_trace",
    "trace_path",
    "local_trace_dir",
]

DATA_DIR_ENV = fetch.TRACES_ENV
FORMATS = ("auto", "azure", "mooncake", "sharegpt", "burstgpt", "csv")

# CSV formats: (prompt column, output column)
_CSV_COLUMNS = {
    "azure": ("ContextTokens", "GeneratedTokens"),
    "sharegpt": ("num_prefill_tokens", "num_decode_tokens"),
    "burstgpt": ("Request tokens", "Response tokens"),
    "csv": ("prompt_tokens", "output_tokens"),
}
_JSON_KEYS = {"mooncake": ("input_length", "output_length")}


@dataclass(frozen=True, eq=False)
class Trace:
    """Prompt and output token counts of the requests of a trace, in file order.

    Attributes
    ----------
    prompt_tokens : ndarray of int64
        Prompt (context) length of each request (tokens), >= 0.
    output_tokens : ndarray of int64
        Output tokens of each request, >= 0 (0: a request without decode).
    name : str
        A short name (the public trace's name or the file name).
    format : str
        The format the file was read as.
    """

    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    name: str = "trace"
    format: str = "csv"
    source: str = field(default="", repr=False)

    def __len__(self) -> int:
        return int(self.prompt_tokens.size)


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TraceFormatError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise TraceFormatError("is a directory, not a trace file", path=str(path)) from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read ({exc.strerror})", path=str(path)) from None
    if not raw.strip():
        raise TraceFormatError("file is empty", path=str(path))
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise TraceFormatError(f"binary data, not a text trace (NUL byte at offset {nul})",
                               path=str(path))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(
            f"binary data, not a UTF-8 text trace (undecodable byte at offset {exc.start})",
            path=str(path)) from None


def _parse_count(text, *, path: str, line: int, name: str) -> int:
    """A token count from a CSV cell or a JSON value: a non-negative integer."""
    if isinstance(text, bool) or text is None:
        raise TraceFormatError(f"missing value ({text!r})" if text is None else
                               f"not a token count ({text!r})", path=path, line=line, field=name)
    if isinstance(text, int):
        value = text
    else:
        if isinstance(text, float):
            number = text
        else:
            s = str(text).strip()
            if not s:
                raise TraceFormatError("missing value", path=path, line=line, field=name)
            try:
                value = int(s)
                number = None
            except ValueError:
                try:
                    number = float(s)
                except ValueError:
                    raise TraceFormatError(f"not a number ({s!r})", path=path, line=line,
                                           field=name) from None
        if number is not None:
            if math.isnan(number):
                raise TraceFormatError("value is NaN", path=path, line=line, field=name)
            if math.isinf(number):
                raise TraceFormatError("value is infinite", path=path, line=line, field=name)
            if number != int(number):
                raise TraceFormatError(f"not an integer ({number!r})", path=path, line=line,
                                       field=name)
            value = int(number)
    if value < 0:
        raise TraceFormatError(f"negative token count ({value})", path=path, line=line,
                               field=name)
    return value


def _read_csv(text: str, path: str, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    prompt_col, output_col = _CSV_COLUMNS[fmt]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise TraceFormatError(f"cannot read the CSV header ({exc})", path=path, line=1) from None
    header = [h.strip() for h in header]
    columns = {}
    for col in (prompt_col, output_col):
        if col not in header:
            shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
            raise TraceFormatError(f"missing column '{col}' for format '{fmt}' (header: {shown})",
                                   path=path, line=1)
        columns[col] = header.index(col)
    ip, io_ = columns[prompt_col], columns[output_col]
    need = max(ip, io_) + 1
    prompts: list[int] = []
    outputs: list[int] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < need:
                raise TraceFormatError(f"row has {len(row)} fields, the header has {len(header)}"
                                       " (truncated row?)", path=path, line=line)
            prompts.append(_parse_count(row[ip], path=path, line=line, name=prompt_col))
            outputs.append(_parse_count(row[io_], path=path, line=line, name=output_col))
    except csv.Error as exc:
        raise TraceFormatError(f"malformed CSV ({exc})", path=path,
                               line=reader.line_num) from None
    return np.array(prompts, dtype=np.int64), np.array(outputs, dtype=np.int64)


def _read_jsonl(text: str, path: str, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    prompt_key, output_key = _JSON_KEYS[fmt]
    prompts: list[int] = []
    outputs: list[int] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceFormatError(f"invalid JSON ({exc.msg} at column {exc.colno}; truncated "
                                   "line?)", path=path, line=line_no) from None
        if not isinstance(record, dict):
            raise TraceFormatError(f"expected a JSON object, got {type(record).__name__}",
                                   path=path, line=line_no)
        for key in (prompt_key, output_key):
            if key not in record:
                raise TraceFormatError("missing field", path=path, line=line_no, field=key)
        for key, out in ((prompt_key, prompts), (output_key, outputs)):
            value = record[key]
            if isinstance(value, str):
                raise TraceFormatError(f"expected a number, got the string {value!r}",
                                       path=path, line=line_no, field=key)
            out.append(_parse_count(value, path=path, line=line_no, name=key))
    return np.array(prompts, dtype=np.int64), np.array(outputs, dtype=np.int64)


def _detect_format(path: Path, text: str) -> str:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or first.lstrip().startswith("{"):
        return "mooncake"
    header = {h.strip() for h in next(csv.reader([first]), [])}
    for fmt in ("azure", "sharegpt", "burstgpt", "csv"):
        if set(_CSV_COLUMNS[fmt]) <= header:
            return fmt
    known = "; ".join(f"{fmt}: {', '.join(cols)}" for fmt, cols in _CSV_COLUMNS.items())
    raise TraceFormatError(f"unrecognized trace format (expected JSON lines with input_length, "
                           f"output_length, or a CSV header with {known})", path=str(path),
                           line=1)


def read_trace(path: str | os.PathLike, format: str = "auto", *, name: str | None = None) -> Trace:
    """Read and validate a request trace file.

    Parameters
    ----------
    path : str or path-like
        The trace file.
    format : {"auto", "azure", "mooncake", "sharegpt", "burstgpt", "csv"}
        File format; ``auto`` picks by extension and header.
    name : str, optional
        Short name for the trace (default: the file's stem).

    Returns
    -------
    Trace

    Raises
    ------
    TraceFormatError
        If the file is missing, empty, binary, has no data rows, lacks a column, or holds a
        value that is missing, negative, non-integer or NaN, naming file, line and field.
    """
    path = Path(path)
    if format not in FORMATS:
        raise AfdInputError(f"unknown trace format {format!r} (choose from {', '.join(FORMATS)})")
    text = _read_text(path)
    fmt = _detect_format(path, text) if format == "auto" else format
    reader = _read_jsonl if fmt in _JSON_KEYS else _read_csv
    prompt, output = reader(text, str(path), fmt)
    if prompt.size == 0:
        raise TraceFormatError("no requests (the file has no data rows)", path=str(path))
    return Trace(prompt, output, name=name or path.stem, format=fmt, source=str(path))


# ---------------------------------------------------------------------------
# The public traces
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSource:
    """A public trace: its file, format and credit (address and hash: :mod:`afdlib.fetch`).

    Attributes
    ----------
    name : str
        Short name, also the subfolder of ``AFDLIB_DATA_DIR``.
    filename : str
        The original file name.
    format : str
        Its format for :func:`read_trace`.
    license : str
        The data's license.
    citation : str
        Whom to credit.
    """

    name: str
    filename: str
    format: str
    license: str
    citation: str

    @property
    def url(self) -> str:
        """Commit-pinned public address (the registry entry ``traces/<name>``)."""
        return fetch.entry(f"traces/{self.name}").url

    @property
    def sha256(self) -> str:
        """Pinned SHA-256 of the file at :attr:`url`."""
        return fetch.entry(f"traces/{self.name}").sha256


_SPLITWISE = ("Patel et al., Splitwise: Efficient Generative LLM Inference Using Phase "
              "Splitting, ISCA 2024; Azure Public Dataset (AzureLLMInferenceTrace 2023)")

PUBLIC_TRACES: dict[str, TraceSource] = {
    s.name: s
    for s in (
        TraceSource("azure2023_code", "AzureLLMInferenceTrace_code.csv", "azure", "CC-BY-4.0",
                    _SPLITWISE),
        TraceSource("azure2023_conv", "AzureLLMInferenceTrace_conv.csv", "azure", "CC-BY-4.0",
                    _SPLITWISE),
        TraceSource(
            "mooncake_conversation", "conversation_trace.jsonl", "mooncake", "Apache-2.0",
            "Qin et al., Mooncake: A KVCache-centric Disaggregated Architecture for LLM "
            "Serving, FAST 2025 (kvcache-ai/Mooncake)"),
        TraceSource(
            "sharegpt_8k", "sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "sharegpt",
            "Apache-2.0 (repository); ShareGPT conversations",
            "Agrawal et al., Taming Throughput-Latency Tradeoff in LLM Inference with "
            "Sarathi-Serve, OSDI 2024 (microsoft/sarathi-serve); ShareGPT, Llama-2 tokenizer"),
    )
}


def local_trace_dir() -> Path | None:
    """The local trace folder named by ``AFDLIB_DATA_DIR``, or None when unset.

    Raises
    ------
    AfdInputError
        If the variable names something that is not a folder.
    """
    return fetch.local_dir("traces")


def trace_path(name: str, *, download: bool = True) -> Path:
    """Local path of a public trace, verified against its pinned SHA-256.

    Looks in ``$AFDLIB_DATA_DIR/<name>/<file>`` (then ``$AFDLIB_DATA_DIR/<file>``) first,
    then in the download cache; otherwise downloads the file (once), see
    :func:`afdlib.fetch.fetch`.

    Parameters
    ----------
    name : str
        One of :data:`PUBLIC_TRACES`.
    download : bool
        Whether a download may happen when there is no local copy.

    Raises
    ------
    AfdInputError
        For an unknown name, a local copy whose hash differs, no copy and no download, or a
        download that fails (one line naming ``AFDLIB_DATA_DIR``).
    """
    if name not in PUBLIC_TRACES:
        raise AfdInputError(f"unknown public trace {name!r} (known: "
                            f"{', '.join(PUBLIC_TRACES)})")
    return fetch.fetch(f"traces/{name}", download=download)


def load_trace(name_or_path: str | os.PathLike, format: str = "auto") -> Trace:
    """Load a public trace by name, or any trace file by path.

    Parameters
    ----------
    name_or_path : str or path-like
        A key of :data:`PUBLIC_TRACES` (e.g. ``"azure2023_conv"``) or a file path.
    format : str
        Format of a file given by path (see :func:`read_trace`).

    Returns
    -------
    Trace
    """
    key = str(name_or_path)
    if key in PUBLIC_TRACES and not Path(key).exists():
        src = PUBLIC_TRACES[key]
        return read_trace(trace_path(key), src.format, name=key)
    return read_trace(name_or_path, format)
