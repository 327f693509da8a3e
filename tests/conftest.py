"""Shared fixtures: where the public traces are, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from afdlib.traces import PUBLIC_TRACES


def _local_trace_dir() -> Path | None:
    value = os.environ.get("AFDLIB_DATA_DIR")
    return Path(value) if value else None


def public_trace_file(name: str) -> Path:
    """Path of a public trace in AFDLIB_DATA_DIR; skips the test when it is not configured."""
    base = _local_trace_dir()
    if base is None:
        pytest.skip("AFDLIB_DATA_DIR is not set (CI sets it to the shared trace folder)")
    path = base / name / PUBLIC_TRACES[name].filename
    if not path.is_file():
        pytest.skip(f"{name} is not in AFDLIB_DATA_DIR")
    return path


@pytest.fixture
def write(tmp_path):
    """Write text (or bytes) to a file in a temporary folder and return its path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write
