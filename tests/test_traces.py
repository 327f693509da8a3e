"""Trace readers: round trips, format detection, every bad input, the public traces."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest

from afdlib.errors import AfdInputError, TraceFormatError
from afdlib.traces import PUBLIC_TRACES, load_trace, read_trace, trace_path
from tests.conftest import public_trace_file

PROMPTS = [374, 396, 0, 8000]
OUTPUTS = [44, 109, 1, 0]


def _csv(header, rows):
    lines = [",".join(header)] + [",".join(str(v) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


FORMAT_FILES = {
    "azure": ("t.csv", _csv(["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
                            [[f"2023-11-16 18:15:4{i}.6805900", p, o]
                             for i, (p, o) in enumerate(zip(PROMPTS, OUTPUTS, strict=True))])),
    "sharegpt": ("s.csv", _csv(["num_prefill_tokens", "num_decode_tokens", "num_total_tokens",
                                "pd_ratio"],
                               [[p, o, p + o, p / max(o, 1)]
                                for p, o in zip(PROMPTS, OUTPUTS, strict=True)])),
    "burstgpt": ("b.csv", _csv(["Timestamp", "Model", "Request tokens", "Response tokens",
                                "Total tokens", "Log Type"],
                               [[i, "ChatGPT", p, o, p + o, "Conversation log"]
                                for i, (p, o) in enumerate(zip(PROMPTS, OUTPUTS, strict=True))])),
    "csv": ("c.csv", _csv(["id", "prompt_tokens", "output_tokens"],
                          [[i, p, o] for i, (p, o) in enumerate(zip(PROMPTS, OUTPUTS,
                                                                     strict=True))])),
    "mooncake": ("m.jsonl", "".join(
        json.dumps({"timestamp": i, "input_length": p, "output_length": o, "hash_ids": [1, 2]})
        + "\n" for i, (p, o) in enumerate(zip(PROMPTS, OUTPUTS, strict=True)))),
}


@pytest.mark.parametrize("fmt", list(FORMAT_FILES))
@pytest.mark.parametrize("given", ["explicit", "auto"])
def test_round_trip_and_detection(write, fmt, given):
    name, text = FORMAT_FILES[fmt]
    path = write(name, text)
    trace = read_trace(path, fmt if given == "explicit" else "auto")
    assert trace.format == fmt
    np.testing.assert_array_equal(trace.prompt_tokens, PROMPTS)
    np.testing.assert_array_equal(trace.output_tokens, OUTPUTS)
    assert trace.prompt_tokens.dtype == np.int64
    assert len(trace) == 4


def test_integral_floats_blank_lines_bom_and_crlf_are_accepted(write):
    path = write("x.csv", "\ufeffprompt_tokens,output_tokens\r\n12.0,3\r\n\r\n5,7.0\r\n")
    trace = read_trace(path)
    assert trace.prompt_tokens.tolist() == [12, 5]
    assert trace.output_tokens.tolist() == [3, 7]


def _error(write, name, content, fmt="auto"):
    path = write(name, content)
    with pytest.raises(TraceFormatError, match=re.escape(str(path))) as info:
        read_trace(path, fmt)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message, info.value


@pytest.mark.parametrize(
    "name, content, fmt, fragments, line, field",
    [
        ("empty.csv", "", "auto", ["file is empty"], None, None),
        ("blank.csv", "\n  \n", "auto", ["file is empty"], None, None),
        ("header.csv", "prompt_tokens,output_tokens\n", "auto", ["no requests"], None, None),
        ("nocol.csv", "prompt_tokens,tokens_out\n1,2\n", "csv",
         ["missing column 'output_tokens'", "tokens_out"], 1, None),
        ("unknown.csv", "a,b\n1,2\n", "auto", ["unrecognized trace format"], 1, None),
        ("neg.csv", "prompt_tokens,output_tokens\n1,2\n3,-4\n", "auto",
         ["negative token count (-4)"], 3, "output_tokens"),
        ("frac.csv", "prompt_tokens,output_tokens\n1.5,2\n", "auto",
         ["not an integer (1.5)"], 2, "prompt_tokens"),
        ("nan.csv", "prompt_tokens,output_tokens\n1,2\nnan,2\n", "auto", ["NaN"], 3,
         "prompt_tokens"),
        ("inf.csv", "prompt_tokens,output_tokens\n1,inf\n", "auto", ["infinite"], 2,
         "output_tokens"),
        ("word.csv", "prompt_tokens,output_tokens\n1,many\n", "auto", ["not a number ('many')"],
         2, "output_tokens"),
        ("missing.csv", "prompt_tokens,output_tokens\n1,2\n4,\n", "auto", ["missing value"], 3,
         "output_tokens"),
        ("short.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16,5,6\n2023-11-16,5\n",
         "auto", ["row has 2 fields", "truncated"], 3, None),
        ("trunc.jsonl", '{"input_length": 5, "output_length": 6}\n{"input_length": 5, "outp',
         "auto", ["invalid JSON"], 2, None),
        ("key.jsonl", '{"input_length": 5}\n', "auto", ["missing field"], 1, "output_length"),
        ("str.jsonl", '{"input_length": "5", "output_length": 6}\n', "auto",
         ["expected a number"], 1, "input_length"),
        ("null.jsonl", '{"input_length": null, "output_length": 6}\n', "auto",
         ["missing value"], 1, "input_length"),
        ("list.jsonl", '[1, 2]\n', "mooncake", ["expected a JSON object"], 1, None),
        ("negj.jsonl", '{"input_length": 5, "output_length": -1}\n', "auto",
         ["negative"], 1, "output_length"),
        ("nanj.jsonl", '{"input_length": NaN, "output_length": 3}\n', "auto", ["NaN"], 1,
         "input_length"),
    ],
)
def test_bad_input_names_file_line_and_field(write, name, content, fmt, fragments, line, field):
    message, err = _error(write, name, content, fmt)
    for fragment in fragments:
        assert fragment in message
    assert err.line == line
    assert err.field == field
    if line is not None:
        assert f"line {line}" in message
    if field is not None:
        assert f"field '{field}'" in message


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", bytes(range(256)) * 4, b"\xff\xfe\xfa garbage"],
)
def test_binary_garbage_is_rejected(write, content):
    message, _ = _error(write, "garbage.csv", content)
    assert "binary data" in message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TraceFormatError, match="no such file"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceFormatError, match="directory"):
        read_trace(tmp_path)


def test_unknown_format_is_rejected(write):
    path = write("a.csv", "prompt_tokens,output_tokens\n1,2\n")
    with pytest.raises(AfdInputError, match="unknown trace format 'parquet'"):
        read_trace(path, "parquet")


# -- the public traces ----------------------------------------------------------------

EXPECTED_ROWS = {"azure2023_code": 8819, "azure2023_conv": 19366,
                 "mooncake_conversation": 12031, "sharegpt_8k": 30731}


@pytest.mark.parametrize("name", list(PUBLIC_TRACES))
def test_public_traces_load_by_name_and_match_an_independent_parse(name):
    path = public_trace_file(name)
    trace = load_trace(name)
    assert len(trace) == EXPECTED_ROWS[name]
    assert trace.name == name
    # an independent parse with the standard library
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        p = [r["input_length"] for r in records]
        o = [r["output_length"] for r in records]
    else:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        pk, ok = {"azure": ("ContextTokens", "GeneratedTokens"),
                  "sharegpt": ("num_prefill_tokens", "num_decode_tokens")}[trace.format]
        p = [int(r[pk]) for r in rows]
        o = [int(r[ok]) for r in rows]
    np.testing.assert_array_equal(trace.prompt_tokens, p)
    np.testing.assert_array_equal(trace.output_tokens, o)


def test_local_copy_with_a_different_hash_is_refused(tmp_path, monkeypatch):
    src = public_trace_file("azure2023_code")
    folder = tmp_path / "azure2023_code"
    folder.mkdir()
    copy = folder / src.name
    shutil.copy(src, copy)
    with copy.open("a") as fh:
        fh.write("2023-11-16 18:17:04.0,1,1\n")
    monkeypatch.setenv("AFDLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(AfdInputError, match="SHA-256 .* differs from the pinned"):
        trace_path("azure2023_code")


def test_unknown_public_name_lists_the_known_ones():
    with pytest.raises(AfdInputError, match="azure2023_conv"):
        trace_path("azure2099")


def test_without_local_copy_and_without_download_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("AFDLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(AfdInputError, match="downloads are off"):
        trace_path("sharegpt_8k", download=False)
