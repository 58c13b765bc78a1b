"""The production manifests under deploy/, checked without Kubernetes, Kafka or Flink.

Against the schemas their operators publish (the Flink Kubernetes Operator's FlinkDeployment
CRD and Strimzi's KafkaTopic CRD, vendored under crds/), read as a strict API server reads
them (`kubectl apply`'s default `--validate=strict`: an unknown field is an error, not
silently dropped); against the job's own settings (fraudstream.toml loads with
`load_settings`, every FRAUDSTREAM_* variable names a setting, the operator's copy of the
checkpoint settings equals the job's); and against each other (topic names and partitions,
transaction timeouts, ports, paths, versions). Each check returns its problems as lines, so
`test_a_broken_manifest_is_caught` can show that a broken copy fails it.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fraudstream import config
from fraudstream.config import KafkaSettings, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRDS = Path(__file__).resolve().parent / "crds"
FLINK_CRD = CRDS / "flinkdeployments.flink.apache.org-v1.yml"
TOPIC_CRD = CRDS / "kafkatopics.kafka.strimzi.io-v1.yaml"
CONFIG_PATH = "/etc/fraudstream/fraudstream.toml"  # where every pod mounts fraudstream.toml
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser reads the 540 kB CRD in 0.5 s


def documents(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [doc for doc in yaml.load_all(fh, Loader=_Loader) if doc is not None]


# -- the published schemas ----------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """The schema as a strict API server applies it: an object schema that lists its properties
    and does not preserve unknown fields refuses others (JSON Schema would allow them)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@dataclass(frozen=True)
class Crd:
    group: str
    kind: str
    versions: frozenset[str]  # the served ones
    schema: dict[str, Any]  # openAPIV3Schema of the storage version, strict

    def errors(self, doc: dict[str, Any]) -> list[str]:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        group, _, version = str(doc.get("apiVersion", "")).partition("/")
        found = []
        if doc.get("kind") != self.kind or group != self.group or version not in self.versions:
            found.append(f"{name}: apiVersion {doc.get('apiVersion')} kind {doc.get('kind')} is not served by the CRD")
        validator = jsonschema.Draft4Validator(self.schema)  # OpenAPI 3.0 schemas are draft 4's
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in error.absolute_path) or "(top)"
            found.append(f"{name}: {where}: {error.message}")
        return found


@functools.cache
def crd(path: Path) -> Crd:
    (doc,) = documents(path)
    served = [v for v in doc["spec"]["versions"] if v.get("served")]
    storage = next(v for v in served if v.get("storage"))
    return Crd(
        doc["spec"]["group"],
        doc["spec"]["names"]["kind"],
        frozenset(v["name"] for v in served),
        strict(storage["schema"]["openAPIV3Schema"]),
    )


def pod_template_errors(name: str, template: dict[str, Any]) -> list[str]:
    """A pod template (a Deployment's, or one the operator makes) against the Pod schema the
    FlinkDeployment CRD embeds (spec.podTemplate: Kubernetes' PodTemplateSpec, from fabric8)."""
    schema = crd(FLINK_CRD).schema["properties"]["spec"]["properties"]["podTemplate"]
    found = [
        f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft4Validator(schema).iter_errors(template)
    ]
    for c in template.get("spec", {}).get("containers", []):
        for var in c.get("env", []):
            if ("value" in var) == ("valueFrom" in var):
                found.append(f"{name}: env {var.get('name')} needs exactly one of value and valueFrom")
    return found


# -- the manifests ------------------------------------------------------------------------------


