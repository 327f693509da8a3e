"""The site's own machinery: student editions, lite notebooks, self-tests, numbered sliders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import lite_site  # noqa: E402
import student_edition  # noqa: E402

from afdlib.errors import AfdInputError  # noqa: E402
from afdlib.widgets import selftest  # noqa: E402


def _toc_files() -> list[str]:
    return re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())


def _chapters() -> list[Path]:
    return [ROOT / f"{f}.ipynb" for f in _toc_files()
            if f.startswith("chapters/") and (ROOT / f"{f}.ipynb").exists()]


def _md(text):
    return nbformat.v4.new_markdown_cell(text)


def _nb(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


# -- student edition -------------------------------------------------------------------------

def test_student_edition_drops_solutions_and_keeps_exercises():
    nb = _nb(
        _md("## Exercises\n\n```{exercise}\n:label: ex-a\n\nDo A.\n```\n\n"
            "```{solution-start} ex-a\n:class: dropdown\n```\n\nSecret A."),
        nbformat.v4.new_code_cell("print('solution code')"),
        _md("```{solution-end}\n```\n\n```{exercise}\n:label: ex-b\n\nDo B.\n```\n\n"
            "```{solution-start} ex-b\n:class: dropdown\n```\n\nSecret B.\n\n"
            "```{solution-end}\n```\n\nAfter."),
        nbformat.v4.new_code_cell("x = 1  # not a solution"),
    )
    student, removed = student_edition.strip_solutions(nb)
    text = "\n".join(c.source for c in student.cells)
    assert removed == ["ex-a", "ex-b"]
    assert "Secret" not in text and "solution code" not in text and "solution-" not in text
    assert "Do A." in text and "Do B." in text and "After." in text and "x = 1" in text
    assert text.count("is removed in the student edition") == 2
    assert student.metadata["afd_edition"] == "student"
    assert len(nb.cells) == 4  # the input is not changed


@pytest.mark.parametrize("cells", [
    [_md("```{solution-start} ex-a\n```\nno end")],
    [_md("```{solution-end}\n```")],
    [_md("```{solution-start} ex-a\n```"), _md("```{solution-start} ex-b\n```")],
])
def test_student_edition_refuses_unpaired_markers(cells):
    with pytest.raises(student_edition.SolutionMarkupError):
        student_edition.strip_solutions(_nb(*cells))


def test_every_chapter_has_a_student_edition_without_solutions():
    for path in _chapters():
        nb = nbformat.read(path, as_version=4)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        n_solutions = source.count("{solution-start}")
        student, removed = student_edition.strip_solutions(nb)
        text = "\n".join(c.source for c in student.cells)
        assert len(removed) == n_solutions, path.name
        assert "{solution-start}" not in text and "{solution-end}" not in text, path.name
        for label in re.findall(r":label: (ex-[\w-]+)", source):
            assert label in text, f"{path.name}: exercise {label} lost"


def test_student_edition_command_line(tmp_path):
    chapter = _chapters()[0]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "student_edition.py"),
                           str(tmp_path), str(chapter)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / chapter.name).exists()
    bad = tmp_path / "bad.ipynb"
    nbformat.write(_nb(_md("```{solution-end}\n```")), bad)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "student_edition.py"),
                           str(tmp_path / "out"), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "solution-end without solution-start" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# -- lite notebooks ------------------------------------------------------------------------------

def test_lite_notebook_installs_afdlib_first_and_runs_on_pyodide():
    nb = _nb(_md("# T"), nbformat.v4.new_code_cell("from myst_nb import glue"))
    lite = lite_site.lite_notebook(nb)
    assert lite.cells[0].cell_type == "code" and "piplite.install" in lite.cells[0].source
    assert lite.metadata["kernelspec"]["name"] == "python"
    assert lite.cells[1:] == nb.cells
    # outside JupyterLite the setup cell does nothing, and compiles as top-level-await code
    compile(lite.cells[0].source, "<setup>", "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT


def test_lite_notebooks_carry_a_note_instead_of_a_frame_sliders_pictures():
    import matplotlib.pyplot as plt

    from afdlib.widgets import frame_slider

    matplotlib.use("Agg")

    def plot(a):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [0, a])
        return fig

    html = frame_slider(plot, {"a": [1.0, 2.0, 3.0]}, caption="c", name="fig-t",
                        guide="Move a.")._repr_html_()
    widget = nbformat.v4.new_code_cell("frame_slider(...)")
    widget.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html,
                                                                    "text/plain": "<w>"})]
    other = nbformat.v4.new_code_cell("print(1)")
    other.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    lite = lite_site.lite_notebook(_nb(widget, other))
    note = lite.cells[1].outputs[0]["data"]
    assert "3 precomputed frames" in note["text/markdown"]
    assert "data:image" not in json.dumps(lite.cells[1].outputs)
    assert lite.cells[2].outputs == other.outputs  # other outputs stay
    assert widget.outputs[0]["data"]["text/html"] == html  # the book's copy is untouched


def test_lite_setup_cell_is_a_no_op_outside_pyodide():
    import asyncio
    ns = {}
    code = compile(lite_site.setup_source(), "<setup>", "exec", flags=0x2000)
    result = eval(code, ns)  # noqa: S307 (our own constant)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    assert "piplite" not in ns


def test_only_chapters_reading_kernel_tables_install_fastparquet():
    def setup_of(source):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        return lite_site.lite_notebook(nb).cells[0].source

    with_tables = setup_of("from afdlib.costs import kerneldb\nkerneldb.moe_points")
    without = setup_of("import afdlib")
    assert '["afdlib", "ipywidgets"] + ["fastparquet"]' in with_tables
    assert "fastparquet" not in without and '["afdlib", "ipywidgets"])' in without
    for source in (with_tables, without):
        compile(source, "<setup>", "exec", flags=0x2000)


def test_selftest_notebooks_have_a_check_cell_per_question():
    for part in selftest.PARTS:
        nb = lite_site.selftest_notebook(part)
        checks = [c for c in nb.cells if c.cell_type == "code" and "check(" in c.source]
        assert len(checks) == len(selftest.questions(part))


# -- self-tests ----------------------------------------------------------------------------------

def test_every_part_of_the_toc_has_a_self_test_page_with_questions():
    files = _toc_files()
    for part in selftest.PARTS:
        assert f"selftests/{part}" in files
        assert (ROOT / "selftests" / f"{part}.md").exists()
        assert "{afd-selftest} " + part in (ROOT / "selftests" / f"{part}.md").read_text()
        assert len(selftest.questions(part)) >= 2


def test_check_accepts_the_computed_answer_and_rejects_others():
    for q in selftest.QUESTIONS:
        expected = q.expected()
        assert selftest.check(q.key, expected), q.key
        if q.choices:
            wrong = next(chr(ord("a") + k) for k in range(len(q.choices))
                         if chr(ord("a") + k) != expected)
            assert not selftest.check(q.key, wrong)
            assert not selftest.check(q.key, "z")
        else:
            assert not selftest.check(q.key, float(expected) * 1.5 + 1)
            assert not selftest.check(q.key, "many")
        assert q.answer_text() in q.explain() or q.choices


def test_selftest_answers_are_the_library_values():
    from afdlib.provision import mean_field_ratio
    from afdlib.workload import Geometric, IndependentLengths, load_stats
    theta = load_stats(IndependentLengths(Geometric(1000, start=0), Geometric(500))).theta
    assert selftest.check("foundations-1", theta)
    assert theta == pytest.approx(1000 + 500 - 1)  # the special case the explanation states
    mf = mean_field_ratio(selftest._point(1000, 128))
    assert mf.r_A < 0 and mf.r_C < 0  # what provisioning-2's explanation says
    assert selftest.check("provisioning-1", mf.r_star)


def test_check_names_an_unknown_question():
    with pytest.raises(AfdInputError, match="key"):
        selftest.check("nowhere-1", 1)
    with pytest.raises(AfdInputError, match="part"):
        selftest.questions("nowhere")


# -- a captioned frame slider becomes a numbered figure --------------------------------------------

@pytest.mark.slow
def test_captioned_frame_slider_is_a_numbered_figure_with_a_label(tmp_path):
    """A tiny Sphinx project with the book's extension renders a slider's caption as Fig. 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from afdlib.widgets import frame_slider

    def plot(a=1.0):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, a])
        return fig

    widget = frame_slider(plot, {"a": [1.0, 2.0]}, caption="Slope, as $a$ grows.",
                          name="fig-test-slope", guide="Move a; watch the line.", width=200)
    cell = nbformat.v4.new_code_cell("widget", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", execution_count=1, data={
        "text/html": widget._repr_html_(), "text/plain": repr(widget)})]
    nb = _nb(_md("# Test\n\nSee {numref}`fig-test-slope`."), cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, tmp_path / "index.ipynb")
    (tmp_path / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / '_ext')!r})\n"
        "extensions = ['myst_nb', 'afd_book']\n"
        "nb_execution_mode = 'off'\nnumfig = True\nafd_site_assets = False\n"
        "html_theme_options = {}\n")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html",
                           str(tmp_path), str(tmp_path / "_out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "_out" / "index.html").read_text()
    assert 'id="fig-test-slope"' in page
    assert re.search(r"Fig\. 1", page)  # numbered, and the numref resolves
    assert '<span class="caption-text">Slope, as <span class="math' in page  # math parsed
    assert 'class="afd-fs-caption"' not in page  # the widget's own caption is not repeated
    assert "Move a; watch the line." in page


@pytest.mark.slow
def test_one_setting_turns_on_the_binder_and_colab_buttons(tmp_path):
    """``repository.url`` in _config.yml is all it takes (a build from stored outputs)."""
    config = subprocess.run([sys.executable, str(ROOT / "tests" / "book_config.py"),
                             "--execute", "off"], capture_output=True, text=True, check=True).stdout
    assert re.search(r'(?m)^  url: ""', config), "repository.url is no longer one setting"
    config = re.sub(r'(?m)^  url: ""', "  url: https://github.com/example-org/afd-book", config)
    cfg = ROOT / f"_build_test_repo_config_{tmp_path.name}.yml"
    cfg.write_text(config)
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build",
                               str(ROOT), "-W", "-n", "--keep-going", "--config", str(cfg),
                               "--path-output", str(tmp_path)], capture_output=True, text=True,
                              cwd=ROOT, timeout=600)
    finally:
        cfg.unlink()
    assert proc.returncode == 0, (proc.stdout[-1500:] + proc.stderr[-1500:])
    chapter = Path(_chapters()[0]).stem
    page = (tmp_path / "_build" / "html" / "chapters" / f"{chapter}.html").read_text()
    assert f"mybinder.org/v2/gh/example-org/afd-book/main?urlpath=tree/chapters/{chapter}.ipynb" in page
    assert (f"colab.research.google.com/github/example-org/afd-book/blob/main/chapters/"
            f"{chapter}.ipynb") in page
