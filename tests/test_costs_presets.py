"""Presets: every model on every GPU, sources for every number, the H20/H800 contrast,
heterogeneous bundles, KV memory feasibility, and clear errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from afdlib import costs
from afdlib.costs import (
    StepCoefficients,
    build_preset,
    load_coefficients,
    load_gpu,
    load_model,
    preset_coefficients,
    save_coefficients,
)
from afdlib.costs.memory import kv_feasibility, max_feasible_batch, smallest_ffn_instance
from afdlib.costs.presets import preset_dir
from afdlib.costs.specs import Deployment, gpu_from_dict, model_from_dict
from afdlib.errors import AfdInputError

MODELS = ["deepseek-v3", "qwen3-235b-a22b", "llama-3.1-70b"]
GPUS = ["h100-sxm", "h800", "h20", "h200", "b200"]


def test_required_presets_exist():
    assert set(MODELS) <= set(costs.model_names())
    assert set(GPUS) <= set(costs.hardware_names())


DTYPE_BYTES_BY_HAND = {"bf16": 2, "fp16": 2, "fp8": 1}


def _kv_bytes_per_token(model: dict) -> float:
    """KV-cache bytes of one token over all layers, from the preset file by hand."""
    if model["attention"] == "MLA":
        per_layer = model["kv_lora_rank"] + model["qk_rope_head_dim"]
    else:
        per_layer = 2 * model["num_kv_heads"] * model["head_dim"]
    return per_layer * DTYPE_BYTES_BY_HAND[model.get("kv_dtype", "bf16")] * model["num_layers"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("hardware", GPUS + ["h20/h800"])
def test_every_preset_pair_gives_valid_coefficients(model, hardware):
    r = build_preset(model, hardware, batch=128, theta=2000)
    c = r.coefficients
    assert isinstance(c, StepCoefficients)
    assert c.alpha_A > 0 and c.alpha_F > 0 and c.beta_A > 0
    assert c.comm_scales_with in ("B", "rB")
    # no kernel beats the memory roofline: reading the instance's KV cache at the peak HBM
    # bandwidth of all its GPUs (from the preset files, by hand) is a lower bound, and the
    # slope per cached token is at least the KV bytes of a token over that bandwidth
    kv = _kv_bytes_per_token(_raw("models", model))
    bandwidth = _raw("hardware", hardware.split("/")[0])["hbm_bandwidth"]
    n_a = r.curves.deployment.attention_gpus
    assert c.alpha_A >= kv / (n_a * bandwidth)
    assert float(c.attention_time(128 * 2000)) > 128 * 2000 * kv / (n_a * bandwidth)
    assert r.memory.fits and r.memory.max_batch >= 128
    assert set(r.curves.provenance) == {"attention", "ffn", "comm"}


def test_roofline_attention_slope_by_hand():
    # Llama-3.1-70B (80 layers, 8 KV heads of 128, bf16) on H100-SXM (3.35 TB/s), roofline at
    # 80 % of peak: a tensor-parallel instance of n GPUs splits the KV over min(n, 8) GPUs
    r = build_preset("llama-3.1-70b", "h100-sxm", batch=128, theta=2000, source="roofline")
    n = r.curves.deployment.attention_gpus
    assert r.curves.deployment.attention_parallel == "tp"
    kv_layer = 2 * 8 * 128 * 2
    assert r.coefficients.alpha_A == pytest.approx(80 * kv_layer / (min(n, 8) * 0.8 * 3.35e12),
                                                   rel=1e-9)


def _raw(kind, name):
    return json.loads((preset_dir() / kind / f"{name}.json").read_text())


@pytest.mark.parametrize("name", MODELS)
def test_model_presets_cite_every_number(name):
    data = _raw("models", name)
    for key, value in data.items():
        if isinstance(value, (int, float)) and value:
            assert data["sources"].get(key), f"{name}: {key} has no source"
    broken = copy.deepcopy(data)
    del broken["sources"]["hidden_size"]
    with pytest.raises(AfdInputError, match="no source cited for hidden_size"):
        model_from_dict(broken)


@pytest.mark.parametrize("name", GPUS + ["h20-3e"])
def test_hardware_presets_cite_every_number(name):
    data = _raw("hardware", name)
    for key, value in data.items():
        if isinstance(value, (int, float)):
            assert data["sources"].get(key), f"{name}: {key} has no source"
    for dtype in data["flops"]:
        assert data["sources"].get(f"flops.{dtype}")
    broken = copy.deepcopy(data)
    del broken["sources"]["hbm_bandwidth"]
    with pytest.raises(AfdInputError, match="no source cited for hbm_bandwidth"):
        gpu_from_dict(broken)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(AfdInputError, match="known models: .*deepseek-v3"):
        preset_coefficients("gpt-5", "h800")
    with pytest.raises(AfdInputError, match="known hardware: .*h800"):
        preset_coefficients("deepseek-v3", "tpu-v5")
    with pytest.raises(AfdInputError, match="known hardware"):
        preset_coefficients("deepseek-v3", "h20/tpu")
    with pytest.raises(AfdInputError, match="NAME or ATTN_NAME/FFN_NAME"):
        preset_coefficients("deepseek-v3", "h20/h800/h100-sxm")


@pytest.mark.parametrize("kw, match", [
    ({"batch": 0}, "batch"), ({"batch": 2.5}, "batch"), ({"theta": -3.0}, "theta"),
    ({"theta": float("nan")}, "theta"), ({"ratio": 0.0}, "ratio"),
    ({"ratio": float("inf")}, "ratio"), ({"source": "magic"}, "source"),
])
def test_bad_operating_points_rejected(kw, match):
    with pytest.raises(AfdInputError, match=match):
        preset_coefficients("qwen3-235b-a22b", "h200", **kw)


def test_impossible_batch_reports_largest_feasible():
    with pytest.raises(AfdInputError, match="largest feasible B"):
        preset_coefficients("llama-3.1-70b", "h800", batch=100_000, theta=100_000)


@pytest.mark.parametrize("source", ["auto", "roofline"])
@pytest.mark.parametrize("model", ["qwen3-235b-a22b", "llama-3.1-70b"])
def test_h20_cheaper_attention_dearer_ffn_than_h800(model, source):
    """Per GPU-second: alpha times the GPUs of the instance (instances differ in size)."""
    h20 = build_preset(model, "h20", batch=128, theta=2000, source=source)
    h800 = build_preset(model, "h800", batch=128, theta=2000, source=source)

    def per_gpu(r):
        d = r.curves.deployment
        return (r.coefficients.alpha_A * d.attention_gpus, r.coefficients.alpha_F * d.ffn_gpus)

    (a20, f20), (a800, f800) = per_gpu(h20), per_gpu(h800)
    assert a20 < a800
    assert f20 > 3 * f800


def test_mla_attention_is_dearer_on_h20():
    """DeepSeek's 128-head MLA is compute-bound: the H20's low FLOP/s make it dearer."""
    h20 = preset_coefficients("deepseek-v3", "h20", batch=128, theta=2000)
    h800 = preset_coefficients("deepseek-v3", "h800", batch=128, theta=2000)
    assert h20.alpha_A > 3 * h800.alpha_A


def test_heterogeneous_bundle_takes_each_side_from_its_gpu():
    kw = dict(batch=128, theta=2000, ratio=8.0, source="roofline")
    mixed = build_preset("qwen3-235b-a22b", "h20/h800", **kw)
    h20 = build_preset("qwen3-235b-a22b", "h20", **kw)
    h800 = build_preset("qwen3-235b-a22b", "h800", **kw)
    assert mixed.curves.deployment.label == "h20/h800"
    assert mixed.coefficients.alpha_A == pytest.approx(h20.coefficients.alpha_A)
    assert mixed.coefficients.beta_A == pytest.approx(h20.coefficients.beta_A)
    assert mixed.coefficients.alpha_F == pytest.approx(h800.coefficients.alpha_F)
    assert mixed.coefficients.beta_F == pytest.approx(h800.coefficients.beta_F)


def test_default_ratio_is_best_integer_of_the_curves():
    r = build_preset("deepseek-v3", "h200", batch=256, theta=599)
    curves = r.curves
    # the mean-field throughput per instance of the non-linear curves, written out here
    grid = np.arange(1, 65, dtype=float)
    t_a = curves.attention(256 * 599, batch=256)
    tau = [max(t_a, float(curves.comm(batch=256, ratio=x)), float(curves.ffn(x * 256)))
           for x in grid]
    lam = grid * 256 / ((grid + 1) * np.array(tau))
    assert r.ratio == grid[np.argmax(lam)]
    lo, hi = r.ffn_region
    assert lo <= r.ratio * 256 <= hi


def test_linearized_ffn_matches_curve_on_its_region():
    r = build_preset("deepseek-v3", "h200", batch=256, theta=599, ratio=8)
    lo, hi = r.ffn_region
    n = np.linspace(lo, hi, 9)
    c = r.coefficients
    rel = np.abs(c.alpha_F * n + c.beta_F - r.curves.ffn(n)) / r.curves.ffn(n)
    assert rel.max() < 0.15


def test_coefficients_round_trip_through_the_json_file(tmp_path):
    c = preset_coefficients("deepseek-v3", "h20/h800", batch=128, theta=2000)
    path = tmp_path / "c.json"
    save_coefficients(c, path)
    assert load_coefficients(path) == c
    assert set(json.loads(path.read_text())) == {"alpha_A", "beta_A", "alpha_F", "beta_F",
                                                 "alpha_C", "beta_C", "comm_scales_with"}


def test_measured_comm_only_over_nvlink():
    net = build_preset("deepseek-v3", "h200", batch=128, theta=2000)
    nv = build_preset("deepseek-v3", "h200", batch=128, theta=2000, link="nvlink")
    assert net.curves.provenance["comm"].startswith("roofline")
    assert nv.curves.provenance["comm"].startswith("measured")
    assert nv.coefficients.comm_scales_with == "B"


# -- KV memory ----------------------------------------------------------------------


def test_kv_feasibility_by_hand():
    m, g = load_model("llama-3.1-70b"), load_gpu("h100-sxm")
    d = Deployment(attention_gpu=g, ffn_gpu=g)
    weights = (80 * (2 * 8192 * 8192 + 2 * 8192 * 1024) + 2 * 8192 * 128256) * 2
    usable = 85899345920 * 0.9
    largest = int((usable - weights) // (327_680 * 599))
    assert max_feasible_batch(m, d, 599) == largest
    f = kv_feasibility(m, d, largest, 599)
    assert f.fits and f.max_batch == largest
    assert not kv_feasibility(m, d, largest + 1, 599).fits
    assert f.weight_bytes == pytest.approx(weights)
    # a safety margin of sigma lowers the largest B
    assert max_feasible_batch(m, d, 599, sigma=2000, z=3) < largest


def test_tp_and_dp_split_memory_as_documented():
    m, g = load_model("deepseek-v3"), load_gpu("h800")
    dp = Deployment(attention_gpu=g, ffn_gpu=g, attention_gpus=4, attention_parallel="dp")
    tp = Deployment(attention_gpu=g, ffn_gpu=g, attention_gpus=4, attention_parallel="tp")
    one = Deployment(attention_gpu=g, ffn_gpu=g)
    assert max_feasible_batch(m, dp, 1000) > 3 * max_feasible_batch(m, one, 1000)
    # TP splits the weights but not the MLA latent
    assert max_feasible_batch(m, one, 1000) < max_feasible_batch(m, tp, 1000) \
        < 1.2 * max_feasible_batch(m, one, 1000) + 50


def _ffn_weight_bytes(m: dict) -> float:
    """FFN-side weights of a preset file, by hand: dense SwiGLU MLPs, routed and shared
    experts (3 matrices of hidden x intermediate each)."""
    dense = m.get("dense_layers", 0)
    moe = m["num_layers"] - dense
    per_dense = 3 * m["hidden_size"] * m.get("dense_intermediate_size", 0)
    experts = m.get("num_experts", 0) + m.get("shared_experts", 0)
    per_moe = experts * 3 * m["hidden_size"] * m.get("moe_intermediate_size", 0)
    return (dense * per_dense + moe * per_moe) * DTYPE_BYTES_BY_HAND[m.get("weight_dtype", "bf16")]


@pytest.mark.parametrize("model, gpu", [("deepseek-v3", "h800"), ("deepseek-v3", "h200"),
                                        ("llama-3.1-70b", "h200"), ("qwen3-235b-a22b", "h20")])
def test_ffn_instance_sizes_hold_the_weights(model, gpu):
    # the fewest GPUs, a power of two, whose 90 % of HBM holds the FFN weights
    weights = _ffn_weight_bytes(_raw("models", model))
    usable = 0.9 * _raw("hardware", gpu)["memory_bytes"]
    by_hand = 1
    while weights / by_hand > usable:
        by_hand *= 2
    assert smallest_ffn_instance(load_model(model), load_gpu(gpu)) == by_hand
    assert weights / by_hand <= usable < weights / (by_hand / 2) or by_hand == 1


@pytest.mark.parametrize("kw", [{"batch": 0}, {"theta": 0.0}, {"sigma": -1.0},
                                {"reserve": 1.0}, {"theta": float("inf")}])
def test_bad_memory_inputs_rejected(kw):
    m, g = load_model("qwen3-235b-a22b"), load_gpu("h200")
    args = {"batch": 64, "theta": 1000.0}
    args.update(kw)
    batch, theta = args.pop("batch"), args.pop("theta")
    with pytest.raises(AfdInputError, match=next(iter(kw))):
        kv_feasibility(m, Deployment(attention_gpu=g, ffn_gpu=g), batch, theta, **args)


@pytest.mark.parametrize("short, name", [("h100", "h100-sxm"), ("H100_SXM", "h100-sxm"),
                                         ("b200-sxm", "b200"), ("h20", "h20"),
                                         ("h20-3e", "h20-3e")])
def test_hardware_short_forms(short, name):
    assert costs.resolve_hardware_name(short) == name
    assert load_gpu(short).name == name
    a, f = costs.parse_hardware(f"{short}/h800")
    assert (a.name, f.name) == (name, "h800")


def test_unknown_hardware_lists_the_known_and_the_short_forms():
    with pytest.raises(AfdInputError, match="unknown hardware 'a100'; known hardware: b200"):
        load_gpu("a100")


def test_moe_routing_through_the_presets():
    base = build_preset("deepseek-v3", "h200", batch=64, theta=2000.0, ratio=8)
    skew = build_preset("deepseek-v3", "h200", batch=64, theta=2000.0, ratio=8,
                        routing="power_law")
    assert skew.curves.routing == "power_law_1.2" and base.curves.routing == "balanced"
    assert "power_law_1.2 routing" in skew.curves.provenance["ffn"]
    # same instances, a slower FFN per token on the straggler rank
    assert skew.gpus == base.gpus
    assert skew.coefficients.alpha_F > 1.5 * base.coefficients.alpha_F
    # attention and communication do not depend on the routing
    assert skew.coefficients.alpha_A == base.coefficients.alpha_A
    fit = skew.curves.fits["ffn"]
    n = 64 * 8.0
    layers = skew.curves.model.moe_layers
    assert float(skew.curves.ffn(n)) - float(base.curves.ffn(n)) == pytest.approx(
        layers * (fit.time(n) - base.curves.fits["ffn"].time(n)), rel=1e-12)
    with pytest.raises(AfdInputError, match="llama-3.1-70b has no MoE layers"):
        build_preset("llama-3.1-70b", "h100", batch=32, routing="power_law")
    with pytest.raises(AfdInputError, match="no measured power_law_1.01 MoE table for h20 "):
        build_preset("deepseek-v3", "h20", batch=32, routing="power_law_1.01")


def test_routing_imbalance_by_direct_maximization():
    from afdlib.model import Objective

    ri = costs.routing_imbalance("qwen3-235b-a22b", "h200", batch=64, theta=2690.0)
    assert [c.routing for c in ri.cases] == ["balanced", "power_law_1.01", "power_law_1.2"]
    for c in ri.cases:
        co, b = c.preset.coefficients, c.preset.batch
        r = np.arange(1, 65, dtype=float)
        tau = np.maximum.reduce([np.full(r.shape, co.alpha_A * b * 2690.0 + co.beta_A),
                                 co.alpha_C * (r * b if co.comm_scales_with == "rB" else b)
                                 + co.beta_C, co.alpha_F * r * b + co.beta_F])
        g = c.preset.gpus
        lam = r * b / ((r * g.attention + g.ffn) * tau)
        assert c.r_int == int(np.argmax(lam)) + 1
        assert c.throughput == pytest.approx(lam.max(), rel=1e-12)
        assert abs(c.r_star - c.r_int) < 1.0
    ch = ri.change("power_law")
    assert ch["alpha_F"] > 1.5 and 0.8 < ch["beta_F"] < 1.25
    assert ch["r_int"] == ri.cases[2].r_int - ri.cases[0].r_int
    assert isinstance(ri.objective, Objective) and ri.objective.kind == "gpu"
    d = ri.to_dict()
    assert d["cases"][0]["routing"] == "balanced" and "power_law_1.2" in d["change"]
    with pytest.raises(AfdInputError, match="has no MoE layers"):
        costs.routing_imbalance("llama-3.1-70b", "h100")


def test_coefficient_file_with_gpu_counts(tmp_path):
    from afdlib.costs import load_coefficient_file
    from afdlib.model import InstanceGPUs

    c = StepCoefficients(alpha_A=1e-8, beta_A=1e-3, alpha_F=1e-6, beta_F=1e-2)
    path = tmp_path / "c.json"
    save_coefficients(c, path, gpus=InstanceGPUs(2, 8))
    loaded = load_coefficient_file(path)
    assert loaded.coefficients == c and loaded.gpus == InstanceGPUs(2, 8)
    assert load_coefficients(path) == c
    save_coefficients(c, path)
    assert load_coefficient_file(path).gpus is None
    path.write_text(json.dumps({**c.to_dict(), "gpus": {"attention": 0, "ffn": 8}}))
    with pytest.raises(AfdInputError, match="c.json: gpus: attention GPUs must be >= 1"):
        load_coefficient_file(path)


def test_linearization_for_the_per_gpu_objective():
    # the default linearization ratio is the best integer of the curves under the objective
    from afdlib.model import Objective

    per_gpu = build_preset("qwen3-235b-a22b", "h200", batch=64, theta=2690.0, objective="gpu")
    goal = Objective(kind="gpu", gpus=per_gpu.gpus)
    lam = per_gpu.curves.throughput(batch=64, theta=2690.0, ratio=np.arange(1, 65),
                                    objective=goal)
    assert per_gpu.ratio == int(np.argmax(lam)) + 1
    per_instance = build_preset("qwen3-235b-a22b", "h200", batch=64, theta=2690.0)
    assert per_instance.ratio < per_gpu.ratio          # 4-GPU FFN instance: more workers pay
