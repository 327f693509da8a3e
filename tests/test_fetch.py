"""The download layer: local folder first, then a verified download into a cache.

The real download path (pooch over HTTP) is exercised against a server on 127.0.0.1 that
serves a mirror laid out like the shared data folder (``AFDLIB_DATA_URL_BASE``), with the
data variables unset: traces as they are upstream, kernel tables as parquet converted here
from the CSV copies (their hashes pinned by the test). The browser branch (Pyodide) runs
against fake ``js`` and ``pyodide.http`` modules whose requests go to the same server.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import http.server
import json
import os
import shutil
import socket
import sys
import threading
import types
import urllib.error
import urllib.request
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from afdlib import fetch
from afdlib.costs import kerneldb, load_model
from afdlib.errors import AfdInputError
from afdlib.traces import PUBLIC_TRACES, load_trace, local_trace_dir, trace_path

EXPECTED_ROWS = {"azure2023_code": 8819, "azure2023_conv": 19366,
                 "mooncake_conversation": 12031, "sharegpt_8k": 30731}
SMALL_H200_TABLES = ("wideep_deepep_ll_perf", "mla_generation_module_perf", "generation_mla_perf",
                     "nccl_perf")
TRACE_TEXT = b"num_prefill_tokens,num_decode_tokens\n10,5\n20,7\n"


# ---------------------------------------------------------------------------
# a mirror on 127.0.0.1
# ---------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder served on 127.0.0.1; the data variables unset, a private cache."""
    root = tmp_path / "mirror"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(_Handler, directory=str(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    saved = {var: os.environ.get(var, "") for var in (fetch.TRACES_ENV, fetch.KERNELDB_ENV)}
    for var in (fetch.TRACES_ENV, fetch.KERNELDB_ENV, fetch.REGISTRY_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path / "cache"))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(fetch.URL_BASE_ENV, base)
    yield types.SimpleNamespace(root=root, base=base, requests=server.requests,
                                cache=tmp_path / "cache", saved=saved)
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _pin(monkeypatch, name: str, path: Path, **fields) -> fetch.DataFile:
    """Pin registry entry ``name`` to the bytes of ``path`` (for files the test made); local
    forms with the same bytes as upstream (the flat trace layout) follow."""
    old, sha = fetch.REGISTRY[name], fetch.sha256_of(path)
    alternates = tuple(replace(a, sha256=sha) if a.sha256 == old.sha256 else a
                       for a in old.alternates)
    entry = replace(old, sha256=sha, alternates=alternates, **fields)
    monkeypatch.setitem(fetch.REGISTRY, name, entry)
    return entry


def _serve_synthetic_trace(mirror, monkeypatch, content=TRACE_TEXT):
    name = "sharegpt_8k"
    path = mirror.root / "traces" / fetch.REGISTRY[f"traces/{name}"].path
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    _pin(monkeypatch, f"traces/{name}", path)
    return name, path


def _dead_address() -> str:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _to_parquet(csv_gz: Path, out: Path) -> None:
    """The CSV copy of a table as a parquet file, every value kept (floats and strings)."""
    import fastparquet
    import pandas as pd

    columns = kerneldb._read(str(csv_gz))
    frame = pd.DataFrame({k: (v if v.dtype != object else v.astype(str))
                          for k, v in columns.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    fastparquet.write(str(out), frame, compression="ZSTD", write_index=False)


def _assert_same_table(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        if a[key].dtype == object:
            assert (a[key] == b[key]).all(), key
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ---------------------------------------------------------------------------
# the real data, downloaded from the mirror
# ---------------------------------------------------------------------------


def _shared(mirror, var: str) -> Path:
    """The shared data folder the variable named before the mirror unset it (CI sets it)."""
    if not mirror.saved[var]:
        pytest.skip(f"{var} is not set (CI sets it to the shared data folder)")
    return Path(mirror.saved[var])


def test_public_traces_download_verify_cache_and_load(mirror):
    shared = _shared(mirror, fetch.TRACES_ENV)
    for name, src in PUBLIC_TRACES.items():
        copy = mirror.root / "traces" / name / src.filename
        copy.parent.mkdir(parents=True)
        shutil.copy(shared / name / src.filename, copy)  # served as they are upstream
    assert local_trace_dir() is None
    for name in PUBLIC_TRACES:
        trace = load_trace(name)
        assert len(trace) == EXPECTED_ROWS[name]
        cached = mirror.cache / "traces" / name / PUBLIC_TRACES[name].filename
        assert cached.is_file() and fetch.sha256_of(cached) == PUBLIC_TRACES[name].sha256
    assert sorted(mirror.requests) == sorted(f"/traces/{n}/{s.filename}"
                                             for n, s in PUBLIC_TRACES.items())
    assert trace_path("azure2023_code") == mirror.cache / "traces" / "azure2023_code" / \
        "AzureLLMInferenceTrace_code.csv"
    assert len(mirror.requests) == len(PUBLIC_TRACES)  # the cache answers, no new request


def test_kernel_tables_download_as_parquet_and_equal_the_csv(mirror, monkeypatch):
    shared = _shared(mirror, fetch.KERNELDB_ENV)
    for table in SMALL_H200_TABLES:
        name = f"kerneldb/h200_sxm/{table}"
        served = mirror.root / "kerneldb" / fetch.REGISTRY[name].path
        _to_parquet(shared / "h200_sxm" / f"{table}.csv.gz", served)
        _pin(monkeypatch, name, served)
    for table in SMALL_H200_TABLES:
        downloaded = kerneldb.read_table("h200_sxm", table)
        _assert_same_table(downloaded, kerneldb.read_table("h200_sxm", table, root=shared))
        assert (mirror.cache / "kerneldb" / "h200_sxm" / f"{table}.parquet").is_file()
    assert sorted(mirror.requests) == sorted(f"/kerneldb/h200_sxm/{t}.parquet"
                                             for t in SMALL_H200_TABLES)
    ds = load_model("deepseek-v3")
    got = kerneldb.deepep_points("h200_sxm", ds)
    want = kerneldb.deepep_points("h200_sxm", ds, root=shared)
    assert len(got) > 0
    np.testing.assert_array_equal(got.latency, want.latency)
    np.testing.assert_array_equal(got.x["tokens"], want.x["tokens"])


# ---------------------------------------------------------------------------
# the mechanism, on small files the test makes
# ---------------------------------------------------------------------------


def test_download_is_hash_checked_and_cached(mirror, monkeypatch):
    name, _ = _serve_synthetic_trace(mirror, monkeypatch)
    path = trace_path(name)
    assert path.read_bytes() == TRACE_TEXT
    assert path.is_relative_to(mirror.cache)
    assert load_trace(name).prompt_tokens.tolist() == [10, 20]
    assert mirror.requests == [f"/traces/{fetch.REGISTRY['traces/' + name].path}"]


def test_a_download_with_another_hash_is_refused_and_not_cached(mirror, monkeypatch):
    name, served = _serve_synthetic_trace(mirror, monkeypatch)
    served.write_bytes(TRACE_TEXT + b"30,9\n")  # the mirror now holds other bytes
    with pytest.raises(AfdInputError, match="downloaded file's SHA-256 differs") as info:
        trace_path(name)
    assert "\n" not in str(info.value)
    assert not any(mirror.cache.rglob("*.csv"))


def test_a_dead_server_gives_one_line_naming_the_variable(mirror, monkeypatch):
    name, _ = _serve_synthetic_trace(mirror, monkeypatch)
    monkeypatch.setenv(fetch.URL_BASE_ENV, _dead_address())
    with pytest.raises(AfdInputError, match="cannot connect: no network") as info:
        trace_path(name)
    message = str(info.value)
    assert "\n" not in message and "set AFDLIB_DATA_DIR to a folder holding" in message
    kernel = "kerneldb/h200_sxm/nccl_perf"
    with pytest.raises(AfdInputError, match="set AFDLIB_KERNELDB_DIR") as info:
        fetch.fetch(kernel)
    assert "\n" not in str(info.value) and kernel in str(info.value)


def test_a_missing_file_on_the_server_says_http_404(mirror, monkeypatch):
    with pytest.raises(AfdInputError, match="HTTP 404") as info:
        fetch.fetch("traces/azure2023_conv")
    assert "\n" not in str(info.value)


def test_the_local_folder_comes_first_and_a_modified_copy_is_refused(mirror, monkeypatch,
                                                                      tmp_path):
    name, served = _serve_synthetic_trace(mirror, monkeypatch)
    local = tmp_path / "local"
    copy = local / fetch.REGISTRY[f"traces/{name}"].path
    copy.parent.mkdir(parents=True)
    copy.write_bytes(TRACE_TEXT)
    monkeypatch.setenv(fetch.TRACES_ENV, str(local))
    assert trace_path(name) == copy
    assert mirror.requests == []
    copy.write_bytes(TRACE_TEXT + b"1,1\n")
    with pytest.raises(AfdInputError, match="differs from the pinned .* modified copy"):
        trace_path(name)
    flat = local / copy.name  # the flat layout <AFDLIB_DATA_DIR>/<file> is accepted too
    copy.unlink()
    flat.write_bytes(TRACE_TEXT)
    assert trace_path(name) == flat


def test_unknown_names_and_bad_folders_get_one_clear_line(monkeypatch, tmp_path):
    with pytest.raises(AfdInputError, match="unknown data file 'traces/nope'"):
        fetch.fetch("traces/nope")
    with pytest.raises(AfdInputError, match="unknown public trace 'nope'"):
        trace_path("nope")
    with pytest.raises(AfdInputError, match="h200_sxm/flash_perf: no such kernel table"):
        kerneldb.read_table("h200_sxm", "flash_perf")
    with pytest.raises(AfdInputError, match="unknown kernel-table system 'a100'"):
        kerneldb.read_table("a100", "moe_perf")
    with pytest.raises(AfdInputError, match="no such file sharegpt_8k/.* \\(traces/sharegpt_8k\\)"):
        fetch.fetch("traces/sharegpt_8k", root=tmp_path)
    monkeypatch.setenv(fetch.KERNELDB_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(AfdInputError, match="AFDLIB_KERNELDB_DIR: .* is not a folder"):
        kerneldb.read_table("h200_sxm", "moe_perf")


def test_h20_tables_are_local_only(monkeypatch, tmp_path):
    monkeypatch.delenv(fetch.KERNELDB_ENV, raising=False)
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path))
    assert "h20_3e" in kerneldb.LOCAL_ONLY
    assert fetch.REGISTRY["kerneldb/h20_3e/generation_attention_perf"].url is None
    with pytest.raises(AfdInputError, match="local-only .* set AFDLIB_KERNELDB_DIR to a "
                                            "folder holding h20_3e/generation_attention_perf"
                                            r"\.csv\.gz") as info:
        kerneldb.read_table("h20_3e", "generation_attention_perf")
    assert "\n" not in str(info.value)
    assert kerneldb.table_names("h20_3e") == ["generation_attention_perf", "generation_mla_perf"]


def test_downloads_off_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv(fetch.TRACES_ENV, raising=False)
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path))
    with pytest.raises(AfdInputError, match="downloads are off: set AFDLIB_DATA_DIR"):
        trace_path("sharegpt_8k", download=False)


def test_registry_override_file(mirror, monkeypatch, tmp_path):
    name = "traces/sharegpt_8k"
    served = mirror.root / "traces" / fetch.REGISTRY[name].path
    served.parent.mkdir(parents=True)
    served.write_bytes(TRACE_TEXT)
    override = tmp_path / "registry.json"
    override.write_text(json.dumps({name: {"sha256": fetch.sha256_of(served)}}))
    monkeypatch.setenv(fetch.REGISTRY_ENV, str(override))
    assert fetch.entry(name).sha256 == fetch.sha256_of(served)
    assert fetch.fetch(name).read_bytes() == TRACE_TEXT
    override.write_text(json.dumps({"traces/nope": {"sha256": "0" * 64}}))
    with pytest.raises(AfdInputError, match="AFDLIB_DATA_REGISTRY: .* unknown data file"):
        fetch.entry(name)
    override.write_text("{not json")
    with pytest.raises(AfdInputError, match="AFDLIB_DATA_REGISTRY: cannot read"):
        fetch.entry(name)
    override.write_text(json.dumps({name: {"sha256": "abc"}}))
    with pytest.raises(AfdInputError, match="must be .*64 hex digits"):
        fetch.entry(name)


def test_registry_matches_the_upstream_table_and_prefixes(monkeypatch):
    assert len(fetch.names("kerneldb/h200_sxm")) == 7  # six tables and the spec file
    assert fetch.names("traces") == [f"traces/{n}" for n in sorted(PUBLIC_TRACES)]
    for name, entry in fetch.REGISTRY.items():
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        if name.startswith("kerneldb/h20_3e/"):
            assert entry.url is None
        else:
            assert entry.url.startswith("https://raw.githubusercontent.com/")
            commit = entry.url.split("/")[5]
            assert len(commit) == 40  # commit-pinned
    moe = fetch.REGISTRY["kerneldb/b200_sxm/moe_perf"]
    assert moe.url.endswith("/systems/data/b200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet")
    assert moe.alternates[0].path == "b200_sxm/moe_perf.csv.gz"
    with pytest.raises(AfdInputError, match="unknown data file 'kerneldb/a100'"):
        asyncio.run(fetch.prefetch("kerneldb/a100"))


def test_local_csv_copies_are_checked_against_their_own_hash(tmp_path):
    table = tmp_path / "h200_sxm" / "nccl_perf.csv.gz"
    table.parent.mkdir()
    with gzip.open(table, "wt") as fh:
        fh.write("num_gpus,message_size,latency\n8,1024,0.5\n")
    with pytest.raises(AfdInputError, match="nccl_perf.csv.gz: SHA-256 .* differs"):
        kerneldb.read_table("h200_sxm", "nccl_perf", root=tmp_path)
    table.unlink()
    with pytest.raises(AfdInputError, match="no such kernel table"):
        kerneldb.read_table("h200_sxm", "nccl_perf", root=tmp_path)


def test_prefetch_outside_the_browser_is_fetch(mirror, monkeypatch):
    name, _ = _serve_synthetic_trace(mirror, monkeypatch)
    paths = asyncio.run(fetch.prefetch(f"traces/{name}"))
    assert [p.read_bytes() for p in paths] == [TRACE_TEXT]


# ---------------------------------------------------------------------------
# the browser branch (Pyodide), with fake js and pyodide.http modules
# ---------------------------------------------------------------------------


class _FakeBuffer:
    def __init__(self, data: bytes):
        self._data = data

    def to_bytes(self) -> bytes:
        return self._data


class _FakeXMLHttpRequest:
    """A synchronous XMLHttpRequest as Pyodide's ``js`` module shows it; the request goes
    to the URL with urllib. ``worker = False`` acts like a window's main thread, which
    refuses ``responseType`` on a synchronous request."""

    worker = True

    @classmethod
    def new(cls):
        return cls()

    def __init__(self):
        self._type = ""
        self.mime = None
        self.status = 0

    def open(self, method, url, is_async):
        assert method == "GET" and is_async is False
        self.url = url

    @property
    def responseType(self):
        return self._type

    @responseType.setter
    def responseType(self, value):
        if not self.worker:
            raise RuntimeError("InvalidAccessError: synchronous requests in a window")
        self._type = value

    def overrideMimeType(self, mime):
        self.mime = mime

    def send(self, body):
        try:
            with urllib.request.urlopen(self.url, timeout=10) as response:
                self.status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            self.status, data = exc.code, b""
        except urllib.error.URLError:
            raise RuntimeError("NetworkError: A network error occurred.") from None
        if self._type == "arraybuffer":
            self.response = _FakeBuffer(data)
        else:
            assert self.mime == "text/plain; charset=x-user-defined"
            # the x-user-defined decoder: bytes 0x80-0xFF become U+F780-U+F7FF
            self.responseText = "".join(chr(b) if b < 0x80 else chr(0xF700 + b) for b in data)


class _FakeFetchResponse:
    def __init__(self, status: int, data: bytes):
        self.status, self.ok, self._data = status, 200 <= status < 300, data

    async def bytes(self) -> bytes:
        return self._data


async def _fake_pyfetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return _FakeFetchResponse(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return _FakeFetchResponse(exc.code, b"")
    except urllib.error.URLError:
        raise OSError("TypeError: NetworkError when attempting to fetch resource.") from None


@pytest.fixture
def browser(monkeypatch):
    """Pretend to be Pyodide: sys.platform 'emscripten', fake js and pyodide.http."""
    js = types.ModuleType("js")
    js.XMLHttpRequest = _FakeXMLHttpRequest
    pyodide = types.ModuleType("pyodide")
    pyodide_http = types.ModuleType("pyodide.http")
    pyodide_http.pyfetch = _fake_pyfetch
    pyodide.http = pyodide_http
    monkeypatch.setitem(sys.modules, "js", js)
    monkeypatch.setitem(sys.modules, "pyodide", pyodide)
    monkeypatch.setitem(sys.modules, "pyodide.http", pyodide_http)
    monkeypatch.setattr(_FakeXMLHttpRequest, "worker", True)
    monkeypatch.setattr(sys, "platform", "emscripten")
    assert fetch._in_browser()
    return _FakeXMLHttpRequest


def _serve_binary(mirror, monkeypatch) -> tuple[str, bytes]:
    name = "kerneldb/h200_sxm/nccl_perf"
    data = bytes(range(256)) * 8 + b"PAR1"
    served = mirror.root / "kerneldb" / fetch.REGISTRY[name].path
    served.parent.mkdir(parents=True)
    served.write_bytes(data)
    _pin(monkeypatch, name, served)
    return name, data


@pytest.mark.parametrize("worker", [True, False], ids=["worker", "main-thread"])
def test_browser_sync_fetch_gets_exact_bytes_and_caches(mirror, monkeypatch, browser, worker):
    monkeypatch.setattr(browser, "worker", worker)
    name, data = _serve_binary(mirror, monkeypatch)
    path = fetch.fetch(name)
    assert path == mirror.cache / "kerneldb" / "h200_sxm" / "nccl_perf.parquet"
    assert path.read_bytes() == data
    assert fetch.fetch(name) == path and len(mirror.requests) == 1  # cached


def test_browser_prefetch_uses_pyfetch_and_checks_the_hash(mirror, monkeypatch, browser):
    name, data = _serve_binary(mirror, monkeypatch)
    monkeypatch.setattr(browser, "send", None)  # fails if prefetch used the sync request
    (path,) = asyncio.run(fetch.prefetch(name))
    assert path.read_bytes() == data
    assert hashlib.sha256(data).hexdigest() == fetch.entry(name).sha256
    pinned = fetch.REGISTRY["kerneldb/h200_sxm/nccl_perf"]
    monkeypatch.setitem(fetch.REGISTRY, pinned.name, replace(pinned, sha256="0" * 64))
    with pytest.raises(AfdInputError, match="SHA-256 .* differs from the pinned 000000000000"):
        asyncio.run(fetch.prefetch(pinned.name))


def test_prefetch_of_a_prefix_leaves_out_local_only_tables(monkeypatch, tmp_path):
    monkeypatch.delenv(fetch.KERNELDB_ENV, raising=False)
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path))
    assert asyncio.run(fetch.prefetch("kerneldb/h20_3e")) == []
    with pytest.raises(AfdInputError, match="local-only"):
        asyncio.run(fetch.prefetch("kerneldb/h20_3e/generation_mla_perf"))


def test_browser_failures_give_one_line(mirror, monkeypatch, browser):
    name, _ = _serve_binary(mirror, monkeypatch)
    (mirror.root / "kerneldb" / fetch.REGISTRY[name].path).write_bytes(b"other bytes")
    with pytest.raises(AfdInputError, match=r"SHA-256 .* differs .*\(refused, not cached\)"):
        fetch.fetch(name)
    assert not (mirror.cache / "kerneldb" / "h200_sxm" / "nccl_perf.parquet").exists()
    with pytest.raises(AfdInputError, match="HTTP 404"):
        fetch.fetch("kerneldb/h200_sxm/moe_perf")
    monkeypatch.setenv(fetch.URL_BASE_ENV, _dead_address())
    for attempt in (lambda: fetch.fetch(name), lambda: asyncio.run(fetch.prefetch(name))):
        with pytest.raises(AfdInputError, match=r"network error: offline, or .* \(CORS\)") as info:
            attempt()
        assert "\n" not in str(info.value) and "set AFDLIB_KERNELDB_DIR" in str(info.value)
