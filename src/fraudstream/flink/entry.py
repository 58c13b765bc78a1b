"""The job for Flink's own client: the same job graph as `fraudstream run --source kafka`.

    flink run -m HOST:PORT -d -pyexec PYTHON -pym fraudstream.flink.entry -pyfs SHIP_DIR [-p N] \\
        -- --config FILE [--set KEY=VALUE ...] [--profile NAME]

SHIP_DIR is the directory `fraudstream run --jobmanager` prepares (`fraudstream.flink.remote.ship_dir`,
printed by `python -m fraudstream.flink.entry --ship-dir --config FILE`). Only the job runs here:
the store's copier and the notifications do not (run `fraudstream store follow` beside it), and
the job reads Kafka only (the generator and file sources return results to a driver).
`-p N` (else the cluster's parallelism.default) is the job's parallelism unless
`--set pipeline.parallelism=N` says otherwise; `-s SAVEPOINT` restores as usual. The job's id is
the one Flink's configuration gives (the operator's, or Flink's own with HA), else one the job
chooses (`checkpoints.configure`); its run record, if any, names it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fraudstream.config import load_settings
from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fraudstream.flink.entry", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="the TOML configuration file (as `fraudstream --config`)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one setting")
    parser.add_argument("--profile", help="a settings profile (as `fraudstream --profile`)")
    parser.add_argument("--ship-dir", action="store_true", help="prepare and print the directory for -pyfs; no job")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    flags: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"--set {item}: use KEY=VALUE", file=sys.stderr)
            return 2
        flags[key] = value
    try:
        settings = load_settings(
            args.config, {**flags, "pipeline.source": "kafka", "pipeline.verbose": False}, None, args.profile
        )
        if args.ship_dir:
            from fraudstream.flink.remote import ship_dir

            print(ship_dir(settings))
            return 0
        return _submit(settings, "pipeline.parallelism" in flags)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _submit(settings, parallelism_given: bool) -> int:
    from pyflink.datastream import StreamExecutionEnvironment

    from fraudstream.flink import checkpoints
    from fraudstream.flink.job import build_job, make_environment
    from fraudstream.flink.sources import SourceSpec

    if not parallelism_given:  # `flink run -p N`, or the cluster's parallelism.default
        given = StreamExecutionEnvironment.get_execution_environment().get_parallelism()
        if given > 0:
            settings = settings.model_copy(
                update={"pipeline": settings.pipeline.model_copy(update={"parallelism": given})}
            )
    # the cluster: Flink's client decides (-m, or its configuration), not cluster.jobmanager
    settings = settings.model_copy(update={"cluster": settings.cluster.model_copy(update={"jobmanager": None})})
    if settings.broker.jars_dir is None:  # this client imported the shipped copy: the jars are where it was made
        from fraudstream.flink.remote import shipped_jars_dir

        found = shipped_jars_dir()
        if found is not None:
            settings = settings.model_copy(update={"broker": settings.broker.model_copy(update={"jars_dir": found})})
    env = make_environment(settings, context=True)
    graph = build_job(settings, SourceSpec("kafka"), env=env)
    result = graph.env.execute("fraudstream")  # returns at once with `flink run -d`
    job_id = str(result.get_job_id())
    logger.info("job submitted: %s", job_id)
    record = checkpoints.current_run()
    if record is not None and record.job_id != job_id:  # would leave --resume a record of no job
        logger.warning("the run record %s names job %s, but Flink runs it as %s", record.path, record.job_id, job_id)
    if settings.kafka.bounded and graph.on_finished is not None and not _detached(graph.env):
        graph.on_finished()  # the bounded run ended here: record its end (see job._bounded_run)
    return 0


def _detached(env) -> bool:
    conf = env._j_stream_execution_environment.getConfiguration()
    return str(conf.toMap().get("execution.attached", "true")).lower() == "false"


if __name__ == "__main__":
    sys.exit(main())
