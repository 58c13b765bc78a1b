"""What a cluster submission ships (fraudstream.flink.remote): complete, and nothing of ours left out.

The workers' modules are imported in a fresh interpreter where only the standard library,
apache-flink's own dependency closure and the shipped directory can be imported: whatever
the ship list misses fails here, not on a cluster's TaskManager."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pyflink.common import Configuration

from fraudstream.config import load_settings
from fraudstream.errors import UserFacingError
from fraudstream.flink import remote

# Every module whose functions or classes the job graph hands to the Python workers.
WORKER_MODULES = [
    "fraudstream.flink.functions",
    "fraudstream.flink.sql_engine",
    "fraudstream.flink.sinks",
    "fraudstream.flink.sources",
    "fraudstream.flink.archive",
    "fraudstream.flink.job",
]


def _top_levels(distributions: set[str]) -> set[str]:
    """The top-level import names the installed `distributions` provide."""
    names = set()
    for top, dists in metadata.packages_distributions().items():
        if any(remote._normal(d) in distributions for d in dists):
            names.add(top)
    return names


def test_the_workers_modules_import_from_the_ship_dir_alone(tmp_path):
    settings = load_settings(flags={"data_dir": str(tmp_path)}, environ={})
    ship = remote.ship_dir(settings)
    assert ship.parent == tmp_path.resolve() / "cluster" / "ship"
    assert remote.ship_dir(settings) == ship  # prepared once per code version
    conf = Configuration()  # the submission's keys: no python.pythonpath before the shipped dir
    remote.configure(
        conf, load_settings(flags={"data_dir": str(tmp_path), "cluster.jobmanager": "127.0.0.1:1"}, environ={})
    )
    assert conf.get_string("python.files", "") == str(ship)
    assert conf.get_string("python.pythonpath", "unset") == "unset"
    assert conf.get_string("python.executable", "") == sys.executable
    assert not list(ship.rglob("__pycache__")), "compiled files shipped"
    shipped = json.loads((ship / "SHIPPED.json").read_text())["distributions"]
    assert {"pydantic", "pydantic-core", "annotated-types", "typing-inspection", "confluent-kafka"} <= set(shipped)
    flink = remote.closure(["apache-flink"])
    assert not set(shipped) & flink, "apache-flink's own dependencies shipped"
    allowed = sorted(_top_levels(flink) | {p.name.removesuffix(".py") for p in ship.iterdir()})
    source_root = str(Path(remote.fraudstream.__file__).resolve().parents[1])
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys
        allowed = set({allowed!r}) | set(sys.stdlib_module_names)
        sys.path[:] = [{str(ship)!r}] + [p for p in sys.path if p not in ("", {source_root!r})]

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                top = name.split(".")[0]
                if top not in allowed and not top.startswith("_sysconfigdata"):  # stdlib, built per platform
                    raise ImportError(f"not shipped and not apache-flink's: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        for module in {WORKER_MODULES!r}:
            importlib.import_module(module)
        import fraudstream, pydantic, confluent_kafka
        print(fraudstream.__file__); print(pydantic.__file__); print(confluent_kafka.__file__)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    files = done.stdout.split()
    assert len(files) == 3 and all(f.startswith(str(ship)) for f in files), files


def test_apache_flinks_closure_leaves_pydantic_to_be_shipped():
    """What the blocker lets through: apache-flink's own dependencies, not pydantic."""
    flink = remote.closure(["apache-flink"])
    assert "pydantic" not in flink and "apache-beam" in flink and "py4j" in flink
    assert "pydantic" not in _top_levels(flink)


def test_the_workers_pythonpath_is_set_only_when_given():
    """Flink puts python.pythonpath before python.files on the workers' PYTHONPATH: a default
    (this interpreter's site-packages) would shadow the shipped packages."""
    assert remote.workers_python(load_settings(flags={}, environ={})) == (sys.executable, None)
    other = load_settings(
        flags={"cluster.python": "/opt/py/bin/python", "cluster.python_path": "/opt/py/lib"}, environ={}
    )
    assert remote.workers_python(other) == ("/opt/py/bin/python", "/opt/py/lib")


def test_no_cluster_at_the_address_is_one_line():
    from tests.cluster.conftest import free_port

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(UserFacingError, match=f"no Flink cluster at {address}"):
        remote.overview(address, timeout_s=2)


@pytest.mark.parametrize(
    ("info", "parallelism", "readers", "says"),
    [
        ({"flink-version": "1.20.1", "slots-available": 8}, 1, 1, "runs Flink 1.20.1; this job is built for Flink 2.2"),
        ({"flink-version": "2.2.1", "slots-available": 2, "slots-total": 4}, 4, 2, "2 free task slots"),
        ({"flink-version": "2.2.1", "slots-available": 3}, 1, 4, "this job needs 4"),
        ({"flink-version": "2.2.0", "slots-available": 4}, 4, 4, None),
    ],
)
def test_the_cluster_is_refused_for_another_version_or_too_few_slots(info, parallelism, readers, says):
    settings = load_settings(flags={"pipeline.parallelism": parallelism}, environ={})
    assert (says is None) == (remote.refusal(info, settings, readers) is None)
    if says is not None:
        assert says in remote.refusal(info, settings, readers)


def test_the_widest_step_decides_the_slots():
    settings = load_settings(flags={"pipeline.step_parallelism": {"rules": 3}}, environ={})
    assert remote.slots_needed(settings, readers=2) == 3
    assert remote.slots_needed(settings, readers=5) == 5


def test_run_with_no_cluster_at_the_address_is_one_line(tmp_path):
    from tests.cluster.conftest import free_port

    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream", "--data-dir", str(tmp_path), "run", "--count", "1", "--jobmanager", address],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"no Flink cluster at {address}" in done.stderr
    assert "Traceback" not in done.stderr and "=====" not in done.stdout  # refused before the banner


def test_the_banner_warns_of_the_datastream_engine_on_a_cluster():
    from fraudstream.cli.run_cmd import banner

    def warns(**flags: str) -> bool:
        return "the datastream engine runs every order through Python" in banner(load_settings(flags=flags, environ={}))

    assert warns(**{"cluster.jobmanager": "127.0.0.1:8081", "pipeline.engine": "datastream"})
    assert not warns(**{"cluster.jobmanager": "127.0.0.1:8081", "pipeline.engine": "sql"})
    assert not warns(**{"pipeline.engine": "datastream"})  # the mini-cluster: thread mode
