# Two commands: `make demo` (set up, pull data, run the pipeline, print the report's path)
# and `make test` (set up, pull data, run the tests). Both skip work already done.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup data report clean-venv system-test system-demo lint

setup: $(STAMP)

# The lock pins every package; the project itself is installed editable on top, without deps.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# dvc pull copies datasets/ from ../shared/dvc-remote and checks every md5; a no-op when present.
data: $(STAMP)
	$(BIN)/dvc pull -q

# Debian packages: chromium for the end-to-end report test, g++ and ninja-build for the C++ kernels.
# As root they are installed with apt-get; otherwise one line names them and make stops (exit 2).
system-test:
	.ci/system-deps test

system-demo:
	.ci/system-deps demo

demo: system-demo data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "report: $(CURDIR)/reports/demo/site/index.html (committed full-budget report: reports/index.html)"

report: $(STAMP)
	$(BIN)/effitrain report

test: system-test data
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
