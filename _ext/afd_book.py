"""The book's own Sphinx extension: a self-contained site, live chapters, numbered widgets.

- **MathJax from the site.** MathJax 3 is copied from the npm package (installed, pinned,
  by the Makefile; its folder is ``$AFD_MATHJAX_DIR``) into
  ``_static/mathjax/`` with its license, and ``mathjax_path`` points at it: no CDN.
- **No needless scripts.** The Thebe configuration script (included twice by sphinx-thebe,
  a console error) and ``sphinx-thebe.js`` are dropped (the book has no Thebe button), and
  the require.js / widget-manager CDN loads are off (``nb_ipywidgets_js`` in _config.yml).
- **Run live, download.** Every chapter page gets a bar under its title: a "run this
  chapter live" button opening the chapter in the JupyterLite site built beside the book
  (``lite/``), and links to the notebook and its student edition (solutions removed,
  written to ``student/`` by ``scripts/student_edition.py``).
- **Launch buttons from one setting.** When ``repository.url`` is set in _config.yml, the
  Binder and Colab launch buttons of Jupyter Book are switched on.
- **Numbered frame sliders.** A frame slider made with ``caption=`` (and ``name=``) becomes
  a numbered figure, with its label for ``{numref}``.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOG = logging.getLogger(__name__)
MATHJAX_VERSION = "3.2.2"
#: Parts of MathJax's es5 tree the site needs (the one combined component it loads, and the
#: pieces that component loads on demand: TeX extensions, CHTML fonts, menu, accessibility).
MATHJAX_PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml", "ui", "a11y", "sre",
                 "adaptors")
LIVE_ID = "afd-live"


def _mathjax_dir(app: Sphinx) -> Path:
    default = Path(app.confdir) / ".venv" / "npm" / "mathjax" / "node_modules" / "mathjax"
    return Path(os.environ.get("AFD_MATHJAX_DIR") or default)


# -- configuration -----------------------------------------------------------------------

def _config_inited(app: Sphinx, config) -> None:
    config.mathjax_path = "mathjax/tex-chtml.js"
    theme = config.html_theme_options
    # pydata-sphinx-theme's layout reads a `default_mode` template variable that nothing
    # sets; empty, it logs "Got invalid theme mode" on every page
    config.html_context.setdefault("default_mode", "light")
    repo = (theme.get("repository_url") or "").strip()
    buttons = theme.get("launch_buttons", {})  # set by Jupyter Book (sphinx-book-theme)
    if repo:
        for key, url in (("binderhub_url", "https://mybinder.org"),
                         ("colab_url", "https://colab.research.google.com")):
            if not buttons.get(key):  # Jupyter Book's defaults are empty strings
                buttons[key] = url
        theme["launch_buttons"] = buttons
        theme["use_repository_button"] = True
    else:  # the theme's launch buttons need a repository; without one, none
        for key in ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url"):
            if key in buttons:
                buttons[key] = ""
    stage = Path(app.outdir).parent / "afd-lite"
    config.jupyterlite_dir = str(stage / "lite")
    config.jupyterlite_content_dir = str(stage / "contents")
    config.jupyterlite_config = str(stage / "lite" / "jupyter_lite_config.json")
    # chapters: every toc entry under chapters/ that is a notebook
    toc = Path(app.confdir) / "_toc.yml"
    names = re.findall(r"file:\s*(chapters/[\w-]+)", toc.read_text()) if toc.exists() else []
    config.afd_chapter_docnames = [n for n in names
                                   if (Path(app.confdir) / f"{n}.ipynb").exists()]


# -- numbered frame sliders ---------------------------------------------------------------

_SLIDER = re.compile(r'<figure class="afd-frame-slider" id="(fs[0-9a-f]+)"[^>]*?'
                     r'(?: data-name="([^"]*)" data-caption="([^"]*)")?>')
_FIGCAPTION = re.compile(r'<figcaption class="afd-fs-caption">.*?</figcaption>', re.S)


def _caption_nodes(text: str) -> list[nodes.Node]:
    """Plain text with ``$...$`` as inline math."""
    out = []
    for k, part in enumerate(re.split(r"(?<!\\)\$(.+?)(?<!\\)\$", text)):
        if part:
            out.append(nodes.math(part, part) if k % 2 else nodes.Text(part))
    return out


class FrameSliderFigures(SphinxTransform):
    """Wrap a captioned frame slider's output in a numbered, labelled figure."""

    default_priority = 400  # before the domains collect labels (850)

    def apply(self, **kwargs) -> None:
        for raw in list(self.document.findall(nodes.raw)):
            if "html" not in raw.get("format", "") or "afd-frame-slider" not in raw.astext():
                continue
            m = _SLIDER.search(raw.astext())
            if not m or m.group(2) is None:
                continue
            bundle = raw.parent
            while bundle is not None and bundle.get("nb_element") != "mime_bundle":
                bundle = bundle.parent
            if bundle is None or isinstance(bundle.parent, nodes.figure):
                continue  # not a notebook output, or already a figure (cell metadata)
            text = _FIGCAPTION.sub("", raw.astext())
            raw.replace_self(nodes.raw(text, text, format=raw["format"]))
            name, caption = html.unescape(m.group(2)), html.unescape(m.group(3))
            figure = nodes.figure(classes=["afd-frame-slider-figure"])
            figure.source, figure.line = bundle.source, bundle.line
            bundle.replace_self(figure)
            figure += bundle
            figure += nodes.caption(caption, "", *_caption_nodes(caption))
            figure["names"].append(nodes.fully_normalize_name(name))
            self.document.note_explicit_target(figure, figure)


