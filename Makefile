# Two entry points, both usable on a fresh machine:
#   make book   set up the virtual environment, execute the chapters and build the HTML book
#   make test   set up the virtual environment and run every test (unit, property, CLI,
#               notebooks with nbval, and a book build with warnings as errors)
# The environment lives in $(VENV) and is reused until pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.afdlib-installed
BOOK_FLAGS := -W -n --keep-going --all
PYTEST_FLAGS ?= -q
# JavaScript the site serves itself (npm packages, pinned): MathJax for the pages, and
# Pyodide's core for the offline browser test of the JupyterLite site (the version the
# pinned jupyterlite-pyodide-kernel loads; tests/test_browser.py checks that they agree).
NPM ?= npm
MATHJAX_VERSION := 3.2.2
PYODIDE_VERSION := 314.0.6
NPM_DIR := $(VENV)/npm
MATHJAX := $(NPM_DIR)/mathjax/node_modules/mathjax/package.json
PYODIDE := $(NPM_DIR)/pyodide/node_modules/pyodide/package.json
export AFD_MATHJAX_DIR := $(abspath $(NPM_DIR)/mathjax/node_modules/mathjax)
export AFD_PYODIDE_DIR := $(abspath $(NPM_DIR)/pyodide/node_modules/pyodide)
STORED_HTML := _build/stored/_build/html

.PHONY: book serve test test-unit test-notebooks test-book test-browser lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,test,bench]'
	touch $(STAMP)

$(MATHJAX):
	$(NPM) install --prefix $(NPM_DIR)/mathjax --no-save --no-audit --no-fund --loglevel=error \
		mathjax@$(MATHJAX_VERSION)
	test -f $@

$(PYODIDE):
	$(NPM) install --prefix $(NPM_DIR)/pyodide --no-save --no-audit --no-fund --loglevel=error \
		pyodide@$(PYODIDE_VERSION)
	test -f $@

# The full build executes every chapter (cached by jupyter-cache between builds), and
# builds the JupyterLite site (lite/) with the afdlib wheel and every chapter.
book: $(STAMP) $(MATHJAX)
	env -u MPLBACKEND $(BIN)/jupyter-book build . $(BOOK_FLAGS)
	@echo "Book written to _build/html/index.html"

# Serve the built book on http://127.0.0.1:8000 (JupyterLite needs HTTP, not file://).
serve:
	test -f _build/html/index.html || $(MAKE) book
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory _build/html 8000

test: test-unit test-notebooks test-book test-browser

test-unit: $(STAMP) $(MATHJAX)
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests --ignore=tests/test_browser.py

# nbval re-executes each chapter and compares the fresh outputs with the committed ones.
# (MPLBACKEND is cleared so that the kernels use the inline backend and emit their figures.)
test-notebooks: $(STAMP)
	env -u MPLBACKEND $(BIN)/python -m pytest $(PYTEST_FLAGS) --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg chapters

# nbval has just proved the stored outputs equal a fresh run, so this build renders the
# stored outputs (execution off) and checks the book itself: references, toc, directives.
test-book: $(STAMP) $(MATHJAX)
	rm -rf _build/stored
	$(BIN)/python tests/book_config.py --execute off > _build_stored_config.yml
	$(BIN)/jupyter-book build . $(BOOK_FLAGS) --config _build_stored_config.yml \
		--path-output _build/stored
	rm -f _build_stored_config.yml

# Every page of the stored-output build in headless Chromium, and one chapter in the lite
# site on a local Pyodide core (skipped, with one line, where Chromium cannot be had).
test-browser: $(STAMP) $(PYODIDE)
	AFD_BOOK_HTML=$(STORED_HTML) $(BIN)/python -m pytest $(PYTEST_FLAGS) tests/test_browser.py

lint: $(STAMP)
	$(BIN)/ruff check afdlib tests benchmarks

# Speed of the step engine against a numpy loop and a SimPy model (ratios, same process),
# and agreement of `afd simulate` with the independent loop. Needs AFDLIB_DATA_DIR or network.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py
	$(BIN)/python benchmarks/check_reference.py

clean:
	rm -rf _build _build_stored_config.yml .pytest_cache .hypothesis
