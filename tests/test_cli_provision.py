"""``afd provision``: the JSON contract, agreement with direct maximization, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from afdlib.cli import main
from afdlib.workload import estimate_load
from tests.conftest import public_trace_file

COEFFS_B = {"alpha_A": 2.5e-8, "beta_A": 1e-3, "alpha_F": 2e-6, "beta_F": 1.6e-2,
            "alpha_C": 2e-7, "beta_C": 1e-3, "comm_scales_with": "B"}
COEFFS_RB = {"alpha_A": 1e-8, "beta_A": 1e-3, "alpha_F": 3e-6, "beta_F": 1e-3,
             "alpha_C": 1e-8, "beta_C": 2e-2, "comm_scales_with": "rB"}
REQUIRED = {"theta", "load_std", "r_A", "r_C", "r_peak", "r_star", "regime", "r_int_mean_field",
            "r_int_barrier", "throughput_per_instance", "coeffs"}


def run(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def provision_json(capsys, *args) -> dict:
    status, out, err = run(capsys, "provision", *args, "--json")
    assert status == 0, err
    assert err == ""
    assert out.count("\n") == 1
    return json.loads(out)


def direct_lambda(c: dict, theta: float, batch: int, r, p_a=1.0, p_f=1.0):
    """Throughput per instance from the model's definition, independent of afdlib."""
    r = np.asarray(r, dtype=float)
    t_a = c["alpha_A"] * batch * theta + c["beta_A"]
    tokens = r * batch if c["comm_scales_with"] == "rB" else batch
    t_c = c["alpha_C"] * tokens + c["beta_C"]
    t_f = c["alpha_F"] * r * batch + c["beta_F"]
    return r * batch / ((p_a * r + p_f) * np.maximum(np.maximum(t_a, t_c), t_f))


def direct_argmax(c, theta, batch, p_a=1.0, p_f=1.0) -> float:
    """Dense log grid, then two rounds of zooming: only evaluates the objective."""
    lo, hi = 1e-3, 1e6
    for _ in range(3):
        r = np.geomspace(lo, hi, 200001)
        i = int(np.argmax(direct_lambda(c, theta, batch, r, p_a, p_f)))
        lo, hi = r[max(i - 2, 0)], r[min(i + 2, r.size - 1)]
    return float(r[i])


@pytest.fixture
def coeff_file(write):
    def _make(data: dict, name: str = "coeffs.json"):
        return write(name, json.dumps(data))
    return _make


@pytest.mark.parametrize("coeffs, theta, sd, batch", [
    (COEFFS_B, 600.0, 600.0, 256),       # FFN-bound
    (COEFFS_B, 4000.0, 4000.0, 256),     # attention-bound
    ({**COEFFS_B, "alpha_C": 1e-4}, 600.0, 600.0, 256),   # communication-bound (slow network)
    (COEFFS_RB, 100.0, 80.0, 64),        # communication grows with r: the crossing r_CF
    ({**COEFFS_RB, "alpha_C": 4e-6, "beta_C": 1e-4, "beta_F": 1e-4}, 20000.0, 20000.0, 64),
])
def test_json_contract_and_agreement_with_direct_maximization(capsys, coeff_file, coeffs,
                                                             theta, sd, batch):
    path = coeff_file(coeffs)
    d = provision_json(capsys, "--theta", theta, "--load-std", sd, "--batch", batch,
                       "--coeffs", path)
    assert REQUIRED <= set(d)
    assert d["regime"] in ("attention", "communication", "ffn")
    assert d["coeffs"] == coeffs
    assert (d["theta"], d["load_std"]) == (theta, sd)
    r_direct = direct_argmax(coeffs, theta, batch)
    assert d["r_star"] == pytest.approx(r_direct, rel=2e-4)
    assert d["r_star_numeric"] == pytest.approx(d["r_star"], rel=1e-5)
    # the table covers 1..R and the integer choices are its argmaxes
    table = d["throughput_per_instance"]
    ratios = sorted(int(k) for k in table)
    assert ratios == list(range(1, d["max_ratio"] + 1))
    mf = np.array([table[str(r)]["mean_field"] for r in ratios])
    br = np.array([table[str(r)]["barrier"] for r in ratios])
    np.testing.assert_allclose(mf, direct_lambda(coeffs, theta, batch, ratios), rtol=1e-12)
    assert d["r_int_mean_field"] == int(np.argmax(mf)) + 1
    assert d["r_int_barrier"] == int(np.argmax(br)) + 1
    assert np.all(br <= mf * (1 + 1e-12))
    assert d["r_int_mean_field"] in (max(math.floor(d["r_star"]), 1), math.ceil(d["r_star"]))
    assert d["max_ratio"] >= 2 * d["r_star"]


