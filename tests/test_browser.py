"""The built book in a real browser: every page in headless Chromium, and one live chapter.

Run by ``make test-browser`` (part of ``make test``) on the stored-output build, whose HTML
folder is named by ``AFD_BOOK_HTML``. Chromium is Debian's (``/usr/bin/chromium``, or
``AFD_CHROMIUM``), driven by Playwright's Python package; no browser is downloaded. Every
page is opened at desktop (1280 px) and phone (390 px) width, and the test fails on: a
console error, a request that fails or leaves 127.0.0.1, a broken internal link or image,
unrendered math, error output in a cell, an element wider than the column that does not
scroll, a frame slider whose picture does not change when a control moves, a chapter page
without its live button, a chapter missing from the lite site. Screenshots of every page go
to ``_build/screenshots/``.

The lite test opens the first chapter in the JupyterLite site with Pyodide's core served
from the npm package ``pyodide`` (``AFD_PYODIDE_DIR``) and the pure-Python wheels the
kernel needs (fetched once from PyPI), starts the kernel and runs a cell of plain Python.
Offline, numpy and the other compiled packages cannot load (they come from Pyodide's CDN
at read time), so the chapter's own cells are not run here.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("AFD_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic"]
SHOTS = ROOT / "_build" / "screenshots"

if not os.environ.get("AFD_BOOK_HTML"):
    pytest.skip("browser test runs in `make test-browser` (it needs the built book)",
                allow_module_level=True)
if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} "
                "(apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="browser test skipped: no playwright package")

SITE = (ROOT / os.environ["AFD_BOOK_HTML"]).resolve()


def _chapters() -> list[str]:
    names = re.findall(r"file:\s*(chapters/[\w-]+)", (ROOT / "_toc.yml").read_text())
    return [n for n in names if (ROOT / f"{n}.ipynb").exists()]


def _pages() -> list[str]:
    skip = ("_static/", "_sources/", "_images/", "lite/", "student/", "_downloads/")
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                  if not p.relative_to(SITE).as_posix().startswith(skip))


# -- a local server: the site, a local Pyodide core, the lite config pointed at it ---------

class _Handler(http.server.SimpleHTTPRequestHandler):
    pyodide_dir: Path | None = None
    sent: dict | None = None  # bytes served per first path segment, when counting

    def copyfile(self, source, outputfile):
        data = source.read()
        outputfile.write(data)
        if self.sent is not None:
            top = urlsplit(self.path).path.strip("/").split("/")[0]
            self.sent[top] = self.sent.get(top, 0) + len(data)

    def log_message(self, *args):  # quiet
        pass

    def translate_path(self, path):
        rel = unquote(urlsplit(path).path)
        if rel.startswith("/pyodide/") and self.pyodide_dir is not None:
            return str(self.pyodide_dir / rel[len("/pyodide/"):])
        return super().translate_path(path)

    def do_GET(self):  # noqa: N802
        path = urlsplit(self.path).path
        if (path.startswith("/lite/") and path.endswith("/jupyter-lite.json")
                and self.pyodide_dir is not None):
            file = Path(self.translate_path(self.path))
            data = json.loads(file.read_text()) if file.exists() else {}
            cfg = data.setdefault("jupyter-config-data", {})
            settings = cfg.setdefault("litePluginSettings", {})
            kernel = settings.setdefault("@jupyterlite/pyodide-kernel-extension:kernel", {})
            host = self.headers.get("Host")
            kernel["pyodideUrl"] = f"http://{host}/pyodide/pyodide.mjs"  # an ES module
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built book at {SITE} (run `make test-book` first)")
    handler = type("Handler", (_Handler,), {})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(handler, directory=str(SITE)))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, handler, f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


# -- page checks (in the page) --------------------------------------------------------------

CHECK_JS = r"""() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const col = article.getBoundingClientRect();
  const visible = e => e.offsetParent !== null || getComputedStyle(e).position === 'fixed';
  // wide elements that no scrolling ancestor (inside the column) contains
  const wide = [];
  for (const e of article.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.width <= 1 || r.right <= col.right + 1 || !visible(e)) continue;
    if (e.closest('mjx-assistive-mml, .visually-hidden, .sr-only, .headerlink')) continue;
    let ok = false;
    for (let a = e.parentElement; a && a !== article.parentElement; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === 'auto' || ox === 'scroll' || ox === 'hidden') &&
          a.getBoundingClientRect().right <= col.right + 1) {
        ok = ox !== 'hidden';  // hidden: cut off, the problem this check is for
        break;
      }
    }
    if (!ok) wide.push(e.tagName.toLowerCase() + '.' + [...e.classList].join('.') +
                       ' (' + Math.round(r.right - col.right) + ' px over)');
  }
  // text outside code, for unrendered math
  const clone = article.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-assistive-mml').forEach(n => n.remove());
  const text = clone.textContent;
  const raw = [];
  for (const pat of ['\\(', '\\[', '$$']) {
    const i = text.indexOf(pat);
    if (i >= 0) raw.push(JSON.stringify(text.slice(Math.max(0, i - 30), i + 30)));
  }
  // display equations must fit the column, even on a phone (split long ones)
  const mathwide = [...article.querySelectorAll('mjx-container[display="true"]')]
    .filter(e => visible(e) && e.scrollWidth > e.clientWidth + 2)
    .map(e => Math.round(e.scrollWidth - e.clientWidth) + ' px: ' +
              (e.querySelector('mjx-assistive-mml') || e).textContent.slice(0, 50));
  const merr = document.querySelectorAll('mjx-merror').length;
  const brokenImgs = [...document.querySelectorAll('img')]
    .filter(i => i.complete && i.naturalWidth === 0).map(i => i.getAttribute('src').slice(0, 80));
  const errors = [...article.querySelectorAll('.output.traceback, .output.error, .output.stderr')]
    .map(e => e.textContent.slice(0, 120));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const page = document.documentElement.scrollWidth > innerWidth + 1 ?
    [...document.querySelectorAll('body *')].filter(e => visible(e) &&
      e.getBoundingClientRect().right > innerWidth + 1 && e.children.length === 0)
      .slice(0, 5).map(e => e.tagName.toLowerCase() + '.' + [...e.classList].join('.') + ': ' +
                       (e.textContent || '').slice(0, 40)) : [];
  return {page, wide: wide.slice(0, 10), nwide: wide.length, mathwide, raw, merr, brokenImgs, errors, links, ids};
}"""


def _internal_target(page_rel: str, href: str) -> tuple[Path | None, str]:
    """The file an internal href points to (None for external), and its fragment."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
        return None, ""
    base = (SITE / page_rel).parent
    target = (base / unquote(parts.path)).resolve() if parts.path else SITE / page_rel
    if target.is_dir():
        target = target / "index.html"
    return target, parts.fragment


