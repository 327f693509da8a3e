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


# -- GPU counts, objectives, latency targets, length laws, the joint search -------------------

def run_cli(*args):
    """``python -m afdlib`` in a subprocess: what a user's shell sees."""
    return subprocess.run([sys.executable, "-m", "afdlib", *map(str, args)],
                          capture_output=True, text=True, timeout=180, check=False)


def test_per_gpu_objective_moves_the_ffn_bound_ratio_by_the_root_of_the_gpu_ratio(
        capsys, coeff_file):
    # FFN-bound (COEFFS_B at theta 600): r_peak = sqrt(pi beta_F / (alpha_F B)), pi = g_F / g_A
    path = coeff_file({**COEFFS_B, "gpus": {"attention": 1, "ffn": 4}})
    d = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                       "--coeffs", path)
    assert d["gpus"] == {"attention": 1, "ffn": 4} and d["objective"]["kind"] == "gpu"
    assert d["throughput_unit"] == "tokens/s per GPU"
    base = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                          "--coeffs", path, "--objective", "instance")
    assert base["objective"]["kind"] == "instance" and base["gpus"] == {"attention": 1, "ffn": 4}
    assert d["r_star"] == pytest.approx(2.0 * base["r_star"], rel=1e-9)
    assert d["r_star"] == pytest.approx(direct_argmax(COEFFS_B, 600, 256, 1.0, 4.0), rel=2e-4)
    assert d["r_int_per_instance"]["mean_field"] == base["r_int_mean_field"]
    # rows: per instance of each rule, per GPU next to them, both from one step time
    for key, row in d["throughput_per_instance"].items():
        r = int(key)
        assert row["throughput_per_gpu"] == pytest.approx(
            row["barrier"] * (r + 1) / (r + 4), rel=1e-12)
        assert row["objective"] == pytest.approx(row["throughput_per_gpu"], rel=1e-15)
        assert {"mean_field", "barrier", "step_time_p50", "step_time_p99",
                "mean_step_time"} <= set(row)
    # --gpus overrides the file; no GPU counts: per instance, no per-GPU figures
    d2 = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                        "--coeffs", path, "--gpus", "2/4")
    assert d2["gpus"] == {"attention": 2, "ffn": 4} and d2["gpus_source"] == "--gpus"
    plain = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                           "--coeffs", coeff_file(COEFFS_B))
    assert plain["gpus"] is None and plain["objective"]["kind"] == "instance"
    assert "throughput_per_gpu" not in plain["throughput_per_instance"]["1"]


def test_gpu_prices_give_the_price_objective(capsys, coeff_file):
    path = coeff_file({**COEFFS_B, "gpus": {"attention": 1, "ffn": 4}})
    d = provision_json(capsys, "--theta", 600, "--load-std", 600, "--batch", 256,
                       "--coeffs", path, "--gpu-price", "2/3")
    assert d["objective"]["kind"] == "price"
    assert d["objective"]["weights"] == {"attention": 2.0, "ffn": 12.0}
    assert d["r_star"] == pytest.approx(direct_argmax(COEFFS_B, 600, 256, 2.0, 12.0), rel=2e-4)


def test_length_laws_give_exact_theta_and_the_exact_rule(capsys, coeff_file):
    from afdlib.cli.laws import parse_length_law
    from afdlib.workload import IndependentLengths, load_stats

    laws = ["--prompt", "geometric:100,start=0", "--decode", "geometric:500"]
    d = provision_json(capsys, *laws, "--batch", 256, "--coeffs", coeff_file(COEFFS_B))
    s = load_stats(IndependentLengths(parse_length_law("geometric:100,start=0"),
                                      parse_length_law("geometric:500")))
    assert d["theta"] == pytest.approx(599.0, rel=1e-12) == s.theta
    assert d["load_std"] == pytest.approx(s.load_std, rel=1e-12)
    assert d["workload_kind"] == "laws" and "r_int_exact" in d
    assert d["step_time_quantiles"] == "exact"
    table = d["throughput_per_instance"]
    assert int(max(table, key=lambda k: table[k]["exact_load"])) == d["r_int_exact"]


