"""Third-party data files: where they live, how they are verified, how they are fetched.

The book reads two kinds of third-party data that this repository never copies: public
request traces and NVIDIA AIConfigurator's measured kernel tables. Every file is an entry of
:data:`REGISTRY`, with a commit-pinned public address and the SHA-256 of the file there.
:func:`fetch` returns a local path of a verified copy, looking in this order:

1. the configured local folder of the entry's group (``AFDLIB_DATA_DIR`` for ``traces/...``,
   ``AFDLIB_KERNELDB_DIR`` for ``kerneldb/...``), laid out like the registry's relative
   paths; a file there whose SHA-256 differs is refused, never used;
2. the download cache (``AFDLIB_CACHE_DIR``, default ``pooch.os_cache("afdlib")``);
3. a download from the pinned address with pooch, checked against the same SHA-256 before
   it enters the cache. In the browser (Pyodide, ``sys.platform == "emscripten"``), where
   sockets are not available, the download goes through the browser instead (see
   :func:`prefetch` for the asynchronous form).

Environment variables
---------------------
``AFDLIB_DATA_DIR``, ``AFDLIB_KERNELDB_DIR``
    Local folders read first (traces: ``<name>/<original file>``; kernel tables:
    ``<system>/<table>.parquet`` as upstream, or the ``<system>/<table>.csv.gz`` copies the
    project's shared folder holds, each checked against its own pinned SHA-256).
``AFDLIB_CACHE_DIR``
    Where downloads are kept (one subfolder per group).
``AFDLIB_DATA_URL_BASE``
    A mirror laid out like the local folders: the file of entry ``<group>/...`` with relative
    path ``p`` is fetched from ``<base>/<group>/<p>`` instead of its public address, still
    checked against the pinned SHA-256. For offline mirrors and for the tests, which serve a
    copy of the data on 127.0.0.1.
``AFDLIB_DATA_REGISTRY``
    A JSON file ``{"<entry name>": {"sha256": "...", "url": "..."}}`` replacing the pinned
    hash (and optionally the address) of the entries it names: for a mirror that holds other
    bytes than upstream (for example kernel tables re-encoded from the CSV copies, as the
    tests make). Off unless set.

Bad input (an unknown name, a wrong hash, a missing local-only file, no network) raises
:class:`~afdlib.errors.AfdInputError` with one line that names the entry and the variable to
set.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from afdlib.errors import AfdInputError

__all__ = ["DataFile", "LocalCopy", "REGISTRY", "GROUP_ENV", "CACHE_DIR_ENV", "URL_BASE_ENV",
           "REGISTRY_ENV", "names", "entry", "local_dir", "find_local", "cache_dir", "fetch",
           "prefetch", "sha256_of"]

TRACES_ENV = "AFDLIB_DATA_DIR"
KERNELDB_ENV = "AFDLIB_KERNELDB_DIR"
#: The variable naming the local folder of each group of entries.
GROUP_ENV = {"traces": TRACES_ENV, "kerneldb": KERNELDB_ENV}
CACHE_DIR_ENV = "AFDLIB_CACHE_DIR"
URL_BASE_ENV = "AFDLIB_DATA_URL_BASE"
REGISTRY_ENV = "AFDLIB_DATA_REGISTRY"
#: Seconds a download may stall before it is abandoned.
DOWNLOAD_TIMEOUT = 60


@dataclass(frozen=True)
class LocalCopy:
    """Another form of an entry accepted in the local folder.

    Attributes
    ----------
    path : str
        Relative path inside the group's local folder.
    sha256 : str
        Pinned SHA-256 of that form.
    """

    path: str
    sha256: str


@dataclass(frozen=True)
class DataFile:
    """One third-party file: its name, pinned address and hash, and where it lies locally.

    Attributes
    ----------
    name : str
        ``"<group>/<key>"``, e.g. ``"traces/azure2023_code"`` or
        ``"kerneldb/h200_sxm/moe_perf"``.
    path : str
        Relative path inside the group's local folder, the cache and a mirror
        (``AFDLIB_DATA_URL_BASE``).
    sha256 : str
        SHA-256 of the file at ``url`` (hex).
    url : str or None
        Commit-pinned public address; None for a local-only file (no public address could
        be confirmed), which only a local folder can supply.
    alternates : tuple of LocalCopy
        Other accepted forms in the local folder, each with its own pinned hash.
    """

    name: str
    path: str
    sha256: str
    url: str | None
    alternates: tuple[LocalCopy, ...] = ()

    @property
    def group(self) -> str:
        """``"traces"`` or ``"kerneldb"``."""
        return self.name.split("/", 1)[0]

    @property
    def env(self) -> str:
        """The variable that names this entry's local folder."""
        return GROUP_ENV[self.group]


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

