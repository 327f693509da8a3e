"""``afd simulate`` and ``afd sweep``: the JSON contract, agreement with an independent
simulation, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from afdlib.cli import main
from afdlib.costs import StepCoefficients, save_coefficients
from afdlib.sim import Bundle, simulate_reference
from afdlib.workload import Geometric, IndependentLengths
from tests.conftest import public_trace_file

COEFFS = StepCoefficients(alpha_A=1e-6, beta_A=1e-3, alpha_F=2e-5, beta_F=2e-3,
                          alpha_C=1e-5, beta_C=2e-4)
SIM_KEYS = {"throughput_per_instance", "mean_step_time", "attention_idle", "ffn_idle",
            "barrier_overhead", "steps"}


def run_cli(*args):
    """Run ``python -m afdlib`` in a subprocess: what a user's shell sees."""
    return subprocess.run([sys.executable, "-m", "afdlib", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=120)


@pytest.fixture
def coeffs_file(tmp_path):
    path = tmp_path / "coeffs.json"
    save_coefficients(COEFFS, path)
    return str(path)


def call(capsys, *args):
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured


def test_simulate_json_keys_and_agreement_with_the_reference_loop(coeffs_file, capsys):
    status, cap = call(capsys, "simulate", "--prompt", "geometric:150,start=0", "--decode",
                       "geometric:60", "--batch", "32", "--ratio", "4", "--coeffs",
                       coeffs_file, "--steps", "20000", "--seed", "3", "--json")
    assert status == 0
    out = json.loads(cap.out)
    assert SIM_KEYS <= set(out)
    assert out["steps"] == 20000
    lo, hi = out["throughput_ci95"]
    assert lo < out["throughput_per_instance"] < hi
    ref = simulate_reference(IndependentLengths(Geometric(150, start=0), Geometric(60)),
                             Bundle(4, 32, COEFFS), steps=20000, seed=99)
    assert out["throughput_per_instance"] == pytest.approx(ref.throughput_per_instance,
                                                           rel=0.02)
    # the FFN is busy t_F = alpha_F r B + beta_F of every step (by hand from COEFFS), so its
    # idle share is 1 - t_F / E[tau]; attention's must match the independent loop's
    t_f = 2e-5 * 4 * 32 + 2e-3
    assert out["ffn_idle"] == pytest.approx(1 - t_f / out["mean_step_time"], rel=1e-9)
    assert out["attention_idle"] == pytest.approx(ref.attention_idle, abs=0.01)
    # the barrier overhead is close to the Gaussian model's sigma_A E[max of 4 normals]
    # (a different method; one run's noise is a few percent)
    from afdlib.model import OperatingPoint
    from afdlib.provision import gaussian_barrier_overhead
    from afdlib.workload import load_stats

    stats = load_stats(IndependentLengths(Geometric(150, start=0), Geometric(60)))
    gauss = gaussian_barrier_overhead(OperatingPoint(coeffs=COEFFS, theta=stats.theta,
                                                     load_std=stats.load_std, batch=32), 4)
    assert out["barrier_overhead"] == pytest.approx(float(gauss), rel=0.1)


def test_simulate_pipeline_and_cold_start_options(coeffs_file, capsys):
    base = ["simulate", "--prompt", "geometric:150,start=0", "--decode", "geometric:60",
            "--batch", "32", "--ratio", "4", "--coeffs", coeffs_file, "--steps", "3000"]
    status, cap = call(capsys, *base, "--engine", "pipeline", "--microbatches", "4", "--json")
    pipe = json.loads(cap.out)
    assert status == 0 and pipe["engine"] == "pipeline" and pipe["microbatches"] == 4
    status, cap = call(capsys, *base, "--init", "cold", "--warmup", "500", "--json")
    cold = json.loads(cap.out)
    assert status == 0 and cold["init"] == "cold" and cold["measured_steps"] == 2500
    status, cap = call(capsys, *base)  # human-readable
    assert status == 0 and "throughput" in cap.out and "barrier overhead" in cap.out


def test_simulate_a_public_trace_resampled_and_replayed(coeffs_file, capsys):
    public_trace_file("sharegpt_8k")  # skips without the local trace folder
    args = ["simulate", "--trace", "sharegpt_8k", "--batch", "16", "--ratio", "3",
            "--coeffs", coeffs_file, "--steps", "2000", "--json"]
    status, cap = call(capsys, *args)
    assert status == 0 and json.loads(cap.out)["lengths"] == "resample"
    status, cap = call(capsys, *args, "--replay", "--init", "cold")
    assert status == 0 and json.loads(cap.out)["lengths"] == "replay"


def test_sweep_json(coeffs_file, capsys):
    status, cap = call(capsys, "sweep", "--prompt", "geometric:150,start=0", "--decode",
                       "geometric:60", "--batch", "32", "--ratios", "1:12", "--coeffs",
                       coeffs_file, "--steps", "2000", "--json")
    assert status == 0
    out = json.loads(cap.out)
    ratios = [row["ratio"] for row in out["rows"]]
    assert ratios == list(range(1, 13))
    best = max(out["rows"], key=lambda row: row["throughput_per_instance"])
    assert out["best_ratio"] == best["ratio"]
    assert cap.err == ""  # no progress bar when stderr is not a terminal


def test_sweep_progress_bar_on_request(tmp_path):
    # an FFN-bound bundle of one-step requests: every step lasts t_F(r) = alpha_F r B +
    # beta_F exactly, with beta_F = 4 alpha_F B so that r_peak = 2. By hand (B = 8):
    # Lambda(1) = 8 / (2 * 0.010) = 400, Lambda(2) = 16 / (3 * 0.012) = 444.4,
    # Lambda(3) = 24 / (4 * 0.014) = 428.6 tokens/s per instance: the best is 2.
    path = tmp_path / "ffn.json"
    save_coefficients(StepCoefficients(alpha_A=1e-7, beta_A=1e-3, alpha_F=2.5e-4,
                                       beta_F=8e-3), path)
    result = run_cli("sweep", "--prompt", "deterministic:10", "--decode", "deterministic:1",
                     "--batch", "8", "--ratios", "1:3", "--coeffs", str(path), "--steps",
                     "300", "--json", "--progress")
    assert result.returncode == 0
    assert "100% 900/900" in result.stderr  # 3 ratios of 300 steps
    out = json.loads(result.stdout)
    assert out["best_ratio"] == 2
    by_hand = [400.0, 16 / (3 * 0.012), 24 / (4 * 0.014)]
    got = [row["throughput_per_instance"] for row in out["rows"]]
    np.testing.assert_allclose(got, by_hand, rtol=1e-9)


LAWS = ["--prompt", "geometric:100", "--decode", "geometric:20"]


@pytest.mark.parametrize("extra, fragment", [
    (["simulate", *LAWS, "--batch", "8", "--ratio", "0"], "--ratio"),
    (["simulate", *LAWS, "--batch", "0", "--ratio", "2"], "--batch"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "2", "--steps", "0"], "--steps"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "nan"], "--ratio"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "2", "--steps", "10", "--warmup", "10"],
     "--warmup"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "2", "--seed", "-3"], "--seed"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "2", "--engine", "pipeline",
      "--microbatches", "9"], "--microbatches"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "2", "--engine", "pipeline",
      "--microbatches", "1"], "--microbatches"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "2", "--engine", "warp"], "--engine"),
    (["simulate", *LAWS, "--batch", "8", "--ratio", "2", "--replay"], "--replay"),
    (["simulate", "--prompt", "geometric:nan", "--decode", "geometric:20", "--batch", "8",
      "--ratio", "2"], "geometric mean"),
    (["simulate", "--prompt", "geometric:10", "--decode", "deterministic:0", "--batch", "8",
      "--ratio", "2"], "decode"),
    (["simulate", "--prompt", "geometric:10", "--batch", "8", "--ratio", "2"], "--decode"),
    (["simulate", *LAWS, "--batch", "8"], "--ratio"),
    (["sweep", *LAWS, "--batch", "8", "--ratios", "5:2"], "HI must be >= LO"),
    (["sweep", *LAWS, "--batch", "8", "--ratios", "0:4"], "LO must be >= 1"),
    (["sweep", *LAWS, "--batch", "8", "--ratios", "1:nan"], "integers"),
    (["sweep", *LAWS, "--batch", "8", "--ratios", "4"], "LO:HI"),
    (["sweep", *LAWS, "--batch", "8"], "--ratios"),
])
def test_bad_input_exits_2_with_one_line(coeffs_file, extra, fragment):
    args = list(extra)
    if "--coeffs" not in args:
        args += ["--coeffs", coeffs_file]
    result = run_cli(*args, "--json")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_coefficient_files_and_missing_presets(tmp_path):
    bad = tmp_path / "nan.json"
    bad.write_text('{"alpha_A": NaN, "beta_A": 0, "alpha_F": 1e-6, "beta_F": 0}')
    result = run_cli("simulate", *LAWS, "--batch", "8", "--ratio", "2", "--coeffs", str(bad))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "nan.json" in result.stderr
    result = run_cli("simulate", *LAWS, "--batch", "8", "--ratio", "2")
    assert result.returncode == 2 and "--coeffs" in result.stderr