# -- self-tests ------------------------------------------------------------------------------

class SelfTestDirective(SphinxDirective):
    """``{afd-selftest} PART``: the part's questions, answers hidden in dropdowns.

    The questions and their computed answers come from :mod:`afdlib.widgets.selftest`.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from afdlib.widgets.selftest import questions

        lines = []
        for n, q in enumerate(questions(self.arguments[0]), start=1):
            lines += [f"**Question {n}** (`{q.key}`). {q.text}", ""]
            for k, choice in enumerate(q.choices):
                lines += [f"({chr(ord('a') + k)}) {choice}", ""]
            lines += [":::{admonition} Answer", ":class: dropdown afd-selftest-answer", "",
                      f"**{q.answer_text()}**. {q.explain()}", "",
                      f'Live: `check("{q.key}", your_answer)`.', ":::", ""]
        container = nodes.container(classes=["afd-selftest"])
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]),
                                self.content_offset, container)
        return [container]


# -- the list of theorems and definitions ------------------------------------------------------

_PRF = re.compile(r"`{3,}\{prf:(theorem|proposition|lemma|corollary|definition)\}[ \t]*([^\n]*)\n"
                  r"(?::[^\n]*\n)*?:label:[ \t]*(\S+)")
_SLUG = re.compile(r"^\(([\w-]+)\)=", re.M)


class ResultsDirective(SphinxDirective):
    """``{afd-results}``: every labelled theorem, proposition and definition, with its title.

    Read from the chapter notebooks in toc order (sphinx-proof's own index lists labels
    only); each entry links to the result with ``{prf:ref}``.
    """

    def run(self) -> list[nodes.Node]:
        import json

        lines = []
        for docname in self.config.afd_chapter_docnames:
            path = Path(self.env.srcdir) / f"{docname}.ipynb"
            self.env.note_dependency(str(path))
            cells = json.loads(path.read_text())["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
            found = _PRF.findall(text)
            slug = _SLUG.search(text)
            if not found or not slug:
                continue
            lines += [f"**{{ref}}`{slug.group(1)}`**", ""]
            for _kind, title, label in found:
                lines.append(f"- {{prf:ref}}`{label}`: {title.strip() or '(untitled)'}")
            lines.append("")
        container = nodes.container(classes=["afd-results"])
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]),
                                self.content_offset, container)
        return [container]


# -- pages: scripts, live bar ---------------------------------------------------------------

#: Assets the pages do not use: sphinx-thebe's (no Thebe button; its configuration script is
#: included twice, a console error) and jupyterlite-sphinx's directive assets (the book links
#: to the lite site instead; its CSS imports a web font from a CDN).
_UNUSED_ASSETS = ("sphinx-thebe.js", "jupyterlite_sphinx.js", "jupyterlite_sphinx.css",
                  "fonts.googleapis.com/css")


def _drop_unused_assets(context: dict) -> None:
    for key in ("script_files", "css_files"):
        kept = []
        for asset in context.get(key, []):
            body = getattr(asset, "attributes", {}).get("body", "") or ""
            name = (getattr(asset, "filename", None) or str(asset)).split("?", 1)[0]
            if name.startswith("https://fonts.googleapis.com/css"):
                name = "fonts.googleapis.com/css"
            if "THEBE_JS_URL" in body or name.endswith(_UNUSED_ASSETS):
                continue
            kept.append(asset)
        context[key] = kept


def _selftest_bar(pagename: str, context: dict) -> str:
    lite = context["pathto"](f"lite/notebooks/index.html?path={pagename}.ipynb", 1)
    return (f'<div class="afd-run-bar" id="{LIVE_ID}">'
            f'<a class="afd-run-live" href="{lite}" target="_blank" rel="noopener">'
            f'<span aria-hidden="true">&#9654;</span> Run this self-test live</a>'
            f'<span class="afd-run-note">Live: answer each question in a notebook cell and '
            f"check it, in your browser (JupyterLite).</span></div>")


def _live_bar(app: Sphinx, pagename: str, context: dict) -> str:
    name = pagename.split("/")[-1]
    pathto = context["pathto"]
    lite = pathto(f"lite/notebooks/index.html?path=chapters/{name}.ipynb", 1)
    notebook = pathto(f"_sources/{pagename}.ipynb", 1)
    student = pathto(f"student/{name}.ipynb", 1)
    return (
        f'<div class="afd-run-bar" id="{LIVE_ID}">'
        f'<a class="afd-run-live" href="{lite}" target="_blank" rel="noopener">'
        f'<span aria-hidden="true">&#9654;</span> Run this chapter live</a>'
        f'<a class="afd-download" href="{notebook}" download>Notebook</a>'
        f'<a class="afd-download" href="{student}" download>Student edition</a>'
        f'<span class="afd-run-note">Live: JupyterLite runs the notebook in your browser '
        f"(Python compiled to WebAssembly), with continuous sliders; the first start "
        f"downloads Pyodide and numpy, scipy and matplotlib (about 40 MB). The student "
        f"edition has the exercise solutions removed.</span></div>")


def _page_context(app: Sphinx, pagename: str, templatename: str, context: dict,
                  doctree) -> None:
    _drop_unused_assets(context)
    if "body" not in context:
        return
    if pagename in app.config.afd_chapter_docnames:
        bar = _live_bar(app, pagename, context)
    elif pagename.startswith("selftests/"):
        bar = _selftest_bar(pagename, context)
    else:
        return
    body = context["body"]
    end = body.find("</h1>")
    if end < 0:
        raise ExtensionError(f"{pagename}: no title (h1) to put the live button under")
    end += len("</h1>")
    context["body"] = body[:end] + bar + body[end:]


# -- build-finished: MathJax, student editions, lite contents ------------------------------

def _copy_mathjax(app: Sphinx) -> None:
    src = _mathjax_dir(app)
    try:
        version = __import__("json").loads((src / "package.json").read_text())["version"]
    except FileNotFoundError:
        raise ExtensionError(f"MathJax not found under {src}: `make book` installs it "
                             f"(npm install mathjax@{MATHJAX_VERSION})") from None
    if version != MATHJAX_VERSION:
        raise ExtensionError(f"MathJax {version} under {src}; the book pins {MATHJAX_VERSION}")
    dest = Path(app.outdir) / "_static" / "mathjax"
    if dest.exists():
        shutil.rmtree(dest)
    for part in MATHJAX_PARTS:
        s, d = src / "es5" / part, dest / part
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(s, d) if s.is_dir() else shutil.copy2(s, d)
    shutil.copy2(src / "LICENSE", dest / "LICENSE")
    (dest / "README.txt").write_text(
        f"MathJax {MATHJAX_VERSION} (https://www.mathjax.org), Apache License 2.0 (LICENSE),\n"
        "copied from its npm package by the book build (_ext/afd_book.py).\n")


def _write_favicon_ico(app: Sphinx) -> None:
    """A favicon.ico at the site's root, for pages without an icon link (Jupyter Book's
    index.html redirect): browsers then ask for /favicon.ico, and a 404 is a console error."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (32, 32), (31, 111, 235, 255))
    ImageDraw.Draw(img).text((7, 10), "rA", fill=(255, 255, 255, 255))
    img.save(Path(app.outdir) / "favicon.ico", sizes=[(32, 32)])