_RAW = "https://raw.githubusercontent.com/"
_AZURE = _RAW + "Azure/AzurePublicDataset/b469a113cedca53ddc3bdea71a143dc4b7d8700c/data/"

# (name, original file, commit-pinned address, sha256)
_TRACES = (
    ("azure2023_code", "AzureLLMInferenceTrace_code.csv",
     _AZURE + "AzureLLMInferenceTrace_code.csv",
     "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6"),
    ("azure2023_conv", "AzureLLMInferenceTrace_conv.csv",
     _AZURE + "AzureLLMInferenceTrace_conv.csv",
     "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8"),
    ("mooncake_conversation", "conversation_trace.jsonl",
     _RAW + "kvcache-ai/Mooncake/3b5a594133958449a1feaf1c9e0fc1b553e34a28/FAST25-release/"
     "traces/conversation_trace.jsonl",
     "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df"),
    ("sharegpt_8k", "sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
     _RAW + "microsoft/sarathi-serve/72339db5b120614033b317880ad3a05a5e4c9415/data/"
     "processed_traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
     "6d6c296302a853e2669a674a96f269283e60c57e60363bd450588a1066919f9f"),
)

#: AIConfigurator snapshot holding the parquet tables (Apache-2.0).
KERNELDB_COMMIT = "095f58a51c4ca8e61b66ec108d86f223f8d559ce"
_AIC = _RAW + f"ai-dynamo/aiconfigurator/{KERNELDB_COMMIT}/aic-core/src/aiconfigurator_core/systems/"
# table -> folder under systems/data/<system>/ at that commit
_TABLE_DIRS = {
    "generation_attention_perf": "attention/trtllm/1.3.0rc20",
    "generation_mla_perf": "mla/trtllm/1.3.0rc20",
    "mla_generation_module_perf": "mla/trtllm/1.3.0rc20",
    "moe_perf": "moe/trtllm/1.3.0rc20",
    "nccl_perf": "comm/nccl/2.29.2",
    "wideep_deepep_ll_perf": "comm/sglang/0.5.12",
}
# system -> table -> (sha256 of the upstream parquet, sha256 of the local .csv.gz copy made
# from it without changing any value); "system" is the spec file, byte-identical upstream.
_KERNELDB = {
    "h100_sxm": {
        "generation_attention_perf": (
            "e00e2762206b3237ce70579be356c1a860ecc39694a7bda89c1ca516b23f9c65",
            "a3556d86a481e7fadd93903e8060b16e1b1caf175ef715d166c0af73968e0d90"),
        "generation_mla_perf": (
            "ea245885c83145237fbbd91f4c5f27a671f5c4c0552430bd9c4fc19003854346",
            "4e40e69cc5878ad0e0639032e8b7801eb7aabc7454ba12596329f00f54fca39a"),
        "mla_generation_module_perf": (
            "abf5f80958208c1411df4da48428a08a9b8c118a64d7f72afbf4a354c1f24423",
            "52f6a80ffeeb9db14d8bd0fc39ac8c9c36a386b7a687f226a80586460ad04447"),
        "moe_perf": (
            "2f818eb93aaf9f5742da3e370c66748f317676aa7e9412f4233c88ecfb130312",
            "f5c89f8ff7cd9d4706e39ad6611c85cce7909030bb4b4717894bd40d83c4d1f8"),
        "nccl_perf": (
            "3741fff88c638ab513c08e3c8a34290cf47fb3051e13c1323f1a501e01dedf09",
            "d7f58e676e0bb22771f857c5cc4cd033d1ebe42d2fef61ab727014389e9fae14"),
        "wideep_deepep_ll_perf": (
            "6a280dc2a174e2fa902632efc791caa74db8030c4ddee9eed668eb4acb739476",
            "065ce87913c9350fc8fd04310c5a3e7c94d5e63641ca4234e669e805c16c7fb5"),
        "system": ("5c5fbca6274dbc035cd13130aafa8ad0537b232bd4c842246f2613ba358283e7", None),
    },
    "h200_sxm": {
        "generation_attention_perf": (
            "7e408a2eef061e085e0bbcec9c147c172cb7fb6b89cefabce3465dfff84bc32c",
            "086e6d2f962f6f3e6f23a311cc63fa8601ef923dac1028dcb9a840a8bbac20ef"),
        "generation_mla_perf": (
            "792332a250f06f36b7177dd78f0921be3c8d0cdd70539a95fb3f5370a42c5d1a",
            "90ad17d908f7fb454990f8ba1c4c4728b9914505d913fc44da12d85353c28a47"),
        "mla_generation_module_perf": (
            "2b5e0ee011058cf480316d5696717e5a1543ffc6599bd32a7b9a28c641065e87",
            "f13fed6a2e7395ad9ed08edfc635a92a8b2a71342265f03bf26d7b558b293884"),
        "moe_perf": (
            "a975bd5d400b5c3dadda62a178164cab20e0a670d238107d66b2b02b1bb13ce2",
            "e46792f3405f80a6d43feb9cf5536895af930f3773870ba3fe80bc99e52126bf"),
        "nccl_perf": (
            "9b46ab90aca04f23b80c3d38bc3241d449ff27aba9aa39de793daafa8a841e0f",
            "cc710a0f4a937e7c0e83681b99ad42078a0f59aadd7d36593cfa00e5b9110bea"),
        "wideep_deepep_ll_perf": (
            "72aa9bf9c8bea6822b0990c275e26d183f1a437a750e8bb26d48f397cd14de80",
            "993b04d37d1770eca17e65f3a7e22692aaa21eb1c432e8db7314ddd6c04d37f2"),
        "system": ("142584d6bddd98207fd04e844029b0ba5d6fcd4c6f41016c5e77f0cbe4053614", None),
    },
    "b200_sxm": {
        "generation_attention_perf": (
            "31e0201ca29cdae323da1579e775aad29cc1362166f3b3a02a441861ab5fdc5f",
            "366d6da8740c58dddc133a301b36393e9a29d1bf87a490c64538b6a3b889b206"),
        "generation_mla_perf": (
            "be8f5fd94d92a08e8f8716d29f2d785b422cddc112119b79046d7bd63cf1d4eb",
            "0cfe35768aceadb9abb8a79747f38cde9e402cd446d3b9e1dcd2b5ca3f431fdf"),
        "mla_generation_module_perf": (
            "7718693010f6d1b8e2e4e0f0002ee628a690afb1d6ebcd4f5fffa4adf7570055",
            "bf861e3591e6914f24156eda8663c309fb2aa5225f1514704b318c710051e360"),
        "moe_perf": (
            "cf4c6a1e9ba26115188ad22d17099e9c9e91ef72d5d18dce4c420b722e251628",
            "ca6a8a8e8db59cf74233bc270a599bb9ec9a32365cce4eadecf0362b6ef995ac"),
        "nccl_perf": (
            "1a6c2a12bd9dc6503f766c09b7c45efb49e12f5624b721ab180a21a5dc24701b",
            "d3e6bdcf7fe3e72973d15e215f1af9317d82f4e3db6b1166a5e2014191ba7765"),
        "wideep_deepep_ll_perf": (
            "e6f0700dae36a4596dd108a87329e5eb4812bc940b73e64f25ca99202c4ece7d",
            "8698a35e23a6ee3632ece8bf95d0ee534b771157cb742681f7ab2545299147c4"),
        "system": ("4a0735d6b4055aefc873f11d105838c3b7991b37d43262d48245786f22a3353d", None),
    },
}
# H20-3e: SGLang tables of an earlier upstream snapshot whose commit could not be confirmed
# (the commit above holds none), so there is no public address: local-only, the hashes are
# those of the copies the fits in data/fits were made from.
_KERNELDB_LOCAL_ONLY = {
    "h20_3e": {
        "generation_attention_perf":
            "46ff7ed50f90152732e5e5e28c147186de56d460138ecb347f0932d9ecca14e7",
        "generation_mla_perf": "6193d01a4f58cda534b991dc1dcca6b524a1cba1cd4301da9b164374c631a688",
        "system": "172e55729353bf30da9aded56761914d093425ff6b5ad3e99c2754b28e8455dd",
    },
}


