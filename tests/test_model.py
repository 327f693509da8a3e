"""The step model's one home: stage times, the step, intercept modes, the objective and the
operating point, each against values written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from afdlib.errors import AfdInputError
from afdlib.model import (
    COMM_SCALINGS,
    INTERCEPTS,
    OBJECTIVES,
    PER_INSTANCE,
    InstanceGPUs,
    InstancePrices,
    Objective,
    OperatingPoint,
    StepCoefficients,
    best_integer_ratio,
    comm_tokens,
    intercept_share,
    maximize_ratio,
    step_time,
)

C = StepCoefficients(alpha_A=2e-8, beta_A=1e-3, alpha_F=3e-6, beta_F=4e-3, alpha_C=5e-7,
                     beta_C=6e-4)


def test_stage_times_by_hand():
    assert float(C.attention_time(10_000)) == pytest.approx(2e-8 * 10_000 + 1e-3, rel=1e-15)
    assert float(C.ffn_time(batch=64, ratio=3)) == pytest.approx(3e-6 * 3 * 64 + 4e-3,
                                                                 rel=1e-15)
    # per-worker traffic ("B"): independent of the ratio
    assert float(C.comm_time(batch=64, ratio=3)) == pytest.approx(5e-7 * 64 + 6e-4, rel=1e-15)
    rb = StepCoefficients(**{**C.to_dict(), "comm_scales_with": "rB"})
    assert float(rb.comm_time(batch=64, ratio=3)) == pytest.approx(5e-7 * 192 + 6e-4, rel=1e-15)
    # intercepts scaled, slopes not
    assert float(C.ffn_time(batch=64, ratio=3, intercept_scale=2)) == pytest.approx(
        3e-6 * 192 + 8e-3, rel=1e-15)
    assert float(C.rest_of_step(batch=64, ratio=3)) == pytest.approx(
        max(3e-6 * 192 + 4e-3, 5e-7 * 64 + 6e-4), rel=1e-15)


def test_batch_and_ratio_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        C.comm_time(3, 64)  # the swapped floats that used to pass silently
    with pytest.raises(TypeError, match="positional"):
        C.ffn_time(3, 64)


def test_comm_tokens_and_its_choices():
    np.testing.assert_array_equal(comm_tokens("B", batch=8, ratio=[1, 2, 4]), [8, 8, 8])
    np.testing.assert_array_equal(comm_tokens("rB", batch=8, ratio=[1, 2, 4]), [8, 16, 32])
    assert COMM_SCALINGS == ("B", "rB")
    with pytest.raises(AfdInputError, match="comm_scales_with must be one of B, rB"):
        comm_tokens("r", batch=8, ratio=1)


def test_step_time_is_the_max_or_the_round_trip():
    assert float(step_time(3.0, 1.0, 2.0)) == 3.0
    assert float(step_time(1.0, 1.0, 5.0)) == 5.0
    # with m microbatches the step also holds one round trip (A + t_F + 2 t_C) / m
    assert float(step_time(3.0, 1.0, 2.0, microbatches=1)) == 3.0 + 2.0 + 2 * 1.0
    assert float(step_time(3.0, 1.0, 2.0, microbatches=2)) == 3.5
    assert float(step_time(3.0, 1.0, 2.0, microbatches=4)) == 3.0
    with pytest.raises(AfdInputError, match="microbatches must be >= 1"):
        step_time(3.0, 1.0, 2.0, microbatches=0)


def test_intercept_share():
    assert intercept_share("per_microbatch", 4) == 1.0
    assert intercept_share("per_step", 4) == 0.25
    assert INTERCEPTS == ("per_microbatch", "per_step")
    with pytest.raises(AfdInputError, match="intercepts must be one of"):
        intercept_share("never", 2)
    with pytest.raises(AfdInputError, match="microbatches must be >= 1"):
        intercept_share("per_step", 0)


@pytest.mark.parametrize("objective, den", [
    (Objective(), lambda r: r + 1),
    (Objective(kind="instance", prices=InstancePrices(3.0, 7.0)), lambda r: r + 1),
    (Objective(prices=InstancePrices(2.0, 5.0)), lambda r: 2 * r + 5),
    (Objective(kind="gpu", gpus=InstanceGPUs(2, 16)), lambda r: 2 * r + 16),
])
def test_the_objective_by_hand(objective, den):
    r = np.array([1.0, 3.0, 10.0])
    got = objective.throughput(r, 64, 0.02)
    np.testing.assert_allclose(got, r * 64 / (den(r) * 0.02), rtol=1e-15)


def test_objective_units_and_weights():
    assert OBJECTIVES == ("instance", "gpu", "price")
    assert Objective().unit == "tokens/s per instance" and Objective().per_instance
    assert Objective(prices=InstancePrices(1.0, 4.0)).unit == "tokens/s per price unit"
    assert Objective(kind="gpu", gpus=InstanceGPUs(1, 8)).unit == "tokens/s per GPU"
    assert Objective(kind="gpu", gpus=InstanceGPUs(2, 8)).weight_ratio == 4.0
    assert PER_INSTANCE.weights == (1.0, 1.0)
    with pytest.raises(AfdInputError, match="objective must be one of instance, gpu, price"):
        Objective(kind="dollars")
    with pytest.raises(AfdInputError, match="FFN GPUs must be >= 1"):
        InstanceGPUs(1, 0)
    with pytest.raises(AfdInputError, match="attention GPUs must be an integer"):
        InstanceGPUs(1.5, 8)


def test_operating_point_validates_and_derives():
    p = OperatingPoint(coeffs=C, theta=500.0, batch=64.0, load_std=300.0)
    assert p.batch == 64 and isinstance(p.batch, int)
    assert p.mean_attention_time == pytest.approx(2e-8 * 64 * 500 + 1e-3, rel=1e-15)
    assert p.attention_std == pytest.approx(2e-8 * 8 * 300, rel=1e-15)
    assert p.replace(theta=1.0).theta == 1.0 and p.theta == 500.0
    assert p.integer_batch() == 64
    with pytest.raises(AfdInputError, match="batch must be an integer"):
        OperatingPoint(coeffs=C, theta=500.0, batch=2.5).integer_batch()
    with pytest.raises(AfdInputError, match="theta must be >= 0"):
        p.replace(theta=-1.0)
    with pytest.raises(AfdInputError, match="batch must be > 0"):
        p.replace(batch=0)


def test_coefficients_from_dict_names_the_source():
    with pytest.raises(AfdInputError, match="my.json: unknown key"):
        StepCoefficients.from_dict({**C.to_dict(), "alpha_a": 1.0}, source="my.json")
    with pytest.raises(AfdInputError, match="my.json: missing key"):
        StepCoefficients.from_dict({"alpha_A": 1e-8}, source="my.json")
    with pytest.raises(AfdInputError, match="my.json: coefficient beta_F must be >= 0"):
        StepCoefficients.from_dict({**C.to_dict(), "beta_F": -1.0}, source="my.json")


def test_maximizers_find_a_known_optimum():
    # r / ((r + 1)(r + 4)) peaks at r = 2 (derivative: (r + 1)(r + 4) = r (2 r + 5))
    r, v = maximize_ratio(lambda x: x / ((x + 1) * (x + 4)), 1e-3, 1e3)
    assert r == pytest.approx(2.0, rel=1e-6) and v == pytest.approx(2 / 18, rel=1e-12)
    k, values = best_integer_ratio(lambda x: x / ((x + 1) * (x + 4)), 10)
    assert k == 2 and values[1] == pytest.approx(2 / 18) and len(values) == 10
    with pytest.raises(AfdInputError, match="max_ratio must be >= 1"):
        best_integer_ratio(lambda x: x, 0)
    assert math.isclose(values.max(), 2 / 18)


def test_gpu_prices_and_the_chosen_objective():
    from afdlib.model import GPUPrices, choose_objective

    gpus = InstanceGPUs(attention=2, ffn=8)
    prices = GPUPrices(attention=3.0, ffn=2.0).instance_prices(gpus)
    assert (prices.attention, prices.ffn) == (6.0, 16.0)
    # defaults: per GPU where the counts are known, else per instance; prices win
    assert choose_objective(gpus=gpus).kind == "gpu"
    assert choose_objective().kind == "instance" and choose_objective().per_instance
    o = choose_objective(gpus=gpus, gpu_prices=GPUPrices(3.0, 2.0))
    assert o.kind == "price" and o.weights == (6.0, 16.0) and o.gpus == gpus
    assert choose_objective("instance", gpus=gpus).weights == (1.0, 1.0)
    # equal per-GPU prices are the per-GPU objective up to a constant
    r = np.arange(1.0, 20.0)
    a = choose_objective(gpus=gpus, gpu_prices=GPUPrices(2.5, 2.5)).throughput(r, 64, 0.02)
    b = choose_objective(gpus=gpus).throughput(r, 64, 0.02)
    np.testing.assert_allclose(a * 2.5, b, rtol=1e-15)
    with pytest.raises(AfdInputError, match="objective 'gpu' needs the GPU counts"):
        choose_objective("gpu")
    with pytest.raises(AfdInputError, match="per-GPU prices need the GPU counts"):
        choose_objective(gpu_prices=GPUPrices(1.0, 1.0))
    with pytest.raises(AfdInputError, match="objective 'price' needs prices"):
        choose_objective("price", gpus=gpus)
    with pytest.raises(AfdInputError, match="attention GPU price must be > 0"):
        GPUPrices(0.0, 1.0)
    with pytest.raises(AfdInputError, match="FFN GPU price must be > 0"):
        GPUPrices(1.0, -2.0)
    with pytest.raises(AfdInputError, match="not both"):
        choose_objective(gpus=gpus, gpu_prices=GPUPrices(1.0, 1.0), prices=InstancePrices(1, 2))


def test_objective_per_gpu_and_json():
    gpus = InstanceGPUs(attention=1, ffn=4)
    o = Objective(prices=InstancePrices(1.0, 3.0), gpus=gpus)
    r = np.array([1.0, 5.0])
    np.testing.assert_allclose(o.throughput_per_gpu(r, 32, 0.01), r * 32 / ((r + 4) * 0.01),
                               rtol=1e-15)
    assert Objective().throughput_per_gpu(r, 32, 0.01) is None and Objective().per_gpu() is None
    d = o.to_dict()
    assert d == {"kind": "price", "unit": "tokens/s per price unit",
                 "weights": {"attention": 1.0, "ffn": 3.0},
                 "prices": {"attention": 1.0, "ffn": 3.0}, "gpus": {"attention": 1, "ffn": 4}}
    assert Objective(kind="gpu", gpus=InstanceGPUs(1, 1)).unit == "tokens/s per GPU"
    with pytest.raises(AfdInputError, match="objective 'gpu' needs the GPU counts"):
        Objective(kind="gpu")
    assert InstanceGPUs.from_dict({"attention": 2, "ffn": 8}) == InstanceGPUs(2, 8)
    with pytest.raises(AfdInputError, match="f.json: unknown key"):
        InstanceGPUs.from_dict({"attention": 2, "ffn": 8, "x": 1}, source="f.json")
    with pytest.raises(AfdInputError, match="missing key"):
        InstanceGPUs.from_dict({"attention": 2})
    with pytest.raises(AfdInputError, match="FFN GPUs must be >= 1"):
        InstanceGPUs.from_dict({"attention": 2, "ffn": 0})