def _open(browser, base, rel, width):
    ctx = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
    page = ctx.new_page()
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    page.on("request", lambda r: problems.append(f"external request: {r.url}")
            if not r.url.startswith((base, "data:", "blob:", "about:")) else None)
    page.goto(base + rel, wait_until="networkidle", timeout=60_000)
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.wait_for_timeout(300)
    return ctx, page, problems


def _check_sliders(page) -> list[str]:
    bad = []
    sliders = page.locator(".afd-frame-slider")
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        slider.scroll_into_view_if_needed()
        img = slider.locator("img.afd-fs-img")
        inputs = slider.locator("input.afd-fs-input")
        if img.count() != 1 or inputs.count() == 0:
            bad.append(f"slider {i}: not the current frame-slider HTML (stored output written "
                       "by an older afdlib.widgets: re-execute the chapter)")
            continue
        for k in range(inputs.count()):
            control = inputs.nth(k)
            top = int(control.get_attribute("max"))
            if top == 0:
                continue
            before = img.screenshot()
            value = int(control.input_value())
            control.evaluate("(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }",
                             0 if value else top)
            page.wait_for_timeout(100)
            if img.screenshot() == before:
                bad.append(f"slider {i}, control {k}: the picture does not change")
            control.evaluate("(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }",
                             value)
        natural = img.evaluate("i => [i.naturalWidth, i.clientWidth, +i.getAttribute('width')]")
        if natural[1] < 0.9 * natural[2]:
            bad.append(f"slider {i}: shown {natural[1]} px wide, drawn for {natural[2]} px "
                       "(text smaller than the figures')")
    return bad