def test_regimes_and_formulas_of_the_cases(capsys, coeff_file):
    cases = [
        (COEFFS_B, 600.0, "ffn", "r_peak"),
        (COEFFS_B, 4000.0, "attention", "r_A"),
        ({**COEFFS_B, "alpha_C": 1e-4}, 600.0, "communication", "r_C"),
        (COEFFS_RB, 100.0, "communication", "r_CF"),
    ]
    for coeffs, theta, regime, formula in cases:
        d = provision_json(capsys, "--theta", theta, "--load-std", theta, "--batch",
                           256 if coeffs["comm_scales_with"] == "B" else 64,
                           "--coeffs", coeff_file(coeffs))
        assert (d["regime"], d["r_star_formula"]) == (regime, formula)
        assert d["r_star"] == pytest.approx(d[formula])


def test_first_version_r_star_is_max_of_the_three(capsys, coeff_file):
    d = provision_json(capsys, "--theta", 2500, "--load-std", 1000, "--batch", 128,
                       "--coeffs", coeff_file(COEFFS_B))
    assert d["r_star"] == max(d["r_A"], d["r_C"], d["r_peak"])
    assert d["r_peak_C"] is None and d["r_CF"] is None      # NaN -> null in JSON


def test_max_ratio_and_prices(capsys, coeff_file):
    path = coeff_file(COEFFS_B)
    d = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                       "--coeffs", path, "--max-ratio", 4)
    assert d["max_ratio"] == 4 and len(d["throughput_per_instance"]) == 4
    assert d["r_int_mean_field"] == 4 and d["r_int_at_max_ratio"]["mean_field"] is True
    base = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                          "--coeffs", path)
    dear = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                          "--coeffs", path, "--price-ffn", 4, "--price-attention", 1)
    assert dear["r_star"] == pytest.approx(2 * base["r_star"])       # sqrt(4) in the FFN regime
    assert dear["r_star"] == pytest.approx(direct_argmax(COEFFS_B, 600, 256, 1.0, 4.0), rel=2e-4)
    assert dear["throughput_unit"] == "tokens/s per price unit"


def test_trace_input_uses_the_workload_estimators(capsys, write, coeff_file):
    rng = np.random.default_rng(3)
    prompt = rng.integers(0, 3000, 400)
    output = rng.integers(1, 600, 400)
    rows = "\n".join(f"{p},{o}" for p, o in zip(prompt, output, strict=True))
    trace = write("t.csv", "prompt_tokens,output_tokens\n" + rows + "\n")
    d = provision_json(capsys, "--trace", trace, "--batch", 64, "--coeffs", coeff_file(COEFFS_B))
    est = estimate_load(prompt, output)
    assert d["theta"] == pytest.approx(est.theta, rel=1e-12)
    assert d["load_std"] == pytest.approx(est.load_std, rel=1e-12)
    # the first-token convention: D = output - 1 decode steps from a context of P + 1, rows
    # with a single output token dropped; theta = sum(D P' + D(D-1)/2) / sum(D), by hand
    d2 = provision_json(capsys, "--trace", trace, "--first-token-from-prefill", "--batch", 64,
                        "--coeffs", coeff_file(COEFFS_B))
    keep = output >= 2
    ctx, steps = prompt[keep] + 1.0, output[keep] - 1.0
    by_hand = float(np.sum(steps * ctx + steps * (steps - 1) / 2) / np.sum(steps))
    assert d2["theta"] == pytest.approx(by_hand, rel=1e-12)


def test_public_trace_by_name(capsys, coeff_file):
    path = public_trace_file("azure2023_conv")
    d = provision_json(capsys, "--trace", "azure2023_conv", "--batch", 128,
                       "--coeffs", coeff_file(COEFFS_B))
    assert d["workload"] == "azure2023_conv"
    # theta from the raw file with the csv module: sum(D P + D(D-1)/2) / sum(D), D = output
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = [(float(r["ContextTokens"]), float(r["GeneratedTokens"]))
                for r in csv.DictReader(fh)]
    p = np.array([r[0] for r in rows])
    o = np.array([r[1] for r in rows])
    o_kept, p_kept = o[o >= 1], p[o >= 1]
    by_hand = float(np.sum(o_kept * p_kept + o_kept * (o_kept - 1) / 2) / np.sum(o_kept))
    assert d["theta"] == pytest.approx(by_hand, rel=1e-12)