@dataclass
class Manifests:
    root: Path
    by_kind: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    topics: list[dict[str, Any]] = field(default_factory=list)
    broker: dict[str, Any] = field(default_factory=dict)
    dockerfile: str = ""

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.by_kind.get(kind, []) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''} in {self.root}/k8s, found {len(found)}"
        return found[0]

    @property
    def flink(self) -> dict[str, Any]:
        return self.one("FlinkDeployment")

    @property
    def toml_text(self) -> str:
        return self.one("ConfigMap", "fraudstream-config")["data"]["fraudstream.toml"]

    def secret_value(self, name: str, key: str) -> str | None:
        for secret in self.by_kind.get("Secret", []):
            if secret["metadata"]["name"] == name:
                return secret.get("stringData", {}).get(key)
        return None

    def pods(self) -> dict[str, dict[str, Any]]:
        """Every pod template as Kubernetes gets it: the job's JobManager and TaskManager (the
        operator's merge of spec.podTemplate and theirs) and the Deployments'."""
        spec = self.flink["spec"]
        by_name = (
            spec.get("flinkConfiguration", {}).get("kubernetes.operator.pod-template.merge-arrays-by-name") == "true"
        )
        out = {
            f"flink {role}": merge_pod_templates(
                spec.get("podTemplate"), spec.get(role, {}).get("podTemplate"), by_name
            )
            for role in ("jobManager", "taskManager")
        }
        for d in self.by_kind.get("Deployment", []):
            out[f"deployment {d['metadata']['name']}"] = d["spec"]["template"]
        return out


def load(root: Path) -> Manifests:
    m = Manifests(root)
    for path in sorted((root / "k8s").glob("*.yaml")):
        for doc in documents(path):
            m.by_kind.setdefault(doc["kind"], []).append(doc)
    m.topics = documents(root / "kafka" / "topics.yaml")
    (patch,) = documents(root / "kafka" / "broker-config.yaml")
    m.broker = patch["spec"]["kafka"]["config"]
    m.dockerfile = (root / "docker" / "Dockerfile").read_text(encoding="utf-8")
    return m


def merge_pod_templates(base: dict | None, top: dict | None, by_name: bool) -> dict[str, Any]:
    """The operator's merge of a role's pod template over the shared one (FlinkUtils.mergePodTemplates
    in flink-kubernetes-operator 1.15): objects key by key, arrays by position, or by `name`
    with kubernetes.operator.pod-template.merge-arrays-by-name."""
    to = copy.deepcopy(base or {})

    def into(a: dict, b: dict) -> None:
        for key, value in b.items():
            if isinstance(a.get(key), list) and isinstance(value, list):
                merge_array(a[key], value)
            elif isinstance(a.get(key), dict):
                into(a[key], value)
            else:
                a[key] = copy.deepcopy(value)

    def merge_array(a: list, b: list) -> None:
        named = all(isinstance(x, dict) and "name" in x for x in [*a, *b])
        if by_name and named:
            merged = {x["name"]: x for x in a}
            for x in b:
                if x["name"] in merged:
                    into(merged[x["name"]], x)
                else:
                    merged[x["name"]] = copy.deepcopy(x)
            a[:] = list(merged.values())
            return
        for i, x in enumerate(b):
            if i >= len(a):
                a.append(copy.deepcopy(x))
            elif isinstance(a[i], dict) and isinstance(x, dict):
                into(a[i], x)
            else:
                a[i] = copy.deepcopy(x)

    into(to, copy.deepcopy(top or {}))
    return to


def settings_of(m: Manifests, tmp: Path, environ: dict[str, str] | None = None) -> Settings:
    path = tmp / "fraudstream.toml"
    path.write_text(m.toml_text, encoding="utf-8")
    return load_settings(path, environ=environ or {})


def environment(m: Manifests, template: dict[str, Any]) -> dict[str, str]:
    """The FRAUDSTREAM_* variables of a pod's containers, values from secret.example.yaml."""
    env: dict[str, str] = {}
    for c in template["spec"]["containers"]:
        for var in c.get("env", []):
            if not var["name"].startswith(config.ENV_PREFIX):
                continue
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            value = m.secret_value(ref["name"], ref["key"]) if ref else var.get("value")
            env[var["name"]] = value if value is not None else f"<no key {ref and ref['key']} in secret.example.yaml>"
    return env