def test_every_page_in_chromium(server, browser):
    _, _, base = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    chapters = {f"{c}.html" for c in _chapters()}
    pages = _pages()
    assert chapters <= set(pages), f"chapter pages missing: {chapters - set(pages)}"
    failures = []
    for rel in pages:
        for width in (1280, 390):
            ctx, page, problems = _open(browser, base, rel, width)
            info = page.evaluate(CHECK_JS)
            where = f"{rel} @{width}px"
            problems += [f"wider than the column, not scrolling: {w}" for w in info["wide"]]
            problems += [f"page wider than the screen: {w}" for w in info["page"]]
            problems += [f"display equation wider than the column: {w}"
                         for w in info["mathwide"]]
            problems += [f"unrendered math near {r}" for r in info["raw"]]
            if info["merr"]:
                problems.append(f"{info['merr']} MathJax errors")
            problems += [f"broken image {s}" for s in info["brokenImgs"]]
            problems += [f"error output in a cell: {e!r}" for e in info["errors"]]
            if width == 1280:
                for href in set(info["links"]):
                    target, frag = _internal_target(rel, href)
                    if target is None:
                        continue
                    if not target.exists():
                        problems.append(f"broken link {href}")
                    elif frag and target == (SITE / rel).resolve() and frag not in info["ids"]:
                        problems.append(f"broken anchor {href}")
                if rel in chapters:
                    problems += _check_live_bar(page, rel)
                    problems += _check_sliders(page)
            shot = SHOTS / (rel.replace("/", "__").removesuffix(".html") + f"-{width}.png")
            # from the top, nothing focused: the sticky header and the skip link then stay
            # where a reader sees them, not where the slider checks left the page
            page.evaluate("() => { document.activeElement && document.activeElement.blur();"
                          " window.scrollTo(0, 0); }")
            page.screenshot(path=str(shot), full_page=True)
            ctx.close()
            failures += [f"{where}: {p}" for p in problems]
    assert not failures, "\n".join(failures[:60])


def _check_live_bar(page, rel) -> list[str]:
    name = Path(rel).stem
    button = page.locator("#afd-live a.afd-run-live")
    if button.count() != 1 or not button.is_visible():
        return ["no visible 'run this chapter live' button"]
    href = button.get_attribute("href")
    if not href.endswith(f"lite/notebooks/index.html?path=chapters/{name}.ipynb"):
        return [f"live button points to {href}"]
    return []


def test_every_chapter_is_in_the_lite_site_with_its_student_edition():
    listing = json.loads((SITE / "lite" / "api" / "contents" / "chapters" / "all.json").read_text())
    listed = {entry["name"] for entry in listing["content"]}
    missing = []
    for chapter in _chapters():
        name = Path(chapter).name + ".ipynb"
        for folder in ("chapters", "student"):
            if not (SITE / "lite" / "files" / folder / name).exists():
                missing.append(f"lite/files/{folder}/{name}")
        if name not in listed:
            missing.append(f"{name} not listed in lite/api/contents/chapters/all.json")
        if not (SITE / "student" / name).exists():
            missing.append(f"student/{name}")
        path = SITE / "lite" / "files" / "chapters" / name
        lite = json.loads(path.read_text()) if path.exists() else {"cells": [{"source": ""}]}
        if path.exists() and "piplite.install" not in "".join(lite["cells"][0]["source"]):
            missing.append(f"{name}: no afdlib install cell first")
    wheels = sorted(p.name for p in (SITE / "lite" / "pypi").glob("*.whl"))
    assert any(w.startswith("afdlib-") for w in wheels), wheels
    assert not missing, missing


# -- the lite site on a local Pyodide core ----------------------------------------------------

#: Pyodide packages (pure Python) the kernel loads at start: micropip, then piplite installs
#: ipython, jedi and their dependencies from Pyodide's lock file.
KERNEL_ROOTS = ("micropip", "packaging", "ipython", "jedi")


