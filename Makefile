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

.PHONY: book test test-unit test-notebooks test-book lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,test,bench]'
	touch $(STAMP)

# The full build executes every chapter (cached by jupyter-cache between builds).
book: $(STAMP)
	env -u MPLBACKEND $(BIN)/jupyter-book build . $(BOOK_FLAGS)
	@echo "Book written to _build/html/index.html"

test: test-unit test-notebooks test-book

test-unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests

# nbval re-executes each chapter and compares the fresh outputs with the committed ones.
# (MPLBACKEND is cleared so that the kernels use the inline backend and emit their figures.)
test-notebooks: $(STAMP)
	env -u MPLBACKEND $(BIN)/python -m pytest $(PYTEST_FLAGS) --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg chapters

# nbval has just proved the stored outputs equal a fresh run, so this build renders the
# stored outputs (execution off) and checks the book itself: references, toc, directives.
test-book: $(STAMP)
	$(BIN)/python tests/book_config.py --execute off > _build_stored_config.yml
	$(BIN)/jupyter-book build . $(BOOK_FLAGS) --config _build_stored_config.yml \
		--path-output _build/stored
	rm -f _build_stored_config.yml

lint: $(STAMP)
	$(BIN)/ruff check afdlib tests benchmarks

# Speed of the step engine against a numpy loop and a SimPy model (ratios, same process),
# and agreement of `afd simulate` with the independent loop. Needs AFDLIB_DATA_DIR or network.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py
	$(BIN)/python benchmarks/check_reference.py

clean:
	rm -rf _build _build_stored_config.yml .pytest_cache .hypothesis
