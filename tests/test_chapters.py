"""Structure of the book: every chapter is listed, executed in order, importing afdlib,
ending with exercises, free of machine paths, and light enough to serve.

nbval (``make test-notebooks``) checks that the stored outputs equal a fresh run; these
tests check what nbval does not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return files


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists():
    listed = set(toc_files())
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in listed, f"{path.name} is not in _toc.yml"
    for entry in listed:
        matches = list(ROOT.glob(entry + ".*"))
        assert matches, f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_was_executed_top_to_bottom_with_outputs(path):
    code = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert code and all(isinstance(n, int) for n in counts), "unexecuted code cells"
    assert counts == list(range(counts[0], counts[0] + len(counts))), (
        "cells were not executed once each, in order")
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"stored error output: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_imports_afdlib_and_ends_with_exercises(path):
    cells = load(path)["cells"]
    source = "\n".join("".join(c["source"]) for c in cells)
    assert re.search(r"^\s*(from|import) afdlib", source, re.M), "does not import afdlib"
    assert "{exercise}" in source, "no exercises"
    assert "{solution-start}" in source, "no solutions"
    assert re.search(r"^\(.+\)=\s*$", "".join(cells[0]["source"]), re.M), "no label on the title"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_machine_paths_and_small_outputs(path):
    text = path.read_text(encoding="utf-8")
    # folders of a particular machine (spelled out in pieces so this file has none)
    for marker in ("/" + name + "/" for name in ("work", "root", "home", "tmp")):
        assert marker not in text, f"{marker} appears in {path.name}"
    outputs = sum(len(json.dumps(c.get("outputs", []))) for c in load(path)["cells"]
                  if c["cell_type"] == "code")
    assert outputs < 1_500_000, f"outputs weigh {outputs // 1000} kB"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_glued_number_in_the_prose_is_computed_in_the_chapter(path):
    cells = load(path)["cells"]
    prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    used = set(re.findall(r"\{glue(?::[a-z]+)?\}`([A-Za-z0-9_]+)", prose))
    stored = set()
    for c in cells:
        for o in c.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                stored.add(name)
    missing = sorted(used - stored)
    assert not missing, f"prose uses glue keys never computed: {missing}"