def _offline_pyodide(tmp: Path) -> Path:
    """Pyodide's npm core plus the pure wheels the kernel needs, with a lock file to match."""
    core = Path(os.environ.get("AFD_PYODIDE_DIR", ""))
    if not (core / "pyodide.mjs").exists():
        pytest.fail(f"no Pyodide core at {core!s} (`make test-browser` installs the npm package)")
    version = json.loads((core / "package.json").read_text())["version"]
    kernel_js = "".join(p.read_text(errors="ignore") for p in
                        (SITE / "lite" / "extensions" / "@jupyterlite" /
                         "pyodide-kernel-extension" / "static").glob("*.js"))
    assert f"pyodide/v{version}/full" in kernel_js, \
        f"the lite kernel does not load Pyodide {version} (Makefile PYODIDE_VERSION)"
    dest = tmp / "pyodide"
    shutil.copytree(core, dest)
    lock = json.loads((dest / "pyodide-lock.json").read_text())
    pkgs = lock["packages"]
    need, todo = set(), list(KERNEL_ROOTS)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in need or key not in pkgs:
            continue
        need.add(key)
        todo += pkgs[key].get("depends", [])
    cache = Path(os.environ.get("AFD_PYODIDE_WHEELS", ROOT / ".venv" / "npm" / "pyodide-wheels"))
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [f"{pkgs[k]['name']}=={pkgs[k]['version']}" for k in sorted(need)
              if not (cache / pkgs[k]["file_name"]).exists()]
    if wanted:
        py = ".".join(lock["info"]["python"].split(".")[:2])  # Pyodide's Python, not ours
        proc = subprocess.run([sys.executable, "-m", "pip", "-q", "download", "--no-deps",
                               "--only-binary=:all:", "--python-version", py, "-d", str(cache),
                               *wanted], capture_output=True, text=True)
        assert proc.returncode == 0, f"pip download {wanted}: {proc.stderr[-2000:]}"
    for k in sorted(need):
        entry = pkgs[k]
        wheel = cache / entry["file_name"]
        if not wheel.exists():  # PyPI may spell the name differently (case, - or _)
            stem = re.sub(r"[-_.]+", "_", entry["name"]).lower() + "-" + entry["version"] + "-"
            wheel = next(w for w in cache.glob("*.whl")
                         if re.sub(r"[-_.]+", "_", w.name.split("-")[0]).lower() + "-"
                         + w.name.split("-")[1] + "-" == stem)
        shutil.copy2(wheel, dest / wheel.name)
        entry["file_name"] = wheel.name
        entry["sha256"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (dest / "pyodide-lock.json").write_text(json.dumps(lock))
    return dest


def test_a_chapter_opens_in_the_lite_site_and_its_kernel_runs_python(server, browser,
                                                                     tmp_path):
    _, handler, base = server
    handler.pyodide_dir = _offline_pyodide(tmp_path)
    handler.sent = {}
    chapter = Path(_chapters()[0]).name
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    external, errors = set(), []
    page.on("request", lambda r: external.add(urlsplit(r.url).netloc)
            if not r.url.startswith((base, "data:", "blob:")) else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    start = time.monotonic()
    page.goto(f"{base}lite/notebooks/index.html?path=chapters/{chapter}.ipynb",
              wait_until="domcontentloaded", timeout=60_000)
    # the whole notebook rendered (cells appear one by one; typing before the last one
    # arrives would land in the wrong place)
    cells = len(json.loads((SITE / "lite" / "files" / "chapters" / f"{chapter}.ipynb")
                           .read_text())["cells"])
    page.wait_for_function(f"() => document.querySelectorAll('.jp-Notebook .jp-Cell').length"
                           f" >= {cells}", timeout=120_000)
    loaded = time.monotonic() - start
    # the kernel: wait until it is idle (started on the local Pyodide core)
    page.wait_for_function(
        "() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
        " return s && s.getAttribute('data-status') === 'idle'; }", timeout=240_000)
    started = time.monotonic() - start
    # a new cell above the setup cell: plain Python (numpy cannot load offline)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.keyboard.type("print('lite kernel ok', sum(k * k for k in range(10)))")
    page.keyboard.press("Shift+Enter")
    output = (page.locator(".jp-Notebook .jp-Cell", has_text="lite kernel ok").first
              .locator(".jp-OutputArea-output"))
    output.wait_for(timeout=120_000)
    text = output.inner_text()
    # live ipywidgets: the kernel installs the ipywidgets wheel the site carries (same
    # release as the page's widget manager) and the slider renders
    first = page.locator(".jp-Notebook .jp-Cell").first
    first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.keyboard.type('import piplite\nawait piplite.install("ipywidgets")\nimport ipywidgets\n'
                       'ipywidgets.IntSlider(value=3, description="live")')
    page.keyboard.press("Shift+Enter")
    widget_cell = page.locator(".jp-Notebook .jp-Cell", has_text="piplite.install").first
    slider = widget_cell.locator(".widget-slider, .jupyter-widget-slider")
    slider.first.wait_for(timeout=180_000)
    widget_ok = "live" in slider.first.inner_text()
    page.screenshot(path=str(SHOTS / f"lite__{chapter}.png"))
    ctx.close()
    sent = {k: round(v / 1e6, 1) for k, v in sorted(handler.sent.items())}
    handler.sent = None
    print(f"\nlite: {chapter}.ipynb opened with {cells} cells in {loaded:.1f} s; kernel idle "
          f"after {started:.1f} s; cell printed {text.strip()!r}; requests to other hosts: "
          f"{sorted(external) or 'none'}; an ipywidgets slider rendered: {widget_ok}; "
          f"MB served: {sent} (pyodide = the core and the "
          "kernel's pure wheels, from the CDN at read time); numpy/scipy/matplotlib not "
          "loaded (offline: they come from Pyodide's CDN at read time)")
    assert "lite kernel ok 285" in text, (text, errors[:10])
    assert widget_ok, errors[:10]