def _build_registry() -> dict[str, DataFile]:
    out = {}
    for name, filename, url, sha in _TRACES:
        out[f"traces/{name}"] = DataFile(f"traces/{name}", f"{name}/{filename}", sha, url,
                                         (LocalCopy(filename, sha),))
    for system, tables in _KERNELDB.items():
        for table, (sha, csv_sha) in tables.items():
            if table == "system":
                path = f"{system}/{system}_system.yaml"
                entry = DataFile(f"kerneldb/{system}/system", path, sha,
                                 f"{_AIC}{system}.yaml")
            else:
                entry = DataFile(
                    f"kerneldb/{system}/{table}", f"{system}/{table}.parquet", sha,
                    f"{_AIC}data/{system}/{_TABLE_DIRS[table]}/{table}.parquet",
                    (LocalCopy(f"{system}/{table}.csv.gz", csv_sha),))
            out[entry.name] = entry
    for system, tables in _KERNELDB_LOCAL_ONLY.items():
        for table, sha in tables.items():
            path = (f"{system}/{system}_system.yaml" if table == "system"
                    else f"{system}/{table}.csv.gz")
            out[f"kerneldb/{system}/{table}"] = DataFile(f"kerneldb/{system}/{table}", path,
                                                         sha, None)
    return out


#: Every third-party file the package reads, by name. Treat as read-only (the tests patch
#: entries; users override hashes with ``AFDLIB_DATA_REGISTRY``).
REGISTRY: dict[str, DataFile] = _build_registry()


