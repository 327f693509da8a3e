"""Fits on the real kernel tables reproduce the committed coefficients.

Needs the tables: skipped only when AFDLIB_KERNELDB_DIR is unset (CI sets it).
"""

from __future__ import annotations

import json
import os

import pytest

from afdlib.costs import kerneldb, load_model, measured, model_names
from afdlib.costs.presets import data_dir
from afdlib.errors import AfdInputError

needs_tables = pytest.mark.skipif(not os.environ.get(kerneldb.ENV_VAR),
                                  reason="AFDLIB_KERNELDB_DIR is not set (CI sets it)")


def committed():
    return measured.load_fits(data_dir() / "fits" / measured.FITS_FILE)


def test_kerneldb_dir_errors_are_clear(monkeypatch, tmp_path):
    monkeypatch.delenv(kerneldb.ENV_VAR, raising=False)
    with pytest.raises(AfdInputError, match="AFDLIB_KERNELDB_DIR is not set"):
        kerneldb.kerneldb_dir()
    with pytest.raises(AfdInputError, match="is not a folder"):
        kerneldb.kerneldb_dir(tmp_path / "nope")
    with pytest.raises(AfdInputError, match="no such kernel table"):
        kerneldb.read_table("h200_sxm", "moe_perf", root=tmp_path)
    with pytest.raises(AfdInputError, match="unknown kernel-table system"):
        kerneldb.read_table("a100", "moe_perf", root=tmp_path)


def test_committed_file_has_the_done_when_fits():
    fits = committed()
    for role, model in [("attention", "qwen3-235b-a22b"), ("attention", "deepseek-v3"),
                        ("ffn", "deepseek-v3"), ("comm", "deepseek-v3")]:
        assert measured.find_fit(fits, role, "h200_sxm", model) is not None
    text = (data_dir() / "fits" / measured.FITS_FILE).read_text()
    assert "095f58a51c4ca8e61b66ec108d86f223f8d559ce" in text


@needs_tables
def test_fits_on_real_tables_reproduce_committed_coefficients():
    models = {n: load_model(n) for n in model_names()}
    fresh = measured.fit_all(models)["fits"]
    old = committed()
    assert len(fresh) == len(old)
    for new, ref in zip(fresh, old, strict=True):
        for key in ("role", "system", "model", "tp", "ep"):
            assert new.get(key) == ref.get(key)
        for key in ("alpha", "beta", "gamma", "plateau", "slope", "intercept"):
            if key in ref:
                assert new[key] == pytest.approx(ref[key], rel=1e-9), (ref["system"], key)
        assert new["quality"]["r2"] == pytest.approx(ref["quality"]["r2"], rel=1e-9)
    json.dumps(fresh)  # serializable as committed


@needs_tables
def test_better_forms_beat_one_line_where_the_readme_says():
    ds = load_model("deepseek-v3")
    att = measured.fit_attention_entry("h200_sxm", ds)
    assert att["quality"]["r2"] > 0.995
    assert att["quality"]["mean_rel_err"] < att["one_line"]["quality"]["mean_rel_err"]
    moe = measured.fit_moe_entry("h200_sxm", ds, ep=8)
    # plateau of ~363 us per layer for DeepSeek-V3 shapes at EP8 on H200 (tables' README)
    assert moe["plateau"] == pytest.approx(363e-6, rel=0.05)
    assert moe["slope"] == pytest.approx(0.12e-6, rel=0.1)
    comm = measured.fit_comm_entry("h200_sxm", ds)
    assert comm["quality"]["r2"] >= 0.998


@needs_tables
def test_points_have_the_documented_semantics():
    qwen = load_model("qwen3-235b-a22b")
    p = kerneldb.attention_points("h100_sxm", qwen, tp=2)
    assert p.config["num_heads"] == 32 and p.config["num_key_value_heads"] == 2
    assert (p.x["T"] >= p.x["B"]).all()
    with pytest.raises(AfdInputError, match="no measured"):
        kerneldb.moe_points("h100_sxm", qwen, ep=3)
    with pytest.raises(AfdInputError, match="no MoE"):
        kerneldb.moe_points("h100_sxm", load_model("llama-3.1-70b"), ep=8)
