# One command to run the job, one to test everything. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The Kafka broker and the Flink Kafka connector, from Maven Central (see jvm/pom.xml).
JARS   := jvm/lib/.fetched

.PHONY: setup run demo test lint unit clean java jars maven kafka-start kafka-stop

setup: java $(STAMP) $(JARS)

# Flink needs a Java runtime (17 is what we test on); install it if the machine has none.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "No Java found: installing OpenJDK 17 (needs root and apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }

# Maven fetches the jars; install it if the machine has none.
maven:
	@command -v mvn >/dev/null 2>&1 || { \
	  echo "No Maven found: installing it (needs root and apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq maven; }

jars: java $(JARS)

$(JARS): jvm/pom.xml | maven
	rm -rf jvm/lib
	mvn -q -B --no-transfer-progress -Dstyle.color=never -f jvm/pom.xml package
	touch $@

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: setup
	$(BIN)/fraudstream run $(ARGS)

# Broker + producer + job on Kafka; Ctrl-C stops all three.
demo: setup
	$(BIN)/fraudstream demo $(ARGS)

kafka-start: setup
	$(BIN)/fraudstream kafka start

kafka-stop: setup
	$(BIN)/fraudstream kafka stop

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

unit: setup
	$(BIN)/pytest -q -m "not flink"

test: lint
	$(BIN)/pytest -q -ra

clean:
	rm -rf $(VENV) data build jvm/lib jvm/target .pytest_cache .ruff_cache
