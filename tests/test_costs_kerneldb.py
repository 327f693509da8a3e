"""Kernel tables: both forms (csv.gz, parquet) read alike, and fits on the real tables
reproduce the committed coefficients.

The tests on the real tables need them locally: skipped only when AFDLIB_KERNELDB_DIR is
unset (CI sets it). The download path is tested in tests/test_fetch.py.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from dataclasses import replace

import numpy as np
import pytest

from afdlib import fetch
from afdlib.costs import kerneldb, load_model, measured, model_names
from afdlib.costs.presets import preset_dir
from afdlib.errors import AfdInputError

needs_tables = pytest.mark.skipif(not os.environ.get(kerneldb.ENV_VAR),
                                  reason="AFDLIB_KERNELDB_DIR is not set (CI sets it)")


def committed():
    return measured.load_fits(preset_dir() / "fits" / measured.FITS_FILE)


def test_kerneldb_dir_errors_are_clear(monkeypatch, tmp_path):
    monkeypatch.delenv(kerneldb.ENV_VAR, raising=False)
    assert kerneldb.local_kerneldb_dir() is None  # unset: tables are downloaded
    with pytest.raises(AfdInputError, match="AFDLIB_KERNELDB_DIR: .*nope is not a folder"):
        kerneldb.local_kerneldb_dir(tmp_path / "nope")
    with pytest.raises(AfdInputError, match="no such kernel table"):
        kerneldb.read_table("h200_sxm", "moe_perf", root=tmp_path)
    with pytest.raises(AfdInputError, match="h20_3e/moe_perf: no such kernel table"):
        kerneldb.read_table("h20_3e", "moe_perf", root=tmp_path)
    with pytest.raises(AfdInputError, match="unknown kernel-table system"):
        kerneldb.read_table("a100", "moe_perf", root=tmp_path)


# A small table in both forms: numbers (with a missing one), text (with an empty cell).
_CSV = ("framework,num_tokens,latency,distribution,kernel_source\n"
        "TRTLLM,1,0.0123456789012345678,balanced,moe_torch_flow\n"
        "TRTLLM,2,,power_law_1.01,\n"
        "TRTLLM,4,1e-07,balanced,moe_torch_flow\n")


def _both_forms(tmp_path, monkeypatch):
    """Write the table as <root>/h200_sxm/moe_perf.csv.gz and as .parquet, pinned."""
    import fastparquet
    import pandas as pd

    folder = tmp_path / "h200_sxm"
    folder.mkdir()
    csv_path = folder / "moe_perf.csv.gz"
    with gzip.open(csv_path, "wt", newline="") as fh:
        fh.write(_CSV)
    frame = pd.DataFrame({"framework": ["TRTLLM"] * 3, "num_tokens": [1, 2, 4],
                          "latency": [0.0123456789012345678, None, 1e-07],
                          "distribution": ["balanced", "power_law_1.01", "balanced"],
                          "kernel_source": ["moe_torch_flow", None, "moe_torch_flow"]})
    pq_path = folder / "moe_perf.parquet"
    fastparquet.write(str(pq_path), frame, compression="ZSTD", write_index=False)
    old = fetch.REGISTRY["kerneldb/h200_sxm/moe_perf"]
    monkeypatch.setitem(fetch.REGISTRY, old.name, replace(
        old, sha256=fetch.sha256_of(pq_path),
        alternates=(fetch.LocalCopy(old.alternates[0].path, fetch.sha256_of(csv_path)),)))
    return csv_path, pq_path


def test_parquet_and_csv_forms_give_the_same_arrays(tmp_path, monkeypatch):
    csv_path, pq_path = _both_forms(tmp_path, monkeypatch)
    from_parquet = kerneldb.read_table("h200_sxm", "moe_perf", root=tmp_path)  # parquet first
    pq_path.unlink()
    from_csv = kerneldb.read_table("h200_sxm", "moe_perf", root=tmp_path)
    assert list(from_parquet) == list(from_csv)
    for key in from_csv:
        assert from_parquet[key].dtype == from_csv[key].dtype, key
        if from_csv[key].dtype == object:
            assert from_parquet[key].tolist() == from_csv[key].tolist(), key
        else:
            np.testing.assert_array_equal(from_parquet[key], from_csv[key], err_msg=key)
    assert from_csv["latency"][0] == 0.0123456789012345678
    assert np.isnan(from_csv["latency"][1]) and from_csv["kernel_source"][1] == ""


def test_parquet_without_fastparquet_says_what_to_install(tmp_path, monkeypatch):
    _both_forms(tmp_path, monkeypatch)
    monkeypatch.setitem(sys.modules, "fastparquet", None)  # as if it were not installed
    with pytest.raises(AfdInputError, match=r"moe_perf.parquet: .*afdlib\[kerneldb\]") as info:
        kerneldb.read_table("h200_sxm", "moe_perf", root=tmp_path)
    assert "\n" not in str(info.value)


def test_a_damaged_parquet_table_gives_one_line(tmp_path, monkeypatch):
    _, pq_path = _both_forms(tmp_path, monkeypatch)
    pq_path.write_bytes(pq_path.read_bytes()[:-40])  # truncated: footer gone
    old = fetch.REGISTRY["kerneldb/h200_sxm/moe_perf"]
    monkeypatch.setitem(fetch.REGISTRY, old.name, replace(old, sha256=fetch.sha256_of(pq_path)))
    with pytest.raises(AfdInputError, match="moe_perf.parquet: cannot read kernel table") as info:
        kerneldb.read_table("h200_sxm", "moe_perf", root=tmp_path)
    assert "\n" not in str(info.value)


@needs_tables
def test_upstream_form_of_real_tables_equals_the_csv(tmp_path, monkeypatch):
    """Real tables converted to parquet (as upstream stores them) read back identically."""
    import fastparquet
    import pandas as pd

    for table in ("wideep_deepep_ll_perf", "generation_mla_perf", "mla_generation_module_perf"):
        want = kerneldb.read_table("b200_sxm", table)
        out = tmp_path / "b200_sxm" / f"{table}.parquet"
        out.parent.mkdir(exist_ok=True)
        frame = pd.DataFrame({k: (v if v.dtype != object else v.astype(str))
                              for k, v in want.items()})
        fastparquet.write(str(out), frame, compression="ZSTD", write_index=False)
        old = fetch.REGISTRY[f"kerneldb/b200_sxm/{table}"]
        monkeypatch.setitem(fetch.REGISTRY, old.name, replace(old, sha256=fetch.sha256_of(out)))
        got = kerneldb.read_table("b200_sxm", table, root=tmp_path)
        assert list(got) == list(want)
        for key in want:
            assert got[key].dtype == want[key].dtype, (table, key)
            if want[key].dtype == object:
                assert got[key].tolist() == want[key].tolist(), (table, key)
            else:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{table} {key}")


def test_committed_file_has_the_done_when_fits():
    fits = committed()
    for role, model in [("attention", "qwen3-235b-a22b"), ("attention", "deepseek-v3"),
                        ("ffn", "deepseek-v3"), ("comm", "deepseek-v3")]:
        assert measured.find_fit(fits, role, "h200_sxm", model) is not None
    text = (preset_dir() / "fits" / measured.FITS_FILE).read_text()
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
