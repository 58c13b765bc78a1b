"""Every stateful operator keeps its id whatever the parallelism of the job and of its steps,
so a savepoint restores into any of them: the JobGraph is built as a submission builds it
(PyFlink's own graph generation, no cluster) and the operator ids compared."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

import fraudstream.kafka.clients as kafka_clients
from fraudstream.config import load_settings
from fraudstream.flink import job
from fraudstream.flink.job import build_job
from fraudstream.flink.sources import SourceSpec
from fraudstream.rules.live import RulesPlan, follows_topic
from fraudstream.rules.model import RuleSet

# Operators that keep state (by their name with the planner's numbers removed); these must keep
# their ids. The sql engine's rules are the rules topic's source and check, the Stamper
# (stamp-rules) and the keyed rule steps.
STATEFUL = re.compile(
    r"^(Source: orders-kafka|Source: rules-kafka|check-rules|admit|redelivery|device-features|user-features|score|cooldown|detect|dedup|"
    r"stamp-rules|user-rules|device-rules|ConstraintEnforcer|\*anonymous_datastream_source|StreamingFileWriter|PartitionCommitter|"
    r"\w+\[\]: (Writer|Committer))"
)
PARTITIONS = 2


def _stateful_ids(data_dir, parallelism: int, steps: dict[str, int], **flags) -> dict[str, list[str]]:
    from pyflink.java_gateway import get_gateway

    settings = load_settings(
        flags={
            "data_dir": str(data_dir),
            "pipeline.source": "kafka",
            "pipeline.parallelism": parallelism,
            "pipeline.step_parallelism": steps,
            **flags,
        },
        environ={},
    )
    env = build_job(settings, SourceSpec("kafka")).env
    graph = env._generate_stream_graph(False)  # as execute_async does (Python operators chained)
    hashes = get_gateway().jvm.org.apache.flink.streaming.api.graph.StreamGraphHasherV2()
    by_node = hashes.traverseStreamGraphAndGenerateHashes(graph)
    ids: dict[str, list[str]] = defaultdict(list)
    for node_id in by_node.keySet():
        name = str(graph.getStreamNode(node_id).getOperatorName())
        # PyFlink fuses Python steps of one width into one (`dedup, to-alerts_out`): the first names it
        key = re.sub(r"\$?\d+", "", name).split(", ")[0]
        if STATEFUL.match(key):
            ids[key].append(bytes(by_node.get(node_id)).hex())
    return {k: sorted(v) for k, v in ids.items()}


@pytest.mark.flink
@pytest.mark.parametrize(
    "engine, model, variants",
    [
        ("sql", False, [(1, {}), (2, {}), (4, {}), (4, {"rules": 1}), (2, {"rules": 4, "cooldown": 1, "sinks": 4})]),
        ("sql", True, [(1, {}), (4, {}), (2, {"features": 4, "rules": 1, "redelivery": 4})]),
        ("datastream", False, [(1, {}), (4, {}), (2, {"rules": 4, "cooldown": 1, "sinks": 4})]),
    ],
    ids=["sql", "sql-model", "datastream"],
)
def test_stateful_operators_keep_their_ids_at_any_parallelism(tmp_path, monkeypatch, engine, model, variants):
    monkeypatch.setattr(kafka_clients, "check_job_topics", lambda k: PARTITIONS)
    # No broker: the rules plan as a live job on an empty rules topic would have it.
    monkeypatch.setattr(
        job, "plan", lambda settings, kind: RulesPlan(RuleSet.from_settings(settings), follows_topic(settings, kind))
    )
    flags: dict[str, object] = {"pipeline.engine": engine}
    if model:
        from tests.modelkit import tiny_model

        tiny_model(tmp_path / "model.zip", count=1_500, users=100)
        flags["model.path"] = str(tmp_path / "model.zip")
    seen = {(p, tuple(sorted(steps.items()))): _stateful_ids(tmp_path, p, steps, **flags) for p, steps in variants}
    first_key, first = next(iter(seen.items()))
    assert len(first) >= (6 if engine == "sql" else 4), first  # the stateful steps were found
    if engine == "sql":
        assert {"Source: rules-kafka", "stamp-rules", "user-rules", "device-rules"} <= first.keys(), first
    for key, ids in seen.items():
        changed = {k: (first.get(k), v) for k, v in ids.items() if first.get(k) != v}
        assert ids.keys() == first.keys() and not changed, f"{key} vs {first_key}: {changed}"
