"""The finite-trace measurement: a plain walk of the trace served once, a closed form, and
the stationary throughput it approaches for a long i.i.d. trace."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afdlib.errors import AfdInputError
from afdlib.model import InstanceGPUs, Objective, OperatingPoint, StepCoefficients
from afdlib.sim import Bundle, simulate_finite_trace, simulate_step, sweep_finite_trace
from afdlib.workload import Geometric, IndependentLengths, JointLengths, Uniform

COEFFS = StepCoefficients(alpha_A=1e-4, beta_A=1e-3, alpha_F=3e-4, beta_F=2e-3,
                          alpha_C=2e-4, beta_C=5e-4)


def walk(prompt, decode, ratio, batch, coeffs, fraction):
    """Serve the rows once, step by step in plain Python: slot i starts row i, a slot
    whose request ended takes the next row (slots in order), idle once none is left. Each
    step lasts max(slowest busy worker's attention, link, FFN) for the busy slots' tokens;
    stop at the end of the step in which the ceil(f N)-th request makes its last token."""
    n, slots = len(prompt), ratio * batch
    target = math.ceil(fraction * n)
    nxt = 0
    ctx, rem = [None] * slots, [0] * slots
    for i in range(min(slots, n)):
        ctx[i], rem[i] = int(prompt[i]), int(decode[i])
        nxt += 1
    time = 0.0
    tokens = completed = steps = 0
    while True:
        busy = [[i for i in range(w * batch, (w + 1) * batch) if ctx[i] is not None]
                for w in range(ratio)]
        total = sum(len(b) for b in busy)
        att = max((coeffs.alpha_A * sum(ctx[i] for i in b) + coeffs.beta_A
                   for b in busy if b), default=0.0)
        if coeffs.comm_scales_with == "B":
            comm = coeffs.alpha_C * max(len(b) for b in busy) + coeffs.beta_C
        else:
            comm = coeffs.alpha_C * total + coeffs.beta_C
        ffn = coeffs.alpha_F * total + coeffs.beta_F
        time += max(att, comm, ffn)
        tokens += total
        steps += 1
        for i in range(slots):
            if ctx[i] is None:
                continue
            ctx[i] += 1
            rem[i] -= 1
            if rem[i] == 0:
                completed += 1
                if nxt < n:
                    ctx[i], rem[i] = int(prompt[nxt]), int(decode[nxt])
                    nxt += 1
                else:
                    ctx[i] = None
        if completed >= target:
            return time, tokens, steps


@settings(max_examples=60, deadline=None)
@given(data=st.data(), ratio=st.integers(1, 3), batch=st.integers(1, 4),
       fraction=st.sampled_from([0.8, 0.5, 1.0, 0.05]),
       scaling=st.sampled_from(["B", "rB"]))
def test_finite_trace_equals_a_plain_walk(data, ratio, batch, fraction, scaling):
    n = data.draw(st.integers(1, 30))
    prompt = np.array(data.draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)))
    decode = np.array(data.draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)))
    coeffs = StepCoefficients(alpha_A=1e-4, beta_A=1e-3, alpha_F=3e-4, beta_F=2e-3,
                              alpha_C=2e-4, beta_C=5e-4, comm_scales_with=scaling)
    res = simulate_finite_trace(JointLengths(prompt, decode), Bundle(ratio, batch, coeffs),
                                fraction=fraction)
    time, tokens, steps = walk(prompt, decode, ratio, batch, coeffs, fraction)
    assert res.steps == steps and res.tokens == tokens
    assert res.time == pytest.approx(time, rel=1e-12)
    assert res.throughput_per_instance == pytest.approx(tokens / (time * (ratio + 1)),
                                                        rel=1e-12)
    assert res.completed == math.ceil(fraction * n)


def test_identical_requests_give_the_closed_form():
    # 40 slots, 200 identical requests (P = 30, D = 5): five rounds of 5 steps with full
    # slots; 80% = 160 requests = four rounds, 20 steps, 40 tokens per step
    w = JointLengths(np.full(200, 30), np.full(200, 5))
    res = simulate_finite_trace(w, Bundle(4, 10, COEFFS))
    att = [COEFFS.alpha_A * 10 * (30 + j) + COEFFS.beta_A for j in range(5)]
    rest = max(COEFFS.alpha_C * 10 + COEFFS.beta_C, COEFFS.alpha_F * 40 + COEFFS.beta_F)
    time = 4 * sum(max(a, rest) for a in att)
    assert res.steps == 20 and res.tokens == 800 and res.full_until is None
    assert res.time == pytest.approx(time, rel=1e-12)
    assert res.throughput_per_instance == pytest.approx(800 / (5 * time), rel=1e-12)
    # all of them: the trace runs out at the last round's start, then the slots drain
    whole = simulate_finite_trace(w, Bundle(4, 10, COEFFS), fraction=1.0)
    assert whole.steps == 25 and whole.full_until is None
    short = simulate_finite_trace(JointLengths(np.full(30, 30), np.full(30, 5)),
                                  Bundle(4, 10, COEFFS), fraction=1.0)
    assert short.full_until == 0 and short.tokens == 150  # 10 slots never get a request


def test_a_long_iid_trace_approaches_the_stationary_throughput():
    # from a cold start the slots hold fresh (short) contexts: a bias that fades over the
    # run; with 40,000 i.i.d. requests over ~16,000 steps it is under 1%
    rng = np.random.default_rng(3)
    laws = IndependentLengths(Uniform(0, 400), Geometric(20))
    w = JointLengths(*laws.sample_requests(rng, 40_000))
    bundle = Bundle(4, 12, COEFFS)
    finite = simulate_finite_trace(w, bundle)
    stationary = simulate_step(w, bundle, steps=40_000, seed=1)
    lo, hi = stationary.throughput_ci95
    assert finite.throughput_per_instance == pytest.approx(stationary.throughput_per_instance,
                                                           rel=0.01)
    assert hi - lo < 0.01 * stationary.throughput_per_instance  # the comparison is sharp
    # a trace whose lengths drift (short requests first, long ones last) does not
    order = np.argsort(w.decode, kind="stable")
    drift = simulate_finite_trace(JointLengths(w.prompt[order], w.decode[order]), bundle)
    assert abs(drift.throughput_per_instance / finite.throughput_per_instance - 1) > 0.03


def test_the_objective_and_a_sweep_of_finite_traces():
    w = JointLengths(np.arange(0, 600, 3), np.arange(200) % 17 + 1)
    gpu = Objective(kind="gpu", gpus=InstanceGPUs(attention=2, ffn=8))
    res = simulate_finite_trace(w, Bundle(3, 8, COEFFS, gpu))
    assert res.throughput == pytest.approx(res.tokens / (res.time * (3 * 2 + 8)), rel=1e-12)
    assert res.throughput_per_gpu == pytest.approx(res.throughput, rel=1e-12)
    assert res.throughput_unit == "tokens/s per GPU"
    point = OperatingPoint(coeffs=COEFFS, theta=1.0, batch=8)
    swept = sweep_finite_trace(w, point, range(1, 7))
    by_hand = [simulate_finite_trace(w, Bundle(r, 8, COEFFS)).throughput for r in range(1, 7)]
    np.testing.assert_allclose(swept.throughput, by_hand, rtol=1e-12)
    assert swept.best_ratio == 1 + int(np.argmax(by_hand))


@pytest.mark.parametrize("call, fragment", [
    (lambda: simulate_finite_trace(IndependentLengths(Uniform(0, 4), Geometric(3)),
                                   Bundle(2, 4, COEFFS)), "JointLengths"),
    (lambda: simulate_finite_trace(JointLengths(np.ones(5, int), np.ones(5, int)),
                                   Bundle(2, 4, COEFFS), fraction=0), "fraction"),
    (lambda: simulate_finite_trace(JointLengths(np.ones(5, int), np.ones(5, int)),
                                   Bundle(2, 4, COEFFS), fraction=1.5), "fraction"),
    (lambda: simulate_finite_trace(JointLengths(np.ones(5, int), np.ones(5, int)), (2, 4)),
     "Bundle"),
])
def test_bad_input_is_rejected(call, fragment):
    with pytest.raises(AfdInputError, match=fragment):
        call()
