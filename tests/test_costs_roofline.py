"""Roofline numbers against hand-computed cases, and bad specifications rejected."""

from __future__ import annotations

import math

import numpy as np
import pytest

from afdlib.costs import Deployment, Efficiency, load_gpu, load_model
from afdlib.costs.roofline import (
    attention_roofline,
    comm_roofline,
    experts_touched,
    ffn_gpus_per_token,
    ffn_roofline_parts,
    ffn_roofline_time,
)
from afdlib.costs.specs import GPUSpec, ModelSpec
from afdlib.errors import AfdInputError

IDEAL = Efficiency(hbm=1.0, compute=1.0, network=1.0, layer_overhead=0.0)


def dep(attn, ffn=None, **kw):
    a = load_gpu(attn)
    return Deployment(attention_gpu=a, ffn_gpu=load_gpu(ffn) if ffn else a, **kw)


def test_llama_shapes_by_hand():
    m = load_model("llama-3.1-70b")
    # K and V: 8 heads x 128 elements x 2 bytes each, 80 layers
    assert m.kv_bytes_per_token == 2 * 8 * 128 * 2 * 80 == 327_680
    # q and o are 8192 x 8192, k and v 8192 x 1024
    assert m.attention_params_per_layer == 2 * 8192 * 8192 + 2 * 8192 * 1024
    assert m.attention_flops_per_kv_token_layer == 4 * 64 * 128
    assert m.dense_ffn_params == 3 * 8192 * 28672


def test_deepseek_mla_shapes_by_hand():
    m = load_model("deepseek-v3")
    assert m.kv_elements_per_token_layer == 512 + 64
    assert m.kv_bytes_per_token == 576 * 2 * 61
    q = 7168 * 1536 + 1536 * 128 * (128 + 64)
    kv_a = 7168 * (512 + 64)
    kv_b = 512 * 128 * (128 + 128)
    o = 128 * 128 * 7168
    assert m.attention_params_per_layer == q + kv_a + kv_b + o == 187_105_280
    assert m.attention_flops_per_kv_token_layer == 2 * 128 * (2 * 512 + 64)
    # total parameters: the model card's 671B (without the 14B multi-token-prediction module)
    assert 660e9 < m.total_params < 690e9


def test_qwen_total_params_match_the_name():
    m = load_model("qwen3-235b-a22b")
    assert 230e9 < m.total_params < 240e9


def test_attention_roofline_llama_h100_by_hand():
    r = attention_roofline(load_model("llama-3.1-70b"), dep("h100-sxm"), IDEAL)
    assert r.alpha_memory == pytest.approx(327_680 / 3.35e12, rel=1e-12)
    assert r.alpha_compute == pytest.approx(80 * 4 * 64 * 128 / 989e12, rel=1e-12)
    assert r.alpha == r.alpha_memory  # GQA decode is memory-bound
    layer_params = 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024)
    assert r.layer_weight_time == pytest.approx(layer_params * 2 / 3.35e12, rel=1e-12)
    assert r.head_weight_time == pytest.approx(8192 * 128256 * 2 / 3.35e12, rel=1e-12)
    # below ~295 slots the projections stream weights, above they are compute-bound
    assert r.projection_time(1) == pytest.approx(r.layer_weight_time)
    assert r.projection_time(1000) == pytest.approx(1000 * 2 * layer_params / 989e12)
    t = r.time(256 * 599, batch=256)
    assert t == pytest.approx(r.alpha * 256 * 599 + r.projection_time(256) + r.head_time(256))


def test_attention_tp_splits_kv_only_up_to_kv_heads():
    m = load_model("qwen3-235b-a22b")  # 4 KV heads
    one = attention_roofline(m, dep("h100-sxm", attention_gpus=1), IDEAL)
    four = attention_roofline(m, dep("h100-sxm", attention_gpus=4), IDEAL)
    eight = attention_roofline(m, dep("h100-sxm", attention_gpus=8), IDEAL)
    assert four.alpha_memory == pytest.approx(one.alpha_memory / 4)
    assert eight.alpha_memory == pytest.approx(four.alpha_memory)  # KV replicated beyond 4
    assert eight.layer_weight_time == pytest.approx(one.layer_weight_time / 8)


def test_mla_is_compute_bound_on_h20_and_memory_bound_tp_split_does_not_help():
    m = load_model("deepseek-v3")
    h20 = attention_roofline(m, dep("h20"), IDEAL)
    assert h20.alpha_compute > h20.alpha_memory
    assert h20.alpha_compute == pytest.approx(61 * 2 * 128 * 1088 / 148e12)
    tp = attention_roofline(m, dep("h800", attention_gpus=8, attention_parallel="tp"), IDEAL)
    one = attention_roofline(m, dep("h800"), IDEAL)
    assert tp.alpha_memory == pytest.approx(one.alpha_memory)  # the latent is replicated


def test_experts_touched_and_destinations_by_hand():
    assert experts_touched(4, 1, 2) == pytest.approx(1 - 0.75 ** 2)
    small = ModelSpec(name="toy", attention="MHA", num_layers=1, hidden_size=8, num_heads=2,
                      num_kv_heads=2, head_dim=4, vocab_size=10, num_experts=8,
                      experts_per_token=2, moe_intermediate_size=4)
    # one expert per GPU: a token visits exactly its two experts' GPUs
    assert ffn_gpus_per_token(small, 8) == pytest.approx(2.0)
    # two experts per GPU: P(skip a GPU) = C(6,2)/C(8,2) = 15/28
    assert ffn_gpus_per_token(small, 4) == pytest.approx(4 * (1 - 15 / 28))
    assert ffn_gpus_per_token(small, 1) == pytest.approx(1.0)


