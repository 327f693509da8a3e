"""Typed fit entries and the typed reason to skip a configuration without measurements."""

from __future__ import annotations

import json

import pytest

from afdlib.costs import kerneldb, measured
from afdlib.costs.presets import preset_dir
from afdlib.errors import AfdInputError, MissingMeasurement

FITS = preset_dir() / "fits" / measured.FITS_FILE


def test_typed_entries_hold_the_committed_numbers():
    raw = json.loads(FITS.read_text(encoding="utf-8"))["fits"]
    table = measured.read_fit_table(FITS)
    assert len(table.entries) == len(raw)
    for data, entry in zip(raw, table.entries, strict=True):
        assert entry.role == data["role"] and entry.system == data["system"]
        assert entry.quality.r2 == data["quality"]["r2"]
        assert entry.quality.n == data["quality"]["n"]
        if data["role"] == "attention":
            assert (entry.alpha, entry.gamma, entry.beta, entry.tp) == (
                data["alpha"], data["gamma"], data["beta"], data["tp"])
            assert entry.one_line.alpha == data["one_line"]["alpha"]
            assert entry.includes_projections == data["config"].get("includes_projections",
                                                                      False)
        elif data["role"] == "ffn":
            assert (entry.plateau, entry.slope, entry.intercept, entry.ep) == (
                data["plateau"], data["slope"], data["intercept"], data["ep"])
            assert entry.knee == pytest.approx(
                (data["plateau"] - data["intercept"]) / data["slope"], rel=1e-15)
            assert entry.one_line.min_tokens == data["one_line"]["min_tokens"]
        else:
            assert (entry.alpha, entry.beta) == (data["alpha"], data["beta"])


def test_typed_find_agrees_with_the_file_level_find():
    raw = measured.load_fits(FITS)
    table = measured.read_fit_table(FITS)
    for role, config in [("attention", {"tp": 1}), ("ffn", {"ep": 8}), ("comm", {})]:
        d = measured.find_fit(raw, role, "h200_sxm", "deepseek-v3", **config)
        e = table.find(role, "h200_sxm", "deepseek-v3", **config)
        assert d is not None and e is not None and e.quality.r2 == d["quality"]["r2"]
    assert table.find("ffn", "h20_3e", "deepseek-v3", ep=8) is None


def test_malformed_entries_name_the_field():
    good = measured.load_fits(FITS)[0]
    with pytest.raises(AfdInputError, match="x.json: missing field 'alpha'"):
        measured.fit_entry({k: v for k, v in good.items() if k != "alpha"}, source="x.json")
    with pytest.raises(AfdInputError, match="unknown role 'gpu'"):
        measured.fit_entry({**good, "role": "gpu"}, source="x.json")


def test_only_a_missing_measurement_is_skipped():
    def missing():
        raise MissingMeasurement("h20_3e: no measured MoE rows")

    def missing_file():
        kerneldb.table_path("h20_3e", "moe_perf")  # H20-3e has no MoE table

    def broken():
        raise AfdInputError("kernel table has no column 'latency'")

    assert measured._if_measured(missing) == []
    assert measured._if_measured(missing_file) == []
    with pytest.raises(AfdInputError, match="no column 'latency'"):
        measured._if_measured(broken)
    assert measured.is_missing_measurement(MissingMeasurement("x"))
    assert not measured.is_missing_measurement(AfdInputError("no measured rows"))


def test_power_law_entries_follow_the_balanced_ones_with_a_dearer_straggler():
    raw = measured.load_fits(FITS)
    keys = [measured.entry_key(e) for e in raw]
    assert len(set(keys)) == len(keys)                 # every entry identified once
    routings = [e.get("routing") for e in raw if e["role"] == "ffn"]
    first_power = routings.index("power_law_1.01")
    assert set(routings[:first_power]) == {"balanced"}  # balanced first: earlier order kept
    table = measured.read_fit_table(FITS)
    n = 0
    for e in table.entries:
        if e.role != "ffn" or e.routing == "balanced":
            continue
        base = table.find("ffn", e.system, e.model, ep=e.ep, routing="balanced")
        assert base is not None
        # the most loaded rank computes more tokens: a steeper compute line
        assert e.slope > base.slope
        assert e.config["distribution"] == e.routing
        n += 1
    assert n == 2 * sum(1 for e in table.entries if e.role == "ffn" and e.routing == "balanced")
    assert measured.check_routing("power_law") == "power_law_1.2"
    with pytest.raises(AfdInputError, match="unknown MoE routing 'zipf'"):
        measured.check_routing("zipf")


def test_power_law_fits_reproduce_from_the_tables():
    root = kerneldb.local_kerneldb_dir()
    if root is None:
        pytest.skip("AFDLIB_KERNELDB_DIR is not set (CI sets it)")
    from afdlib.costs.presets import load_model

    table = measured.read_fit_table(FITS)
    model = load_model("deepseek-v3")
    got = measured.fit_moe_entry("h200_sxm", model, ep=8, routing="power_law_1.2")
    committed = table.find("ffn", "h200_sxm", "deepseek-v3", ep=8, routing="power_law_1.2")
    assert got["slope"] == pytest.approx(committed.slope, rel=1e-9)
    assert got["plateau"] == pytest.approx(committed.plateau, rel=1e-9)
