# One command to run the job, one to test everything. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The Kafka broker, the Flink Kafka connector and the Parquet archive's jars, from Maven
# Central (see jvm/pom.xml and jvm/archive/pom.xml).
JARS   := jvm/lib/.fetched
# fraudstream's own Flink classes (jvm/src), compiled against PyFlink's Flink and the connector.
HELPER := jvm/lib/flink/fraudstream-flink.jar
# Stamp of the gateway JVM's class archive (the archive itself: $(VENV)/share/fraudstream/).
CLASSES := $(VENV)/.classes
HELPER_SRC := $(wildcard jvm/src/io/fraudstream/flink/*.java jvm/src/io/fraudstream/flink/*/*.java)
# The benchmark's Quix Streams peer, in an environment of its own: quixstreams pins older
# confluent-kafka and pydantic than constraints.txt. Its pins are in fraudstream/bench/peers.py.
PEERS  := .venv-peers/.installed

.PHONY: setup run demo test check lint unit clean java jars maven tools kafka-start kafka-stop peers

# Two at a time (pip beside Maven, the class archive beside the peers' environment), each
# part's output kept together.
setup:
	@$(MAKE) --no-print-directory -j2 --output-sync=target java $(STAMP) $(JARS) $(HELPER) $(CLASSES) $(PEERS)

# Flink needs Java (17 is what we test on), and javac for our few classes; install it if missing.
java:
	@command -v javac >/dev/null 2>&1 || { \
	  echo "No Java compiler found: installing OpenJDK 17 (needs root and apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless; }

# Maven fetches the jars; install it if the machine has none.
maven:
	@command -v mvn >/dev/null 2>&1 || { \
	  echo "No Maven found: installing it (needs root and apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq maven; }

jars: java $(JARS) $(HELPER)

# The suite drives a real headless Chromium (the dashboard), a real Prometheus server (the
# metrics) and a real PostgreSQL server (the shared store); Debian's packages, installed when
# missing, as Java and Maven are. (Debian keeps PostgreSQL's programs in /usr/lib/postgresql.)
tools:
	@command -v chromium >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
	  && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium, prometheus and postgresql for the tests (needs root and apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus postgresql; }

$(JARS): jvm/pom.xml jvm/archive/pom.xml | maven
	rm -rf jvm/lib
	mvn -q -B --no-transfer-progress -Dstyle.color=never -f jvm/pom.xml package
	mvn -q -B --no-transfer-progress -Dstyle.color=never -f jvm/archive/pom.xml package
	touch $@

$(HELPER): $(JARS) $(STAMP) $(HELPER_SRC) | java
	rm -rf jvm/build && mkdir -p jvm/build
	javac --release 17 -nowarn -d jvm/build \
	  -cp "$$($(BIN)/python -c 'import glob, os, pyflink; lib = os.path.join(os.path.dirname(pyflink.__file__), "lib"); print(":".join(glob.glob(os.path.join(lib, p))[0] for p in ("flink-dist-*.jar", "flink-table-api-java-uber-*.jar", "flink-connector-files-*.jar")))'):$$(ls jvm/lib/flink/flink-sql-connector-kafka-*.jar):$$(ls jvm/lib/onnx/onnxruntime-*.jar):$$(ls jvm/lib/parquet/*.jar | tr '\n' ':')" \
	  $(HELPER_SRC)
	jar cf $@.tmp -C jvm/build . && mv $@.tmp $@

# The gateway JVM's class-sharing archive (CLASS_ARCHIVE in src/fraudstream/flink/gateway.py):
# one short run records the classes it loads as its JVM exits, and every later run maps them
# instead of reading the jars (about 3 s sooner). Without it runs start the slower way.
$(CLASSES): $(HELPER) $(STAMP)
	@echo "Recording the Flink JVM's class archive (one short run, under a minute)"
	@d=$$(mktemp -d) && RECORD_FLINK_CLASSES=1 $(BIN)/fraudstream --data-dir $$d run --count 300 --rate 0 \
	  >$$d/out.txt 2>&1 || { tail -20 $$d/out.txt; echo "(no class archive: runs start without it)"; }; rm -rf $$d
	@touch $@

# The versions the suite passed with (constraints.txt); a change there reinstalls.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

peers: $(PEERS)

$(PEERS): src/fraudstream/bench/peers.py | $(STAMP)
	$(BIN)/python -m fraudstream.bench.peers

run: setup
	$(BIN)/fraudstream run $(ARGS)

# Broker + producer + dashboard + job on Kafka; Ctrl-C stops all four.
demo: setup
	$(BIN)/fraudstream demo $(ARGS)

kafka-start: setup
	$(BIN)/fraudstream kafka start

kafka-stop: setup
	$(BIN)/fraudstream kafka stop

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

unit: setup
	$(BIN)/pytest -q -m "not flink and not slow"

# Parallel test workers of `make test` and `make check`.
TEST_WORKERS ?= 2
DURATIONS ?= 10

# The inner loop: lint and every test that needs no Flink (under a minute).
check: lint
	$(BIN)/pytest -q -m "not flink and not slow" -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# Everything, on TEST_WORKERS parallel workers (most tests wait on JVMs and brokers more than
# they compute); the ten slowest tests are listed at the end, so growth is visible.
test: tools lint
	$(BIN)/pytest -q -ra -n $(TEST_WORKERS) --dist loadfile --durations=$(DURATIONS)

clean:
	rm -rf $(VENV) .venv-peers data build jvm/lib jvm/build jvm/target .pytest_cache .ruff_cache
