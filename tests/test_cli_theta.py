"""``afd theta``: the JSON contract, agreement with a direct computation, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from afdlib.cli import main
from tests.conftest import public_trace_file

KEYS = {"requests", "mean_prompt", "mean_decode", "theta", "load_std", "theta_ci95"}


def run_cli(*args, env=None):
    """Run ``python -m afdlib`` in a subprocess: what a user's shell sees."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "afdlib", *args], capture_output=True,
                          text=True, env=full_env, timeout=120)


def direct_theta(pairs):
    """theta and sigma from (prompt, decode) rows with exact rational arithmetic."""
    num = den = sq = 0
    for p, d in pairs:
        num += d * p + d * (d - 1) // 2
        sq += d * p * p + p * d * (d - 1) + d * (d - 1) * (2 * d - 1) // 6
        den += d
    theta = Fraction(num, den)
    var = Fraction(sq, den) - theta * theta
    return float(theta), float(var) ** 0.5


def test_json_keys_and_values_on_a_small_file(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("prompt_tokens,output_tokens\n10,1\n0,4\n7,0\n")
    assert main(["theta", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert KEYS <= set(out)
    theta, sigma = direct_theta([(10, 1), (0, 4)])
    assert out["requests"] == 2
    assert out["dropped_rows"] == 1
    assert out["theta"] == pytest.approx(theta)
    assert out["load_std"] == pytest.approx(sigma)
    assert out["mean_prompt"] == pytest.approx(5)
    assert out["mean_decode"] == pytest.approx(2.5)
    lo, hi = out["theta_ci95"]
    assert lo < out["theta"] < hi


@pytest.mark.parametrize("name", ["azure2023_code", "azure2023_conv", "mooncake_conversation",
                                  "sharegpt_8k"])
def test_public_traces_match_a_direct_computation_from_the_rows(name):
    path = public_trace_file(name)
    result = run_cli("theta", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    out = json.loads(result.stdout)
    if path.suffix == ".jsonl":
        pairs = [(r["input_length"], r["output_length"])
                 for r in map(json.loads, path.read_text().splitlines()) if r]
    else:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            ip = header.index("ContextTokens" if "ContextTokens" in header else
                              "num_prefill_tokens")
            io = header.index("GeneratedTokens" if "GeneratedTokens" in header else
                              "num_decode_tokens")
            pairs = [(int(r[ip]), int(r[io])) for r in reader]
    pairs = [(p, o) for p, o in pairs if o >= 1]
    theta, sigma = direct_theta(pairs)
    assert out["requests"] == len(pairs)
    assert out["theta"] == pytest.approx(theta, rel=1e-12)
    assert out["load_std"] == pytest.approx(sigma, rel=1e-9)
    # the first-token convention: one step fewer, one more token of context
    result = run_cli("theta", str(path), "--json", "--first-token-from-prefill")
    shifted = [(p + 1, o - 1) for p, o in pairs if o >= 2]
    theta2, sigma2 = direct_theta(shifted)
    out2 = json.loads(result.stdout)
    assert out2["requests"] == len(shifted)
    assert out2["theta"] == pytest.approx(theta2, rel=1e-12)
    assert out2["load_std"] == pytest.approx(sigma2, rel=1e-9)


def test_public_trace_by_name(monkeypatch):
    public_trace_file("azure2023_conv")  # skips without the local folder
    result = run_cli("theta", "azure2023_conv")
    assert result.returncode == 0, result.stderr
    assert "theta" in result.stdout and "95% CI" in result.stdout


BAD_FILES = [
    ("empty.csv", b"", "file is empty"),
    ("header.csv", b"prompt_tokens,output_tokens\n", "no requests"),
    ("nocol.csv", b"prompt_tokens,other\n1,2\n", "unrecognized trace format"),
    ("neg.csv", b"prompt_tokens,output_tokens\n1,-2\n", "negative"),
    ("frac.csv", b"prompt_tokens,output_tokens\n1,2.5\n", "not an integer"),
    ("nan.csv", b"prompt_tokens,output_tokens\nNaN,2\n", "NaN"),
    ("missing.csv", b"prompt_tokens,output_tokens\n1,\n", "missing value"),
    ("bin.csv", bytes(range(256)), "binary data"),
    ("trunc.jsonl", b'{"input_length": 3, "output_length": 4}\n{"input_len', "invalid JSON"),
    ("zero.csv", b"prompt_tokens,output_tokens\n5,0\n6,0\n", "no request has a decode step"),
]


@pytest.mark.parametrize("name, content, fragment", BAD_FILES)
def test_bad_input_exits_2_with_one_line(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("theta", str(path), "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert name in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["theta"], "give a workload"),
        (["theta", "nope.csv"], "no such file"),
        (["theta", "x.csv", "--format", "xml"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        (["theta", "nope", "--prompt", "geometric:5"], "not both"),
        (["theta", "--prompt", "geometric:5"], "--decode"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_only_prefill_rows_with_the_prefill_convention_is_an_error(tmp_path):
    path = tmp_path / "ones.csv"
    path.write_text("prompt_tokens,output_tokens\n5,1\n6,1\n")
    assert run_cli("theta", str(path)).returncode == 0
    result = run_cli("theta", str(path), "--first-token-from-prefill")
    assert result.returncode == 2
    assert "no request has a decode step" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_length_laws_give_the_exact_statistics():
    from afdlib.cli.laws import parse_length_law
    from afdlib.workload import IndependentLengths, load_stats

    result = run_cli("theta", "--prompt", "geometric:100,start=0", "--decode", "geometric:500",
                     "--json")
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    # geometric decode with P independent: theta = E[P] + E[D] - 1 (memorylessness)
    assert d["theta"] == pytest.approx(599.0, rel=1e-12)
    s = load_stats(IndependentLengths(parse_length_law("geometric:100,start=0"),
                                      parse_length_law("geometric:500")))
    assert d["load_std"] == pytest.approx(s.load_std, rel=1e-12)
    assert d["theta_ci95"] == [d["theta"], d["theta"]] and d["exact"] is True
    assert KEYS <= set(d) and d["requests"] is None and d["warnings"] == []
    text = run_cli("theta", "--prompt", "deterministic:50", "--decode", "deterministic:11")
    # D deterministic: theta = E[P] + (D - 1) / 2 = 55
    assert text.returncode == 0 and "theta           55.00 tokens  (exact)" in text.stdout


def test_unknown_public_trace_lists_the_known_ones():
    result = run_cli("theta", "sharegpt")
    assert result.returncode == 2 and result.stderr.startswith("afd theta: error: sharegpt: ")
    assert "public traces: azure2023_code, azure2023_conv" in result.stderr