def _build_finished(app: Sphinx, error) -> None:
    if error is not None or app.builder.format != "html" or not app.config.afd_site_assets:
        return
    _copy_mathjax(app)
    _write_favicon_ico(app)
    root = Path(app.confdir)
    sys.path.insert(0, str(root / "scripts"))
    import lite_site
    import student_edition

    chapters = [root / f"{d}.ipynb" for d in app.config.afd_chapter_docnames]
    student_edition.write_editions(chapters, Path(app.outdir) / "student")
    info = lite_site.prepare(root, Path(app.config.jupyterlite_dir).parent, chapters)
    LOG.info(f"[afd_book] lite site: {len(info['chapters'])} chapters, wheels "
             f"{', '.join(info['wheels'])}")


def setup(app: Sphinx) -> dict:
    app.add_config_value("afd_chapter_docnames", [], "html")
    # MathJax copy, student editions, lite contents and wheels (off only in tests)
    app.add_config_value("afd_site_assets", True, "html")
    app.connect("config-inited", _config_inited)
    app.add_transform(FrameSliderFigures)
    app.add_directive("afd-selftest", SelfTestDirective)
    app.add_directive("afd-results", ResultsDirective)
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("build-finished", _build_finished, priority=400)  # before jupyterlite-sphinx
    # _static/afd.css is added by Jupyter Book (it links every _static/*.css)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
