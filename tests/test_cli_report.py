"""``afd report``: a self-contained HTML page, checked as text and in headless Chromium
(no console errors, every image loaded, no network request)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from afdlib.cli import main

COEFFS = {"alpha_A": 2e-8, "beta_A": 2e-3, "alpha_F": 2e-6, "beta_F": 4e-3,
          "alpha_C": 1e-7, "beta_C": 1e-3, "comm_scales_with": "B",
          "gpus": {"attention": 1, "ffn": 4}}
LAWS = ["--prompt", "lognormal:median=800,sigma=1.2,max=40000", "--decode", "geometric:200"]
CHROMIUM = Path(os.environ.get("AFD_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report with a latency target and a confirming sweep."""
    folder = tmp_path_factory.mktemp("report")
    coeffs = folder / "c.json"
    coeffs.write_text(json.dumps(COEFFS))
    out = folder / "report.html"
    proc = subprocess.run([sys.executable, "-m", "afdlib", "report", *LAWS, "--batch", "8",
                           "--coeffs", str(coeffs), "--tpot-p99", "0.0065", "--simulate",
                           "--steps", "20000", "-o", str(out), "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_the_page_holds_every_part_and_nothing_external(report):
    path, d = report
    text = path.read_text(encoding="utf-8")
    for part in ("Inputs", "Step-time coefficients", "Workload", "The ratio under each rule",
                 "Latency", "Throughput and step time against r", "Confirming simulation"):
        assert f">{part}<" in text
    assert "1 per Attention instance, 4 in the FFN instance" in text
    assert "c.json (&quot;gpus&quot;)" in text           # where the GPU counts came from
    assert text.count("<img ") == 2 and text.count("src='data:image/svg+xml;base64,") == 2
    # no resource from outside the file: no src/href to a scheme or a path, no script
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)""", text)
    assert refs and all(r.startswith("data:") for r in refs)
    assert "<script" not in text and "@import" not in text and "url(" not in text
    assert d["report"] == str(path) and d["r_int_slo"] is not None
    assert "simulated_best_ratio" in d


def test_report_without_target_or_simulation(tmp_path, capsys):
    coeffs = tmp_path / "c.json"
    coeffs.write_text(json.dumps({k: v for k, v in COEFFS.items() if k != "gpus"}))
    out = tmp_path / "r.html"
    assert main(["report", *LAWS, "--batch", "8", "--coeffs", str(coeffs), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    text = out.read_text(encoding="utf-8")
    assert "No latency target was given" in text and "Not run (add" in text
    assert "GPU counts</td><td class=\"l\">unknown" in text


@pytest.mark.parametrize("args, fragment", [
    (["-o", "report.txt"], "--output: expected a .html file"),
    (["-o", "no/such/dir/r.html"], "--output: no such folder"),
    (["-o", "r.html", "--tpot-p99", "0"], "--tpot-p99: must be > 0"),
    (["-o", "r.html", "--steps", "0"], "--steps: must be >= 1"),
])
def test_bad_report_options_exit_2(tmp_path, args, fragment):
    coeffs = tmp_path / "c.json"
    coeffs.write_text(json.dumps(COEFFS))
    proc = subprocess.run([sys.executable, "-m", "afdlib", "report", *LAWS, "--batch", "8",
                           "--coeffs", str(coeffs), *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and fragment in proc.stderr
    assert proc.stderr.startswith("afd report: error: ")


def test_the_page_in_headless_chromium(report, tmp_path):
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="no playwright package (pip install playwright)")
    path, _ = report
    errors, requests = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(images) == 2 and all(done and width > 0 for done, width in images)
    # the page itself is the only request: images are data URIs
    assert requests == [path.as_uri()]
    assert shot.stat().st_size > 10_000