def test_model_and_hardware_presets_match_their_coefficient_file(tmp_path, capsys):
    from afdlib import costs
    from afdlib.cli.laws import parse_length_law
    from afdlib.workload import load_stats

    if getattr(costs, "preset_coefficients", None) is None:
        pytest.skip("presets are not available")
    law = ["--prompt", "geometric:100,start=0", "--decode", "geometric:50"]
    theta = load_stats(IndependentLengths(parse_length_law("geometric:100,start=0"),
                                          parse_length_law("geometric:50"))).theta
    coeffs = costs.preset_coefficients("deepseek-v3", "h800", batch=64, theta=theta)
    path = tmp_path / "preset.json"
    save_coefficients(coeffs, path)
    common = ["simulate", *law, "--batch", "64", "--ratio", "3", "--steps", "2000", "--json"]
    status, cap = call(capsys, *common, "--model", "deepseek-v3", "--hardware", "h800")
    assert status == 0
    by_name = json.loads(cap.out)
    status, cap = call(capsys, *common, "--coeffs", str(path))
    assert status == 0
    assert json.loads(cap.out)["throughput_per_instance"] == pytest.approx(
        by_name["throughput_per_instance"], rel=1e-12)


BASE = ["simulate", "--prompt", "geometric:150,start=0", "--decode", "geometric:60",
        "--batch", "32", "--ratio", "4"]


