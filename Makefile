# One command to run the job, one to test everything. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint unit clean java

setup: java $(STAMP)

# Flink needs a Java runtime (17 is what we test on); install it if the machine has none.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "No Java found: installing OpenJDK 17 (needs root and apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: setup
	$(BIN)/fraudstream run $(ARGS)

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

unit: setup
	$(BIN)/pytest -q -m "not flink"

test: lint
	$(BIN)/pytest -q -ra

clean:
	rm -rf $(VENV) data build .pytest_cache .ruff_cache
