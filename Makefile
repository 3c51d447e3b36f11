# Two commands: `make demo` (set up, pull data, run the pipeline, print the report's path)
# and `make test` (set up, pull data, run the tests). Both skip work already done.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup data report clean-venv

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

demo: data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "report: $(CURDIR)/reports/index.html"

report: $(STAMP)
	$(BIN)/effitrain report

test: data
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