def test_latency_target_and_its_null(capsys, coeff_file):
    coeffs = {"alpha_A": 2e-8, "beta_A": 2e-3, "alpha_F": 2e-6, "beta_F": 4e-3,
              "alpha_C": 1e-7, "beta_C": 1e-3, "comm_scales_with": "B"}
    laws = ["--prompt", "lognormal:median=800,sigma=1.2,max=40000", "--decode", "geometric:200"]
    base = ["provision", *laws, "--batch", 8, "--coeffs", coeff_file(coeffs), "--max-ratio", 24,
            "--json"]
    status, out, _ = run(capsys, *base)
    table = json.loads(out)["throughput_per_instance"]
    p99 = np.array([table[str(r)]["step_time_p99"] for r in range(1, 25)])
    for target in (float(p99[2]), 0.5 * float(p99[5] + p99[6])):
        status, out, _ = run(capsys, *base, "--tpot-p99", target)
        d = json.loads(out)
        ok = [r for r in range(1, 25) if p99[r - 1] <= target]
        lam = {r: table[str(r)]["objective"] for r in ok}
        assert d["r_int_slo"] == max(lam, key=lam.get) and d["tpot_p99"] == target
    status, out, _ = run(capsys, *base, "--tpot-p99", 0.5 * float(p99[0]))
    d = json.loads(out)
    assert status == 0 and d["r_int_slo"] is None
    assert d["slo"]["smallest_target"] == pytest.approx(float(p99[0])) and d["slo"]["smallest_at"] == 1
    status, out, err = run(capsys, *base[:-1], "--tpot-p99", 0.5 * float(p99[0]))
    assert "no ratio meets it; the smallest achievable target is" in out and "at r = 1" in out


