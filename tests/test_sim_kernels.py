"""The compiled loops of the load stream against the numpy code they stand in for.

Both must give the same integers from the same draws: the digits and rows of
:func:`afdlib.sim.loads.uniform_rows`, and the same loads, renewals and results of whole
runs (the walks of ``tests/test_sim_loads.py`` check either path against a plain
slot-by-slot simulation).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afdlib.costs import StepCoefficients
from afdlib.sim import Bundle, kernels, simulate_pipeline, simulate_step
from afdlib.sim.loads import _split_digits, row_digits
from afdlib.traces import read_trace
from afdlib.workload import Geometric, IndependentLengths, JointLengths, Uniform
from tests.conftest import public_trace_file


@pytest.fixture
def compiled_only():
    """The compiled loops on (they are, where numba is installed, as for these tests)."""
    previous = kernels.use_compiled(True)
    assert kernels.enabled(), "numba is a dependency: the compiled loops must be available"
    yield
    kernels.use_compiled(previous)


def _expected_rows(draws_by_worker, n, d):
    """Rows in the engine's layout, by the numpy digit split (worker after worker)."""
    parts = []
    for x in draws_by_worker:
        out = np.empty(d * x.size, dtype=np.int64)
        parts.append(_split_digits(x.reshape(1, -1), n, d, out,
                                   np.empty(2 * x.size, dtype=np.int64)).copy())
    return np.concatenate(parts)


@pytest.mark.parametrize("n, digits", [(1, 4), (2, 4), (7, 4), (8819, 4), (55108, 4),
                                       (55109, 2), (7, 2), (300, 1), (1, 1)])
def test_trace_entries_are_the_table_rows_of_the_numpy_digits(compiled_only, n, digits):
    assert digits in (row_digits(n), 2, 1) and n ** digits < 2 ** 63
    rng = np.random.default_rng(n)
    sizes = [5, 0, 1, 1000]  # draws per busy worker; a worker may have none
    draws_by_worker = [rng.integers(0, n ** digits, m) for m in sizes]
    extremes = np.array([0, n ** digits - 1, n ** (digits // 2 or 1) - 1, n ** 2 % n ** digits])
    draws_by_worker.append(np.minimum(extremes, n ** digits - 1))
    draws = np.concatenate(draws_by_worker)
    starts = np.concatenate([[0], np.cumsum([x.size for x in draws_by_worker])])
    table = (np.arange(n, dtype=np.int64) * 7919 + 3) << 11 | rng.integers(1, 2000, n)
    out = np.full(digits * draws.size, -1, dtype=np.int64)
    kernels.trace_entries(draws, starts, n, digits, table, out)
    assert np.array_equal(out, table[_expected_rows(draws_by_worker, n, digits)])


@settings(max_examples=200, deadline=None)
@given(divisor=st.integers(1, 3037000499), data=st.data())
def test_the_floating_point_division_is_exact(divisor, data):
    # the kernels' division, for dividends up to 2**63 - 1 with quotients below 2**32
    from afdlib.sim import _jit

    top = min(2 ** 63 - 1, divisor * 2 ** 32 - 1)
    value = data.draw(st.one_of(st.integers(0, top), st.sampled_from(
        [0, top, divisor - 1, divisor, divisor + 1, (top // divisor) * divisor,
         (top // divisor) * divisor - 1])))
    value = min(max(value, 0), top)
    assert _jit._split(value, divisor, 1.0 / divisor) == divmod(value, divisor)


@pytest.mark.parametrize("divisor", [*range(1, 40), 8819, 30731, 55108])
def test_the_test_free_division_is_exact_below_the_square(divisor):
    # the four-digit split's second stage: dividends below divisor**2, divisors below 2**16,
    # all dividends for small divisors, else every multiple and its neighbours
    from afdlib.sim import _jit

    top = divisor * divisor
    if top <= 40 * 40:
        values = range(top)
    else:
        multiples = range(0, top, divisor)
        values = sorted({v + e for v in multiples for e in (-1, 0, 1) if 0 <= v + e < top})
        values += np.random.default_rng(divisor).integers(0, top, 2000).tolist()
    inv = 1.0 / divisor
    assert all(_jit._split_small(v, divisor, inv) == divmod(v, divisor) for v in values)


def _same_result(a, b) -> None:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
        elif f.name == "records":
            assert (x is None) == (y is None)
            if x is not None:
                assert np.array_equal(x.loads, y.loads) and np.array_equal(x.step_time,
                                                                           y.step_time)
        else:
            assert x == y or (x != x and y != y), f.name  # NaN equals NaN here


COEFFS = StepCoefficients(alpha_A=2e-8, beta_A=2e-3, alpha_F=2e-6, beta_F=5e-3,
                          alpha_C=1e-6, beta_C=1e-3)


def _both(run):
    previous = kernels.use_compiled(True)
    try:
        assert kernels.enabled()
        fast = run()
        kernels.use_compiled(False)
        slow = run()
    finally:
        kernels.use_compiled(previous)
    return fast, slow


@pytest.mark.parametrize("steps", [3000, 70_000])  # one chunk, and chunks with kept requests
def test_engines_give_identical_results_with_and_without_the_compiled_loops(steps,
                                                                             monkeypatch):
    from afdlib.sim import loads

    monkeypatch.setattr(loads, "SINGLE_CHUNK_STEPS", 20_000)
    monkeypatch.setattr(loads, "CHUNK_STEPS", 16_384)
    w = JointLengths.from_trace(read_trace(public_trace_file("azure2023_code")))
    bundle = Bundle(4, 64, COEFFS)
    fast, slow = _both(lambda: simulate_step(w, bundle, steps=steps, seed=5, record=True))
    _same_result(fast, slow)
    assert fast.requests > steps
    fast, slow = _both(lambda: simulate_pipeline(w, bundle, microbatches=3, steps=steps // 10,
                                                 seed=6, record=True))
    _same_result(fast, slow)


@pytest.mark.parametrize("init", ["cold", "stationary"])
def test_replay_gives_identical_results_with_and_without_the_compiled_loops(init):
    from afdlib.sim import loads

    w = JointLengths.from_trace(read_trace(public_trace_file("mooncake_conversation")))
    assert loads._BitmapReplay.fits(w, np.array([1]))  # the compiled replay runs here
    bundle = Bundle(5, 40, COEFFS)  # 200 slots: four words of the bitmaps
    fast, slow = _both(lambda: simulate_step(w, bundle, steps=4000, init=init, replay=True,
                                             record=True))
    _same_result(fast, slow)


def test_a_long_decode_leaves_the_replay_to_numpy():
    from afdlib.sim import loads

    w = JointLengths(np.array([3, 4]), np.array([2, 1 << 25]))  # a ring of 2**26 steps
    assert not loads._BitmapReplay.fits(w, np.ones(64, dtype=np.int64))
    assert loads._BitmapReplay.fits(JointLengths(np.array([3]), np.array([2])),
                                    np.ones(64, dtype=np.int64))


def test_law_workloads_give_identical_results():
    w = IndependentLengths(Uniform(10, 900), Geometric(12))
    bundle = Bundle(3, 32, COEFFS)
    fast, slow = _both(lambda: simulate_step(w, bundle, steps=5000, seed=2, init="cold"))
    _same_result(fast, slow)


def test_the_environment_variable_turns_the_compiled_loops_off():
    code = "from afdlib.sim import kernels; print(kernels.enabled())"
    env = dict(os.environ)
    for value, expected in (("0", "False"), ("1", "True")):
        env["AFDLIB_NUMBA"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        assert out == expected