def names(prefix: str = "") -> list[str]:
    """Registry names equal to ``prefix`` or under it (``"kerneldb/h200_sxm"``), sorted."""
    prefix = prefix.rstrip("/")
    return sorted(n for n in REGISTRY if not prefix or n == prefix or n.startswith(prefix + "/"))


@lru_cache(maxsize=8)
def _overrides(path: str, mtime_ns: int) -> dict[str, dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AfdInputError(f"{REGISTRY_ENV}: no such file {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AfdInputError(f"{REGISTRY_ENV}: cannot read {path} ({exc})") from None
    if not isinstance(data, dict):
        raise AfdInputError(f"{REGISTRY_ENV}: {path} must hold a JSON object of entries")
    for name, fields in data.items():
        if name not in REGISTRY:
            raise AfdInputError(f"{REGISTRY_ENV}: {path}: unknown data file {name!r}")
        if (not isinstance(fields, dict) or set(fields) - {"sha256", "url"}
                or not isinstance(fields.get("sha256"), str)
                or len(fields["sha256"]) != 64):
            raise AfdInputError(f"{REGISTRY_ENV}: {path}: entry {name!r} must be "
                                '{"sha256": "<64 hex digits>"} with an optional "url"')
    return data


def entry(name: str) -> DataFile:
    """The registry entry of ``name``, with ``AFDLIB_DATA_REGISTRY`` overrides applied.

    Raises
    ------
    AfdInputError
        For an unknown name, or an unreadable override file.
    """
    if name not in REGISTRY:
        groups = ", ".join(f"'{g}/...'" for g in GROUP_ENV)
        raise AfdInputError(f"unknown data file {name!r} (names start with {groups}; "
                            "afdlib.fetch.names() lists them)")
    found = REGISTRY[name]
    override_file = os.environ.get(REGISTRY_ENV, "").strip()
    if override_file:
        try:
            mtime = Path(override_file).stat().st_mtime_ns
        except OSError:
            mtime = -1
        fields = _overrides(override_file, mtime).get(name)
        if fields:
            found = replace(found, sha256=fields["sha256"].lower(),
                            url=fields.get("url", found.url))
    return found


def local_dir(group: str, root: str | os.PathLike | None = None) -> Path | None:
    """The local folder of a group: ``root`` if given, else its variable, else None.

    Raises
    ------
    AfdInputError
        If the folder named does not exist.
    """
    env = GROUP_ENV[group]
    if root is None:
        value = os.environ.get(env, "").strip()
        if not value:
            return None
        root = value
    path = Path(root)
    if not path.is_dir():
        raise AfdInputError(f"{env}: {path} is not a folder")
    return path


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=256)
def _hash_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def _hash(path: Path) -> str:
    st = path.stat()
    return _hash_of(str(path), st.st_size, st.st_mtime_ns)


def find_local(data: DataFile, folder: Path) -> Path | None:
    """A verified copy of ``data`` in ``folder`` (its path, then its alternates), or None.

    Raises
    ------
    AfdInputError
        If a copy is there but its SHA-256 differs from the pinned one.
    """
    for rel, sha in ((data.path, data.sha256), *((a.path, a.sha256) for a in data.alternates)):
        candidate = folder / rel
        if candidate.is_file():
            digest = _hash(candidate)
            if digest != sha:
                raise AfdInputError(f"{candidate}: SHA-256 {digest[:12]}... differs from the "
                                    f"pinned {sha[:12]}... of {data.name} (a modified copy?)")
            return candidate
    return None


def _in_browser() -> bool:
    return sys.platform == "emscripten"


def cache_dir() -> Path:
    """The download cache: ``$AFDLIB_CACHE_DIR``, else ``pooch.os_cache("afdlib")`` (in the
    browser, ``~/.cache/afdlib`` of the in-memory file system)."""
    value = os.environ.get(CACHE_DIR_ENV, "").strip()
    if value:
        return Path(value)
    if _in_browser():
        return Path.home() / ".cache" / "afdlib"
    import pooch

    return Path(pooch.os_cache("afdlib"))


def _address(data: DataFile) -> str:
    base = os.environ.get(URL_BASE_ENV, "").strip().rstrip("/")
    if base:
        return f"{base}/{data.group}/{data.path}"
    assert data.url is not None
    return data.url


def _where_to_put(data: DataFile) -> str:
    alts = "".join(f" or {a.path}" for a in data.alternates if a.path != data.path)
    return f"set {data.env} to a folder holding {data.path}{alts}"


def _cached(data: DataFile) -> Path | None:
    path = cache_dir() / data.group / data.path
    if path.is_file() and _hash(path) == data.sha256:
        return path
    return None


def _resolve(name: str, root, download: bool) -> tuple[DataFile, Path | None]:
    """The entry and a verified local or cached path (None: it must be downloaded)."""
    data = entry(name)
    folder = local_dir(data.group, root)
    if folder is not None:
        found = find_local(data, folder)
        if found is not None:
            return data, found
        if root is not None:
            raise AfdInputError(f"{folder}: no such file {data.path} ({data.name})")
    if data.url is None:
        raise AfdInputError(f"{data.name} is local-only (no public commit-pinned address "
                            f"could be confirmed): {_where_to_put(data)}")
    cached = _cached(data)
    if cached is not None:
        return data, cached
    if not download:
        raise AfdInputError(f"{data.name} is not in {data.env} or the cache, and downloads "
                            f"are off: {_where_to_put(data)}")
    return data, None


def fetch(name: str, *, root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Local path of a verified copy of registry entry ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY`, e.g. ``"traces/sharegpt_8k"`` or
        ``"kerneldb/h200_sxm/moe_perf"``.
    root : path-like, optional
        Read only from this folder (instead of the group's variable; no download).
    download : bool
        Whether a download may happen when there is no local or cached copy.

    Returns
    -------
    Path
        A file whose SHA-256 equals the pinned one (or the one its form pins).

    Raises
    ------
    AfdInputError
        Unknown name; a local copy with another hash; a local-only file that is not in the
        local folder; downloads off; a download that fails or has another hash.
    """
    data, path = _resolve(name, root, download)
    if path is not None:
        return path
    url = _address(data)
    target = cache_dir() / data.group / data.path
    if _in_browser():
        _store(data, url, _browser_get(data, url), target)
        return target
    return _pooch_get(data, url, target)


def _download_error(data: DataFile, url: str, reason: str) -> AfdInputError:
    reason = " ".join(reason.split())[:300]
    return AfdInputError(f"cannot download {data.name} from {url} ({reason}); "
                         f"{_where_to_put(data)}")


def _pooch_get(data: DataFile, url: str, target: Path) -> Path:
    import pooch
    import requests

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # no "Downloading ..." lines in the book's stored outputs
    try:
        fetched = pooch.retrieve(
            url, known_hash=f"sha256:{data.sha256}", fname=target.name, path=target.parent,
            downloader=pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT))
    except ValueError as exc:
        if "hash" in str(exc).lower():
            raise AfdInputError(f"{url}: the downloaded file's SHA-256 differs from the pinned "
                                f"{data.sha256[:12]}... of {data.name} (refused, not cached)"
                                ) from None
        raise _download_error(data, url, str(exc)) from None
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "error"
        raise _download_error(data, url, f"HTTP {status}") from None
    except requests.exceptions.Timeout:
        raise _download_error(data, url, f"no answer within {DOWNLOAD_TIMEOUT} s") from None
    except requests.exceptions.ConnectionError:
        raise _download_error(data, url, "cannot connect: no network, or the server is "
                                         "down") from None
    except OSError as exc:
        raise _download_error(data, url, f"{type(exc).__name__}: {exc}") from None
    finally:
        logger.setLevel(level)
    return Path(fetched)


def _store(data: DataFile, url: str, content: bytes, target: Path) -> None:
    digest = hashlib.sha256(content).hexdigest()
    if digest != data.sha256:
        raise AfdInputError(f"{url}: the downloaded file's SHA-256 {digest[:12]}... differs "
                            f"from the pinned {data.sha256[:12]}... of {data.name} (refused, "
                            "not cached)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(content)
    os.replace(partial, target)


# ---------------------------------------------------------------------------
# In the browser (Pyodide): no sockets, so the browser fetches.
#
# The pinned addresses are on raw.githubusercontent.com, which answers with
# "Access-Control-Allow-Origin: *", so a page on another origin may read the files: shown
# with `curl -I` in github.com/rgrove/rawgit/issues/104 and relied on by JupyterLite's own
# guide to fetching data, whose example reads a raw.githubusercontent.com CSV from the
# Pyodide kernel (cited in github.com/jupyter-xeus/xeus-python/issues/671). A mirror named
# by AFDLIB_DATA_URL_BASE must send that header too.
# ---------------------------------------------------------------------------

_BROWSER_HINT = ("offline, or the server sends no Access-Control-Allow-Origin header "
                 "(CORS)")


def _browser_get(data: DataFile, url: str) -> bytes:
    """Synchronous GET in the browser, returning the exact bytes.

    ``pyodide.http.open_url`` is a synchronous XMLHttpRequest that decodes the body as text
    (binary files are not supported, its docstring says), so this issues the same request
    asking for an ArrayBuffer, which browsers allow for synchronous requests in a Web Worker
    (where JupyterLite runs its Pyodide kernel); elsewhere it falls back to the
    ``x-user-defined`` charset, whose characters map one to one onto bytes.
    """
    try:
        from js import XMLHttpRequest  # type: ignore[import-not-found]
    except ImportError:
        raise _download_error(data, url, "no browser XMLHttpRequest in this Pyodide") from None
    req = XMLHttpRequest.new()
    req.open("GET", url, False)
    as_buffer = True
    try:
        req.responseType = "arraybuffer"
    except Exception:  # a window's main thread refuses it for synchronous requests
        as_buffer = False
        req.overrideMimeType("text/plain; charset=x-user-defined")
    try:
        req.send(None)
    except Exception:  # a JavaScript NetworkError: no answer the page may read
        raise _download_error(data, url, f"network error: {_BROWSER_HINT}") from None
    if req.status != 200:
        reason = f"HTTP {req.status}" if req.status else f"network error: {_BROWSER_HINT}"
        raise _download_error(data, url, reason)
    if as_buffer:
        return bytes(req.response.to_bytes())
    return bytes(ord(c) & 0xFF for c in req.responseText)


async def _browser_get_async(data: DataFile, url: str) -> bytes:
    try:
        from pyodide.http import pyfetch  # type: ignore[import-not-found]
    except ImportError:
        raise _download_error(data, url, "pyodide.http is not available") from None
    try:
        response = await pyfetch(url)
    except Exception:  # OSError from the browser's fetch: offline or CORS
        raise _download_error(data, url, f"network error: {_BROWSER_HINT}") from None
    if not response.ok:
        raise _download_error(data, url, f"HTTP {response.status}")
    return bytes(await response.bytes())


async def prefetch(*names_or_prefixes: str) -> list[Path]:
    """Fetch entries ahead of use (asynchronously in the browser); returns their paths.

    In JupyterLite run ``await afdlib.fetch.prefetch("kerneldb/h200_sxm", "traces")`` in a
    cell before the code that reads the data: the files are downloaded with
    ``pyodide.http.pyfetch``, checked against the same SHA-256 and put in the in-browser
    cache, where :func:`fetch` then finds them. Outside the browser this is :func:`fetch`
    for each entry.

    Parameters
    ----------
    *names_or_prefixes : str
        Registry names or prefixes (``"traces"``, ``"kerneldb/h200_sxm"``). A prefix
        leaves out local-only entries (H20-3e) unless their local folder is configured.

    Raises
    ------
    AfdInputError
        For a name or prefix that matches nothing, and as :func:`fetch`.
    """
    wanted: list[str] = []
    for item in names_or_prefixes:
        found = names(item)
        if not found:
            entry(item)  # raises the unknown-name error
        # under a prefix, a local-only entry is fetched only where a local folder holds it
        found = [n for n in found if n == item.rstrip("/") or REGISTRY[n].url is not None
                 or local_dir(REGISTRY[n].group) is not None]
        wanted += [n for n in found if n not in wanted]
    out = []
    for name in wanted:
        if not _in_browser():
            out.append(fetch(name))
            continue
        data, path = _resolve(name, None, True)
        if path is None:
            url = _address(data)
            path = cache_dir() / data.group / data.path
            _store(data, url, await _browser_get_async(data, url), path)
        out.append(path)
    return out
