# Commands for readers, students and CI. Each target installs what it needs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install book book-quick book-check student-book test test-fast lint benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,book,browser]"
	touch $(STAMP)

install: $(STAMP)

## The main job: execute every chapter at full settings and build the HTML book in _build/html.
## --all: every page is rebuilt, whatever an earlier build (book-quick) left there.
book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going --all

## Same, with the quick settings (a few minutes on a laptop CPU).
book-quick: $(STAMP)
	VAELAB_QUICK=1 $(BIN)/jupyter-book build . -W -n --keep-going --all

## Render the committed notebook outputs without executing anything (seconds): checks the MyST.
book-check: $(STAMP)
	sed 's/execute_notebooks: force/execute_notebooks: "off"/' _config.yml > .config-check.yml
	$(BIN)/jupyter-book build . -W -n --keep-going --all --path-output _build_check --config .config-check.yml

## Student edition: solutions removed, solution cells turned into stubs (HTML in _build_student/src/_build/html).
student-book: $(STAMP)
	$(BIN)/python scripts/make_student_edition.py --out _build_student/src
	$(BIN)/jupyter-book build _build_student/src -W -n --keep-going

## Every test: vaelab's unit tests, the book build, the browser tests and nbval on every chapter.
## The browser tests need Chromium: scripts/install_chromium.sh installs it (apt-get, as root, as .ci/run
## does) or stops with the exact command to get it. `make test BROWSER=0` leaves the browser tests out.
test: $(STAMP)
ifeq ($(BROWSER),0)
	@echo "make test BROWSER=0: the browser tests (tests/test_browser.py) are left out of this run."
	CI=1 VAELAB_QUICK=1 $(BIN)/python -m pytest tests book --nbval-lax -p no:cacheprovider -m "not browser"
else
	PYTHON=$(BIN)/python bash scripts/install_chromium.sh --require
	CI=1 VAELAB_QUICK=1 $(BIN)/python -m pytest tests book --nbval-lax -p no:cacheprovider
endif

## Unit tests only: no MNIST, no notebooks (nbval off), no book, no browser, no killed or fresh subprocesses.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow and not book and not browser" -p no:cacheprovider -p no:nbval

## Speed and quality benchmarks (about 5 + 21 minutes on an idle 2-core CPU): writes benchmarks/results/*.json
benchmark: $(STAMP)
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/quality.py

## ruff on the package, tests, benchmarks, scripts and chapters (make test runs the same, in tests/test_lint.py)
lint: $(STAMP)
	$(BIN)/ruff check vaelab tests benchmarks scripts book
	$(BIN)/ruff format --check vaelab tests benchmarks scripts book

clean:
	rm -rf _build _build_check _build_student runs artifacts