def test_moe_plateau_and_compute_line_by_hand():
    m = load_model("deepseek-v3")
    d = dep("h200", ffn_gpus=8)
    expert = 3 * 7168 * 2048
    plateau = 32 * expert * 1 / 4.8e12  # 32 local FP8 experts streamed once per layer
    parts = ffn_roofline_parts(m, d, np.array([4096.0, 1e6]), IDEAL)
    assert parts["routed"][0] / 58 == pytest.approx(plateau, rel=1e-9)
    compute = 2 * expert * 1e6 * 8 / 8 / 1979e12
    assert parts["routed"][1] / 58 == pytest.approx(compute, rel=1e-12)
    shared = max(expert / 4.8e12, 2 * expert * 4096 / 8 / 1979e12)
    assert parts["shared"][0] / 58 == pytest.approx(shared, rel=1e-12)
    dense = max(3 * 7168 * 18432 / 8 / 4.8e12, 2 * 3 * 7168 * 18432 * 4096 / 8 / 1979e12)
    assert parts["dense"][0] / 3 == pytest.approx(dense, rel=1e-12)
    t = ffn_roofline_time(m, d, [1, 16, 64, 256, 4096], IDEAL)
    assert np.all(np.diff(t) > 0)  # ramp while experts are touched


def test_comm_roofline_by_hand():
    m = load_model("llama-3.1-70b")
    c = comm_roofline(m, dep("h100-sxm", ffn_gpus=2), IDEAL)
    per_slot = 2 * 80 * 1 * 8192 * 2  # dispatch and combine of bf16 hidden states
    assert c.per_slot_egress == pytest.approx(per_slot / 50e9)
    assert c.per_slot_ingress == pytest.approx(per_slot / (2 * 50e9))
    assert c.latency == pytest.approx(2 * 80 * 1e-5)
    assert c.binding(1.0) == "B" and c.binding(3.0) == "rB"
    assert c.time(batch=256, ratio=3.0) == pytest.approx(c.latency + 3 * 256 * c.per_slot_ingress)
    nv = comm_roofline(m, dep("h100-sxm", ffn_gpus=2, link="nvlink"), IDEAL)
    assert nv.per_slot_egress == pytest.approx(per_slot / 450e9)


def test_efficiency_scales_time_inversely():
    m = load_model("qwen3-235b-a22b")
    full = attention_roofline(m, dep("h200"), IDEAL)
    half = attention_roofline(m, dep("h200"), Efficiency(hbm=0.5, compute=0.5, network=1,
                                                         layer_overhead=0))
    assert half.alpha == pytest.approx(2 * full.alpha)


@pytest.mark.parametrize("kw, match", [
    ({"hidden_size": -1}, "hidden_size"),
    ({"num_heads": 6}, "multiple of num_kv_heads"),
    ({"experts_per_token": 300}, "exceeds num_experts"),
    ({"num_layers": 2.5}, "integer"),
    ({"kv_dtype": "fp7"}, "kv_dtype"),
    ({"attention": "XYZ"}, "attention must be one of MHA, GQA, MLA"),
])
def test_bad_model_spec_rejected(kw, match):
    base = dict(name="bad", attention="GQA", num_layers=4, hidden_size=64, num_heads=8,
                num_kv_heads=4, head_dim=8, vocab_size=100, num_experts=16,
                experts_per_token=2, moe_intermediate_size=32)
    base.update(kw)
    with pytest.raises(AfdInputError, match=match):
        ModelSpec(**base)


@pytest.mark.parametrize("kw, match", [
    ({"hbm_bandwidth": float("nan")}, "hbm_bandwidth must be finite"),
    ({"memory_bytes": 0}, "memory_bytes must be > 0"),
    ({"flops": {"fp8": 1e15}}, "bf16"),
    ({"flops": {"bf16": -1.0}}, "bf16"),
    ({"link_latency": -1e-6}, "link_latency"),
])
def test_bad_gpu_spec_rejected(kw, match):
    base = dict(name="bad", memory_bytes=80e9, hbm_bandwidth=3e12, flops={"bf16": 1e15},
                nvlink_bandwidth=4e11, network_bandwidth=5e10, link_latency=1e-5)
    base.update(kw)
    with pytest.raises(AfdInputError, match=match):
        GPUSpec(**base)


@pytest.mark.parametrize("kw", [{"hbm": 0.0}, {"compute": 1.5}, {"network": math.nan},
                                {"layer_overhead": -1.0}])
def test_bad_efficiency_rejected(kw):
    with pytest.raises(AfdInputError, match="efficiency"):
        Efficiency(**kw)


def test_bad_deployment_rejected():
    g = load_gpu("h800")
    with pytest.raises(AfdInputError, match="attention_gpus"):
        Deployment(attention_gpu=g, ffn_gpu=g, attention_gpus=0)
    with pytest.raises(AfdInputError, match="attention_parallel"):
        Deployment(attention_gpu=g, ffn_gpu=g, attention_parallel="pp")
    with pytest.raises(AfdInputError, match="exceeds"):
        ffn_roofline_time(load_model("qwen3-235b-a22b"),
                          Deployment(attention_gpu=g, ffn_gpu=g, ffn_gpus=256), [1.0])