def test_human_readable_output(capsys, coeff_file):
    status, out, err = run(capsys, "provision", "--theta", 4000, "--load-std", 4000, "--batch",
                           256, "--coeffs", coeff_file(COEFFS_B))
    assert status == 0 and err == ""
    assert "attention-bound regime" in out and "barrier best" in out


def test_module_entry_point(coeff_file):
    proc = subprocess.run([sys.executable, "-m", "afdlib", "provision", "--theta", "600",
                           "--load-std", "600", "--batch", "256", "--coeffs",
                           str(coeff_file(COEFFS_B)), "--json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["regime"] == "ffn"


@pytest.mark.parametrize("args, fragment", [
    (["--theta", "nan", "--load-std", "1", "--batch", "8"], "--theta: must be finite"),
    (["--theta", "1", "--load-std", "-2", "--batch", "8"], "--load-std: must be >= 0"),
    (["--theta", "-1", "--load-std", "2", "--batch", "8"], "--theta: must be >= 0"),
    (["--theta", "1", "--load-std", "2", "--batch", "0"], "--batch: must be >= 1"),
    (["--theta", "1", "--load-std", "2", "--batch", "x"], "--batch"),
    (["--theta", "1", "--load-std", "2", "--batch", "8", "--max-ratio", "0"],
     "--max-ratio: must be >= 1"),
    (["--theta", "1", "--load-std", "2", "--batch", "8", "--price-ffn", "0"],
     "--price-ffn: must be > 0"),
    (["--theta", "1", "--batch", "8"], "give a workload"),
    (["--load-std", "1", "--batch", "8"], "give a workload"),
    (["--theta", "1", "--load-std", "2"], "--batch"),
    (["--trace", "azure2023_conv", "--theta", "1", "--load-std", "2", "--batch", "8"],
     "not both"),
    (["--trace", "no/such/file.csv", "--batch", "8"], "no/such/file.csv"),
])
def test_bad_workload_arguments_exit_2_with_one_line(capsys, coeff_file, args, fragment):
    status, out, err = run(capsys, "provision", *args, "--coeffs", coeff_file(COEFFS_B))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize("content, fragment", [
    ({**COEFFS_B, "alpha_A": -1e-8}, "alpha_A must be >= 0"),
    ({**COEFFS_B, "alpha_F": 0.0}, "alpha_F must be > 0"),
    ({**COEFFS_B, "beta_F": None}, "beta_F must be a number"),
    ({**COEFFS_B, "comm_scales_with": "r"}, "comm_scales_with"),
    ({k: v for k, v in COEFFS_B.items() if k != "beta_F"}, "missing key"),
    ({**COEFFS_B, "alpha_a": 1.0}, "unknown key"),
    ('{"alpha_A": NaN, "beta_A": 0, "alpha_F": 1e-6, "beta_F": 0}', "NaN"),
    ("not json", "not valid JSON"),
])
def test_bad_coefficient_files_exit_2_with_one_line(capsys, write, content, fragment):
    path = write("bad.json", content if isinstance(content, str) else json.dumps(content))
    status, out, err = run(capsys, "provision", "--theta", 500, "--load-std", 100, "--batch", 8,
                           "--coeffs", path)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and fragment in err and "bad.json" in err


def test_coefficient_source_is_required(capsys, coeff_file):
    status, out, err = run(capsys, "provision", "--theta", 500, "--load-std", 100, "--batch", 8)
    assert status == 2 and "--coeffs" in err and err.count("\n") == 1
    status, out, err = run(capsys, "provision", "--theta", 500, "--load-std", 100, "--batch", 8,
                           "--coeffs", coeff_file(COEFFS_B), "--model", "m", "--hardware", "h")
    assert status == 2 and "not both" in err


def test_degenerate_step_exits_2(capsys, coeff_file):
    path = coeff_file({"alpha_A": 1e-8, "beta_A": 0, "alpha_F": 1e-6, "beta_F": 0})
    status, out, err = run(capsys, "provision", "--theta", 0, "--load-std", 0, "--batch", 8,
                           "--coeffs", path)
    assert status == 2 and "no maximum" in err and err.count("\n") == 1