def test_joint_search_json(capsys, coeff_file):
    path = coeff_file({**COEFFS_B, "gpus": {"attention": 1, "ffn": 4}})
    d = provision_json(capsys, "--prompt", "geometric:100,start=0", "--decode", "geometric:500",
                       "--batches", "16:512", "--coeffs", path, "--max-ratio", 40)
    best = d["best"]
    assert {"ratio", "batch", "throughput_per_gpu", "step_time_p99"} <= set(best)
    assert len(d["batches"]) <= 40 and d["batches"][0] == 16 and d["batches"][-1] == 512
    assert "geometric" in d["batch_grid"] and "no memory limit" in d["memory"]
    front = d["pareto"]
    assert all(a["step_time_p99"] <= b["step_time_p99"] and a["throughput"] < b["throughput"]
               for a, b in zip(front[:-1], front[1:], strict=True))
    assert front[-1]["throughput"] == pytest.approx(best["throughput"])
    # the top-level table is the best batch's, and its best integer is the best ratio
    assert d["batch"] == best["batch"] and d["r_int_exact"] == best["ratio"]
    target = front[len(front) // 2]["step_time_p99"]
    dt = provision_json(capsys, "--prompt", "geometric:100,start=0", "--decode",
                        "geometric:500", "--batches", "16:512", "--coeffs", path,
                        "--max-ratio", 40, "--tpot-p99", target)
    assert dt["best"]["step_time_p99"] <= target
    assert dt["best"]["throughput"] == pytest.approx(front[len(front) // 2]["throughput"])


def test_joint_search_with_a_preset_is_capped_by_kv_memory(capsys):
    d = provision_json(capsys, "--theta", 2690, "--load-std", 2081, "--batches", "16:4096",
                       "--model", "qwen3-235b-a22b", "--hardware", "h200", "--gpus", "1/4")
    from afdlib.costs import build_preset

    cap = build_preset("qwen3-235b-a22b", "h200", batch=16, theta=2690.0, attention_gpus=1,
                       ffn_gpus=4).memory.max_batch
    assert max(d["batches"]) == cap < 4096 and f"capped at {cap}" in d["batch_grid"]
    assert d["best"]["batch"] <= cap and d["best"]["gpus"] == {"attention": 1, "ffn": 4}


def test_a_preset_whose_linear_rules_leave_the_fitted_region_gets_a_warning(capsys):
    # DeepSeek-V3 on H200 at B = 256 (the step-costs chapter's "where the lines mislead"):
    # communication is flat up to a bend the linear coefficients do not have, so their
    # optimum lies far from the curves' own best ratio, where they were fitted
    from afdlib.costs import bundle_curves
    from afdlib.model import InstanceGPUs, Objective

    d = provision_json(capsys, "--theta", 599, "--load-std", 500, "--batch", 256,
                       "--model", "deepseek-v3", "--hardware", "h200")
    src = d["coefficients_source"]
    curves = bundle_curves("deepseek-v3", "h200", batch=256, theta=599.0)
    goal = Objective(kind="gpu", gpus=InstanceGPUs(**d["gpus"]))
    per_gpu = [curves.throughput(batch=256, theta=599.0, ratio=r, objective=goal)
               for r in range(1, 65)]
    best_curves = 1 + int(np.argmax(per_gpu))  # the curves themselves, ratio by ratio
    assert src["curves_best_ratio"] == best_curves == src["linearized_at"]["ratio"]
    assert d["r_int_barrier"] >= best_curves + 2  # the lines run away from the curves
    far = [w for w in d["warnings"] if "measured curves" in w]
    assert len(far) == 1 and f"prefer r = {best_curves}" in far[0]
    assert f"ratio {d['r_int_barrier']} is far from r = {best_curves}" in far[0]
    # where the rules land at the fitted ratio, nothing is said
    d = provision_json(capsys, "--theta", 2690, "--load-std", 2081, "--batch", 64,
                       "--model", "qwen3-235b-a22b", "--hardware", "h200")
    assert d["coefficients_source"]["curves_best_ratio"] == d["r_int_barrier"]
    assert not [w for w in d["warnings"] if "measured curves" in w]


@pytest.mark.parametrize("args, fragment", [
    (["--tpot-p99", "0"], "--tpot-p99: must be > 0"),
    (["--tpot-p99", "-0.01"], "--tpot-p99: must be > 0"),
    (["--tpot-p99", "nan"], "--tpot-p99: must be finite"),
    (["--gpu-price", "0/1"], "--gpu-price: a GPU price must be > 0"),
    (["--gpu-price", "-2"], "--gpu-price: a GPU price must be > 0"),
    (["--gpu-price", "2/x"], "--gpu-price: expected a number"),
    (["--gpus", "0/8"], "--gpus: a GPU count must be >= 1"),
    (["--gpus", "1/0"], "--gpus: a GPU count must be >= 1"),
    (["--gpus", "1.5/8"], "--gpus: GPU counts must be integers"),
    (["--gpus", "1/2/3"], "--gpus: expected GPU counts as A/F"),
    (["--objective", "dollars"], "--objective: invalid choice"),
    (["--objective", "gpu"], "objective 'gpu' needs the GPU counts"),
    (["--objective", "price"], "objective 'price' needs prices"),
    (["--gpu-price", "2/2"], "per-GPU prices need the GPU counts"),
    (["--moe-routing", "zipf"], "--moe-routing: invalid choice"),
    (["--moe-routing", "power_law"], "error: --moe-routing applies to presets"),
])
def test_bad_new_options_exit_2_with_one_line(coeff_file, args, fragment):
    proc = run_cli("provision", "--theta", 600, "--load-std", 600, "--batch", 64,
                   "--coeffs", coeff_file(COEFFS_B), *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
    assert proc.stderr.startswith("afd provision: error: ")
    assert "afd: error: afd" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("batches, fragment", [
    ("10:5", "--batches: empty range '10:5': HI must be >= LO"),
    ("0:5", "--batches: LO must be >= 1"),
    ("5", "--batches: expected LO:HI"),
    (":", "--batches: LO and HI must be integers"),
])
def test_bad_batch_ranges_exit_2(coeff_file, batches, fragment):
    proc = run_cli("provision", "--theta", 600, "--load-std", 600, "--batches", batches,
                   "--coeffs", coeff_file(COEFFS_B))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and fragment in proc.stderr


def test_infeasible_memory_and_latency_exit_2(coeff_file):
    preset = ["--model", "qwen3-235b-a22b", "--hardware", "h200", "--gpus", "1/4",
              "--theta", 2690, "--load-std", 2081]
    proc = run_cli("provision", *preset, "--batch", 5000)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--batch: 5000 slots at theta = 2690 tokens do not fit the KV memory" in proc.stderr
    assert "largest feasible B:" in proc.stderr
    proc = run_cli("provision", *preset, "--batches", "5000:6000")
    assert proc.returncode == 2 and "--batches: no batch in 5000:6000 fits" in proc.stderr
    proc = run_cli("provision", "--theta", 600, "--load-std", 600, "--batches", "8:64",
                   "--coeffs", coeff_file(COEFFS_B), "--tpot-p99", 1e-4)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--tpot-p99: no (batch, ratio) meets 0.1 ms: the smallest achievable" in proc.stderr
    assert "at B = 8, r = 1" in proc.stderr


def test_the_newcomers_command_line(coeff_file):
    proc = run_cli()
    assert proc.returncode == 0 and "usage: afd" in proc.stdout and "examples:" in proc.stdout
    for command in ("theta", "provision", "simulate", "sweep", "report"):
        help_text = run_cli(command, "--help").stdout
        assert "examples:" in help_text and f"afd {command}" in help_text.split("examples:")[1]
    proc = run_cli("provision", "--theta", 1)
    assert proc.stderr.startswith("afd provision: error: ")
    assert proc.stderr.count("afd") == 2                # the prefix and the help pointer only
    proc = run_cli("provision", "--trace", "sharegpt", "--batch", 8, "--coeffs",
                   coeff_file(COEFFS_B))
    assert proc.returncode == 2 and "not a public trace (public traces: azure2023_code" in \
        proc.stderr and "sharegpt_8k" in proc.stderr


def test_text_output_shows_sources_window_and_negative_crossings(capsys, coeff_file):
    status, out, err = run(capsys, "provision", "--theta", 100, "--load-std", 100, "--batch", 64,
                           "--model", "qwen3-235b-a22b", "--hardware", "h100")
    assert status == 0 and err == ""
    assert "preset qwen3-235b-a22b on h100-sxm" in out and "gpus            1 per Attention" \
        in out
    assert "alpha_A" in out and "ffn:" in out and "measured: h100_sxm moe_perf" in out
    assert "r_A -" in out and "(negative: the FFN's fixed time beta_F alone exceeds" in out
    assert "of 1..32 (around the best ones; --json for every ratio)" in out
    assert "per instance    mean field" in out


def test_moe_routing_changes_the_ffn_coefficients(capsys):
    common = ["--theta", 2690, "--load-std", 2081, "--batch", 64, "--model", "deepseek-v3",
              "--hardware", "h200"]
    bal = provision_json(capsys, *common)
    skew = provision_json(capsys, *common, "--moe-routing", "power_law")
    assert skew["coeffs"]["alpha_F"] > 1.5 * bal["coeffs"]["alpha_F"]
    assert skew["coefficients_source"]["routing"] == "power_law_1.2"
    assert "power_law_1.2 routing" in skew["coefficients_source"]["roles"]["ffn"]
    proc = run_cli("provision", *common[:6], "--model", "llama-3.1-70b", "--hardware", "h100",
                   "--moe-routing", "power_law")
    assert proc.returncode == 2 and "--moe-routing: MoE routing power_law_1.2 needs a measured" \
        in proc.stderr and "llama-3.1-70b has no MoE layers" in proc.stderr