@pytest.mark.parametrize("extra, flag", [
    (["--microbatches", "4"], "--microbatches"),
    (["--intercepts", "per_step"], "--intercepts"),
    (["--engine", "step", "--microbatches", "2"], "--microbatches"),
])
def test_options_of_the_pipeline_are_rejected_with_the_step_engine(coeffs_file, extra, flag):
    for command in ("simulate", "sweep"):
        args = [command, *BASE[1:7], *(["--ratio", "4"] if command == "simulate" else
                                       ["--ratios", "1:3"]), "--coeffs", coeffs_file, *extra]
        result = run_cli(*args)
        assert result.returncode == 2 and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and flag in lines[0] and "--engine pipeline" in lines[0]


def test_simulate_json_reports_step_time_quantiles_of_its_steps(coeffs_file, tmp_path, capsys):
    path = tmp_path / "steps.npz"
    status, cap = call(capsys, *BASE, "--coeffs", coeffs_file, "--steps", "5000",
                       "--warmup", "200", "--records", str(path), "--json")
    assert status == 0
    out = json.loads(cap.out)
    records = np.load(path)
    assert records["loads"].shape == (5000, 4) and records["step_time"].shape == (5000,)
    tau = records["step_time"][200:]
    assert out["mean_step_time"] == pytest.approx(tau.mean(), rel=1e-12)
    for key, q in (("step_time_p50", 0.5), ("step_time_p99", 0.99)):
        exact = np.quantile(tau, q, method="inverted_cdf")
        assert abs(out[key] - exact) <= out["step_time_quantile_rtol"] * exact
    assert out["step_time_p50"] < out["mean_step_time"] * 1.1 < out["step_time_p99"] * 1.1
    assert out["objective"]["unit"] == "tokens/s per instance"
    assert out["throughput"] == out["throughput_per_instance"] and out["records"] == str(path)


def test_simulate_records_to_csv_and_bad_record_files(coeffs_file, tmp_path, capsys):
    path = tmp_path / "steps.csv"
    status, cap = call(capsys, *BASE, "--coeffs", coeffs_file, "--steps", "300",
                       "--records", str(path))
    assert status == 0 and "records" in cap.out
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    assert table.shape == (300, 2 + 2 * 4) and table[:, 0].tolist() == list(range(300))
    header = path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["step", "step_time_s", "load_0"]
    for bad, fragment in ((tmp_path / "steps.txt", ".npz or .csv"),
                          (tmp_path / "missing" / "steps.npz", "does not exist")):
        result = run_cli(*BASE, "--coeffs", coeffs_file, "--steps", "300", "--records",
                         str(bad))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "--records" in result.stderr and fragment in result.stderr


def test_simulate_progress_bar_with_a_time_estimate_on_request_only(coeffs_file):
    result = run_cli(*BASE, "--coeffs", coeffs_file, "--steps", "300000", "--progress")
    assert result.returncode == 0
    assert "simulate [" in result.stderr and "100% 300000/300000" in result.stderr
    assert "65536/300000" in result.stderr and "left" in result.stderr  # first chunk: ETA
    quiet = run_cli(*BASE, "--coeffs", coeffs_file, "--steps", "300000")
    assert quiet.returncode == 0 and quiet.stderr == ""  # stderr is a pipe here


def test_simulate_draws_the_bar_on_a_terminal(coeffs_file):
    # stderr attached to a pseudo-terminal, as in an interactive shell
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "afdlib", *BASE, "--coeffs",
                               coeffs_file, "--steps", "300000"], stdout=subprocess.PIPE,
                              stderr=follower, env=dict(os.environ), timeout=120)
        os.close(follower)
        follower = None
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0 and "throughput" in proc.stdout.decode()
    assert "\r" in shown and "100% 300000/300000" in shown