# -- the checks ---------------------------------------------------------------------------------


def check_flink_schema(m: Manifests, tmp: Path) -> list[str]:
    found = crd(FLINK_CRD).errors(m.flink)
    for name, template in m.pods().items():
        found += pod_template_errors(name, template)
    return found


def check_flink_version(m: Manifests, tmp: Path) -> list[str]:
    """One Flink version everywhere: the pip package, the image, the CRD's flinkVersion, the jars."""
    pinned = re.search(r"^apache-flink==(\d+)\.(\d+)\.(\d+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pinned, "apache-flink is not pinned in constraints.txt"
    major, minor, patch = pinned.groups()
    version = f"{major}.{minor}.{patch}"
    spec = m.flink["spec"]
    found = []
    if spec.get("flinkVersion") != f"v{major}_{minor}":
        found.append(f"flinkVersion {spec.get('flinkVersion')} is not v{major}_{minor} (apache-flink {version})")
    if spec["job"].get("jarURI") != f"local:///opt/flink/opt/flink-python-{version}.jar":
        found.append(f"jarURI {spec['job'].get('jarURI')} is not the image's flink-python-{version}.jar")
    image = re.search(r"^ARG FLINK_IMAGE=flink:(\S+?)-", m.dockerfile, re.M)
    if not image or image.group(1) != version:
        found.append(f"the Dockerfile's Flink image is not {version}")
    python = re.search(r"^ARG PYTHON_VERSION=(\d+\.\d+)\.", m.dockerfile, re.M)
    if not python or python.group(1) != "3.11":
        found.append("the Dockerfile's Python is not 3.11 (what the suite runs on)")
    plugins = [
        v.get("value")
        for c in spec["podTemplate"]["spec"]["containers"]
        for v in c.get("env", [])
        if v["name"] == "ENABLE_BUILT_IN_PLUGINS"
    ]
    if plugins != [f"flink-s3-fs-hadoop-{version}.jar"]:
        found.append(f"ENABLE_BUILT_IN_PLUGINS {plugins} is not Flink {version}'s S3 filesystem")
    return found


def check_settings(m: Manifests, tmp: Path) -> list[str]:
    """fraudstream.toml loads, with each pod's own variables over it; none of its secrets is in it."""
    found = []
    try:
        plain = settings_of(m, tmp)
    except config.ConfigError as exc:
        return [f"fraudstream.toml: {exc}"]
    for name, template in m.pods().items():
        try:
            settings_of(m, tmp, environment(m, template))
        except config.ConfigError as exc:
            found.append(f"{name}: {exc}")
        for c in template["spec"]["containers"]:
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and m.secret_value(ref["name"], ref["key"]) is None:
                    found.append(f"{name}: {var['name']} reads {ref['name']}/{ref['key']}, not in secret.example.yaml")
    data = tomllib.loads(m.toml_text)
    secrets = [*config.SECRETS, ("store", "url"), ("kafka", "sasl_password"), ("broker", "sasl_users")]
    found += [
        f"fraudstream.toml holds the secret {s}.{k}: give it through the Secret"
        for s, k in secrets
        if k in data.get(s, {})
    ]
    if not plain.checkpoint_uri.startswith("s3://") or not plain.savepoint_uri.startswith("s3://"):
        found.append("checkpoints and savepoints are not on the object store")
    return found


def _duration_ms(text: str) -> int:
    """A Flink duration ("3000 ms", "3 s", "1 min", "6 h") in milliseconds."""
    number, unit = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", text).groups()
    return int(number) * {"": 1, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]


def _same(a: str, b: str) -> bool:
    if re.fullmatch(r"\d+\s*[a-z]*", a) and re.fullmatch(r"\d+\s*[a-z]*", b):
        return _duration_ms(a) == _duration_ms(b)
    return a == b


def entry_errors(args: list[str]) -> list[str]:
    """The module the FlinkDeployment's PythonDriver runs (`-pym M`) exists here, and takes the
    options after `--`."""
    import importlib.util

    from fraudstream.flink import entry

    module = args[args.index("-pym") + 1] if "-pym" in args[:-1] else None
    if module is None or importlib.util.find_spec(module) is None:
        return [f"job.args {args}: no module {module} to run"]
    if module != entry.__name__:
        return []
    options = args[args.index("--") + 1 :] if "--" in args else []
    try:
        entry.parse(options)
    except SystemExit:  # argparse's refusal (printed on stderr)
        return [f"job.args: {module} does not take {options}"]
    return []


def entry_settings(settings: Settings) -> Settings:
    """The settings as fraudstream.flink.entry gives them to the job (Flink's client decides where)."""
    return settings.model_copy(update={"cluster": settings.cluster.model_copy(update={"jobmanager": None})})


class _Recorder:
    """What the job sets in its Flink configuration (checkpoints.configure's set_string calls)."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    def set_string(self, key: str, value: str) -> None:
        self.entries[key] = value


def check_agreement(m: Manifests, tmp: Path) -> list[str]:
    """The FlinkDeployment says what the job says: the keys the job sets itself, its parallelism,
    its Python, the ports and paths its pods use."""
    from fraudstream.flink import checkpoints
    from fraudstream.flink.job import execution_mode

    settings = entry_settings(settings_of(m, tmp))
    job_sets = _Recorder()
    # What the entry path (fraudstream.flink.entry, application mode) sets, the operator having
    # given the job its id: not the mini-cluster's keys.
    operator = {checkpoints.JOB_ID_KEY: "a" * 32}
    checkpoints.configure(job_sets, settings, local=False, cluster=operator)  # type: ignore[arg-type]
    job_sets.entries.update(
        {
            "pipeline.max-parallelism": str(settings.pipeline.max_parallelism),
            "python.execution-mode": execution_mode(settings, local=False),
            **{
                key: settings.cluster.python
                for key in ("python.executable", "python.client.executable")
                if settings.cluster.python
            },
        }
    )
    spec = m.flink["spec"]
    conf = spec["flinkConfiguration"]
    found = [
        f"flinkConfiguration {k}: {v!r} is not a string (older operators refuse others)"
        for k, v in conf.items()
        if not isinstance(v, str)
    ]
    # The operator chooses the job's id (and a new one after each savepoint upgrade); a fixed one
    # from here would keep one id, and its checkpoint folder, across every deployment.
    found += [f"flinkConfiguration sets Flink's internal {k}" for k in conf if k.startswith("$internal.")]
    for key, value in conf.items():
        if key in job_sets.entries and not _same(str(value), job_sets.entries[key]):
            found.append(f"flinkConfiguration {key} = {value!r}, but the job sets {job_sets.entries[key]!r}")
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
        if key not in conf:
            found.append(f"flinkConfiguration has no {key}: the operator's savepoints would go elsewhere")
    if spec["job"].get("upgradeMode") != "savepoint":
        found.append(f"upgradeMode {spec['job'].get('upgradeMode')}: an upgrade must take a savepoint")
    if spec["job"].get("parallelism") != settings.pipeline.parallelism:
        found.append(
            f"job.parallelism {spec['job'].get('parallelism')} != pipeline.parallelism {settings.pipeline.parallelism}"
        )
    args = spec["job"].get("args", [])
    if args[:2] != ["-pym", "fraudstream.flink.entry"] or args[-2:] != ["--config", CONFIG_PATH]:
        found.append(f"job.args {args} do not run fraudstream.flink.entry with --config {CONFIG_PATH}")
    found += entry_errors(args)
    # Prometheus: the reporter's port is the pods' `metrics` port and the scrape annotation's.
    port = conf.get("metrics.reporter.prom.port")
    if (
        conf.get("metrics.reporter.prom.factory.class")
        != "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    ):
        found.append("no Prometheus reporter in flinkConfiguration")
    pods = m.pods()
    for name in ("flink jobManager", "flink taskManager"):
        ports = {
            p["name"]: str(p["containerPort"]) for c in pods[name]["spec"]["containers"] for p in c.get("ports", [])
        }
        annotation = pods[name].get("metadata", {}).get("annotations", {}).get("prometheus.io/port")
        if not (port == ports.get("metrics") == annotation):
            found.append(
                f"{name}: reporter port {port}, container port {ports.get('metrics')}, scrape annotation {annotation}"
            )
    follow = m.one("Deployment", "fraudstream-store-follow")["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in follow["spec"]["containers"] for p in c.get("ports", [])}
    if ports.get("metrics") != settings.metrics.process_port:
        found.append(
            f"the store copier's metrics port {ports.get('metrics')} != metrics.process_port {settings.metrics.process_port}"
        )
    dash = m.one("Deployment", "fraudstream-dashboard")["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in dash["spec"]["containers"] for p in c.get("ports", [])}
    if ports.get("http") != settings.dashboard.port:
        found.append(f"the dashboard's port {ports.get('http')} != dashboard.port {settings.dashboard.port}")
    # Paths: fraudstream.toml, the Kafka CA and the data dir are mounted where the settings say.
    for name, template in pods.items():
        for c in template["spec"]["containers"]:
            mounts = {v["mountPath"] for v in c.get("volumeMounts", [])}
            wanted = {CONFIG_PATH, str(settings.data_dir)}
            if settings.kafka.ssl_ca_location and name != "deployment fraudstream-dashboard":
                wanted.add(str(settings.kafka.ssl_ca_location.parent))
            if not wanted <= mounts:
                found.append(f"{name}: {sorted(wanted - mounts)} not mounted")
    # The job's jars (jars.py: flink/, parquet/, onnx/ under broker.jars_dir) are where the image has them.
    for part in ("flink", "parquet", "onnx"):
        if not re.search(rf"^COPY --from=jars \S+/{part} {settings.broker.jars_dir}/{part}$", m.dockerfile, re.M):
            found.append(f"the Dockerfile puts no {part}/ jars in broker.jars_dir {settings.broker.jars_dir}")
    return found


def check_deployments(m: Manifests, tmp: Path) -> list[str]:
    """The store copier is the store's one writer; every command is one the CLI has."""
    from fraudstream.cli.main import cli

    found = []
    follow = m.one("Deployment", "fraudstream-store-follow")["spec"]
    if follow.get("replicas") != 1 or follow.get("strategy", {}).get("type") != "Recreate":
        found.append("the store copier must run once: replicas 1, strategy Recreate")
    images = {m.flink["spec"]["image"]}
    for d in m.by_kind.get("Deployment", []):
        name = d["metadata"]["name"]
        images |= {c["image"] for c in d["spec"]["template"]["spec"]["containers"]}
        if d["spec"]["selector"]["matchLabels"].items() - d["spec"]["template"]["metadata"]["labels"].items():
            found.append(f"{name}: the selector does not match the pod's labels")
        for c in d["spec"]["template"]["spec"]["containers"]:
            command = list(c.get("command", []))
            if command[:3] != ["fraudstream", "--config", CONFIG_PATH]:
                found.append(f"{name}: {command} does not read {CONFIG_PATH}")
                continue
            group: Any = cli
            words = [w for w in command[3:] if not w.startswith("-")]
            for word in words:
                group = getattr(group, "commands", {}).get(word)
                if group is None:
                    found.append(f"{name}: 'fraudstream {' '.join(words)}' is not a command")
                    break
            else:
                known = {o for p in group.params for o in p.opts}
                found += [
                    f"{name}: {group.name} has no option {w}"
                    for w in command[3:]
                    if w.startswith("-") and w not in known
                ]
    if len(images) != 1:
        found.append(f"the pods run different images {sorted(images)}: the job and its store must be one version")
    return found


def check_topics(m: Manifests, tmp: Path) -> list[str]:
    settings = settings_of(m, tmp)
    found = [e for t in m.topics for e in crd(TOPIC_CRD).errors(t)]
    topics = {t["spec"].get("topicName", t["metadata"]["name"]): t for t in m.topics}
    defaults = KafkaSettings()
    names = {defaults.raw_topic, defaults.alerts_topic, defaults.dead_letter_topic}
    configured = {settings.kafka.raw_topic, settings.kafka.alerts_topic, settings.kafka.dead_letter_topic}
    if set(topics) != names or configured != names:
        found.append(f"topics {sorted(topics)}, fraudstream.toml's {sorted(configured)}, the defaults {sorted(names)}")
    cluster = settings.kafka.bootstrap_servers.split(".")[0].removesuffix("-kafka-bootstrap")
    for name, t in topics.items():
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", t["metadata"]["name"]):
            found.append(f"{name}: metadata.name {t['metadata']['name']} is not a Kubernetes name")
        if t["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            found.append(f"{name}: not labelled for the cluster {cluster} that kafka.bootstrap_servers names")
        replicas, isr = t["spec"].get("replicas", 0), int(t["spec"].get("config", {}).get("min.insync.replicas", 1))
        if replicas < 3 or isr < 2 or replicas < isr + 1:
            found.append(f"{name}: replicas {replicas}, min.insync.replicas {isr}: want 3 and 2 (one broker may fail)")
    raw = topics.get(settings.kafka.raw_topic, {}).get("spec", {})
    from fraudstream.flink.job import ADMIT_MAX_PARALLELISM

    parallelism = m.flink["spec"]["job"]["parallelism"]
    partitions = raw.get("partitions", 0)
    if not parallelism <= partitions <= min(settings.pipeline.max_parallelism, ADMIT_MAX_PARALLELISM):
        found.append(
            f"the raw topic's {partitions} partitions: want >= job.parallelism {parallelism}, <= max parallelism"
        )
    if partitions != settings.kafka.raw_partitions:
        found.append(f"the raw topic's {partitions} partitions != kafka.raw_partitions {settings.kafka.raw_partitions}")
    retention = int(raw.get("config", {}).get("retention.ms", 0))
    if retention <= settings.kafka.transaction_timeout_ms:
        found.append("the raw topic's retention is shorter than the transactions a resumable checkpoint may hold")
    return found


def check_broker(m: Manifests, tmp: Path) -> list[str]:
    settings = settings_of(m, tmp)
    found = []
    if int(m.broker.get("transaction.max.timeout.ms", 900_000)) < settings.kafka.transaction_timeout_ms:
        found.append(
            f"transaction.max.timeout.ms {m.broker.get('transaction.max.timeout.ms', '900000 (default)')} < "
            f"kafka.transaction_timeout_ms {settings.kafka.transaction_timeout_ms}: the job's sinks would be refused"
        )
    rf, isr = (
        m.broker.get("transaction.state.log.replication.factor", 3),
        m.broker.get("transaction.state.log.min.isr", 2),
    )
    if rf < isr + 1 or m.broker.get("offsets.topic.replication.factor", 3) < 3:
        found.append("the transaction and offset logs are less durable than the topics")
    return found


# -- the tests ----------------------------------------------------------------------------------


@functools.cache
def manifests() -> Manifests:
    return load(DEPLOY)


def test_the_flinkdeployment_fits_the_operators_crd(tmp_path: Path) -> None:
    assert check_flink_schema(manifests(), tmp_path) == []


def test_one_flink_version_everywhere(tmp_path: Path) -> None:
    assert check_flink_version(manifests(), tmp_path) == []


def test_fraudstream_toml_loads_with_every_pods_variables(tmp_path: Path) -> None:
    assert check_settings(manifests(), tmp_path) == []


def test_the_flinkdeployment_agrees_with_the_jobs_settings(tmp_path: Path) -> None:
    assert check_agreement(manifests(), tmp_path) == []


def test_the_copier_is_single_and_the_commands_exist(tmp_path: Path) -> None:
    assert check_deployments(manifests(), tmp_path) == []


def test_the_topic_plan_fits_strimzi_and_the_job(tmp_path: Path) -> None:
    assert check_topics(manifests(), tmp_path) == []


def test_the_brokers_allow_the_jobs_transactions(tmp_path: Path) -> None:
    assert check_broker(manifests(), tmp_path) == []


# (file under deploy/, text in it, its replacement, the check that must then complain, what it says)
BREAKAGES = [
    ("k8s/flinkdeployment.yaml", "    upgradeMode: savepoint\n", "    upgradeMode: savepoints\n", check_flink_schema, "upgradeMode"),
    ("k8s/flinkdeployment.yaml", "  flinkVersion: v2_2", "  flinkVersion: v2_2\n  restartNonse: 1", check_flink_schema, "restartNonse"),
    ("k8s/flinkdeployment.yaml", "      cpu: 4", "      cpu: four", check_flink_schema, "cpu"),
    ("k8s/flinkdeployment.yaml", '    kubernetes.operator.pod-template.merge-arrays-by-name: "true"\n', "", check_flink_schema, "exactly one"),
    ("k8s/flinkdeployment.yaml", "flinkVersion: v2_2", "flinkVersion: v2_1", check_flink_version, "flinkVersion"),
    ("k8s/flinkdeployment.yaml", "s3://fraudstream-prod/flink/savepoints", "s3://other/savepoints", check_agreement, "savepoint-dir"),
    ("k8s/flinkdeployment.yaml", "interval: 3 s", "interval: 30 s", check_agreement, "checkpointing.interval"),
    ("k8s/flinkdeployment.yaml", "    parallelism: 32", "    parallelism: 16", check_agreement, "job.parallelism"),
    ("k8s/flinkdeployment.yaml", "python.execution-mode: process", "python.execution-mode: thread", check_agreement, "execution-mode"),
    ("k8s/flinkdeployment.yaml", "state.backend.type: rocksdb", "state.backend.type: hashmap", check_agreement, "state.backend.type"),
    ("k8s/flinkdeployment.yaml", 'incremental: "true"', 'incremental: "false"', check_agreement, "incremental"),
    ("k8s/flinkdeployment.yaml", '"--", "--config"', '"--", "--configs"', check_agreement, "does not take"),
    ("k8s/flinkdeployment.yaml", '"-pym", "fraudstream.flink.entry"', '"-pym", "fraudstream.flink.entri"', check_agreement, "no module"),
    ("k8s/flinkdeployment.yaml", 'prom.port: "9249"', 'prom.port: "9250"', check_agreement, "reporter port"),
    ("k8s/flinkdeployment.yaml", "FRAUDSTREAM_KAFKA__SASL_PASSWORD", "FRAUDSTREAM_KAFKA_SASL_PASSWORD", check_settings, "unknown setting"),
    ("k8s/store-follow.yaml", "FRAUDSTREAM_STORE__URL", "FRAUDSTREAM_STORE__URI", check_settings, "unknown setting"),
    ("k8s/secret.example.yaml", '"postgresql://fraudstream:', '"mysql://fraudstream:', check_settings, "store.url"),
    ("k8s/configmap.yaml", "    batch_size = 500", "    batch_size = 0", check_settings, "batch_size"),
    ("k8s/configmap.yaml", "    batch_size = 500", "    batch_sise = 500", check_settings, "batch_sise"),
    ("k8s/configmap.yaml", "    # sasl_password:", '    sasl_password = "x"\n    #', check_settings, "secret kafka.sasl_password"),
    ("k8s/dashboard.yaml", "readinessProbe:", "readinesProbe:", check_flink_schema, "readinesProbe"),
    ("k8s/configmap.yaml", 'jars_dir = "/opt/fraudstream/jvm/lib"', 'jars_dir = "/opt/jars"', check_agreement, "broker.jars_dir"),
    ("k8s/store-follow.yaml", '"follow", "--quiet"', '"follow", "--quite"', check_deployments, "no option --quite"),
    ("k8s/dashboard.yaml", "key: dashboard-token", "key: dashboard-tokn", check_settings, "dashboard-tokn"),
    ("k8s/flinkdeployment.yaml", "    taskmanager.numberOfTaskSlots: \"4\"\n", "    taskmanager.numberOfTaskSlots: \"4\"\n    $internal.pipeline.job-id: 00000000000000000000000000000000\n", check_agreement, "internal"),
    ("k8s/dashboard.yaml", "image: registry.example.com/fraudstream:0.1.0", "image: registry.example.com/fraudstream:0.0.9", check_deployments, "different images"),
    ("k8s/store-follow.yaml", "type: Recreate", "type: RollingUpdate", check_deployments, "replicas 1"),
    ("k8s/store-follow.yaml", '"store", "follow"', '"store", "folow"', check_deployments, "not a command"),
    ("kafka/topics.yaml", "topicName: zomato_fraud_alerts", "topicName: fraud_alerts", check_topics, "topics"),
    ("kafka/topics.yaml", "  partitions: 32", "  partitions: 16", check_topics, "partitions"),
    ("kafka/topics.yaml", "  partitions: 32", "  partitions: -1", check_topics, "minimum"),
    ("kafka/topics.yaml", "  replicas: 3\n  config:\n    min.insync.replicas: \"2\"\n    cleanup.policy: delete\n    # 7",
     "  replicas: 2\n  config:\n    min.insync.replicas: \"2\"\n    cleanup.policy: delete\n    # 7", check_topics, "replicas 2"),
    ("kafka/broker-config.yaml", "transaction.max.timeout.ms: 3600000", "transaction.max.timeout.ms: 600000", check_broker, "transaction.max.timeout.ms"),
]  # fmt: skip


@pytest.mark.parametrize(("file", "old", "new", "check", "said"), BREAKAGES, ids=[f"{b[0]}:{b[4]}" for b in BREAKAGES])
def test_a_broken_manifest_is_caught(tmp_path: Path, file: str, old: str, new: str, check: Any, said: str) -> None:
    broken = tmp_path / "deploy"
    shutil.copytree(DEPLOY, broken)
    text = (broken / file).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {file}: update this breakage"
    (broken / file).write_text(text.replace(old, new), encoding="utf-8")
    m = load(broken)
    problems = check(m, tmp_path)
    assert any(said in p for p in problems), problems


def test_the_entry_path_keeps_the_job_id_flink_gives(tmp_path: Path) -> None:
    """Under the operator (and Flink with HA) the cluster's configuration names the job's id:
    the entry path sets no `$internal.*` key then, and its run record names that id; without
    one, and for `fraudstream run --jobmanager`, the job chooses it (its record names it too)."""
    from fraudstream.flink import checkpoints

    plain = load_settings(
        None,
        {"checkpoint.dir": str(tmp_path / "chk"), "pipeline.source": "kafka", "cluster.jobmanager": "jm.example:8081"},
        environ={},
    )
    given = "0123456789abcdef0123456789abcdef"
    entry = _Recorder()
    checkpoints.configure(entry, entry_settings(plain), local=False, cluster={checkpoints.JOB_ID_KEY: given})  # type: ignore[arg-type]
    assert [k for k in entry.entries if k.startswith("$internal.")] == []
    record = checkpoints.current_run()
    assert record is not None and record.job_id == given and record.path.name == f"{given}.json"
    for settings, cluster in ((entry_settings(plain), {}), (plain, {checkpoints.JOB_ID_KEY: given})):
        chosen = _Recorder()
        checkpoints.configure(chosen, settings, local=False, cluster=cluster)  # type: ignore[arg-type]
        job_id = chosen.entries[checkpoints.JOB_ID_KEY]
        record = checkpoints.current_run()
        assert job_id != given and record is not None and record.job_id == job_id
