"""`fraudstream savepoint`: a consistent snapshot of the running job, for upgrades and threshold changes.

The running `fraudstream run` leaves `<data-dir>/job.json` (its PID, job id and REST port);
this command asks Flink's REST API of that job for a savepoint and waits for it.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import click

from fraudstream.cli.app import UserError, resolve_settings
from fraudstream.cli.options import Command
from fraudstream.flink.jobinfo import JobInfo


def _call(url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = "; ".join(json.loads(detail).get("errors", [detail]))
        first = detail.splitlines()[0] if detail else ""
        raise UserError(
            f"Flink refused the request ({exc.code}): {first} (a job that has read all of a bounded input "
            "cannot take a savepoint; the Flink log under <data-dir>/flink-logs says more)"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"cannot reach the job's REST endpoint at {url.split('/jobs')[0]}: {reason}") from None


@click.command(cls=Command)
@click.option("--stop", is_flag=True, help="Stop the job once the savepoint is taken (a planned upgrade).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the savepoint.")
@click.pass_context
def savepoint(ctx: click.Context, stop: bool, timeout: float) -> None:
    """Take a savepoint of the running job and print where it is.

    \b
    Restore it, with the same or changed settings (thresholds, parallelism), with:
      fraudstream run --source kafka --from-savepoint PATH
    Savepoints go to checkpoint.savepoint_dir (default <data-dir>/savepoints) and are kept
    until you delete them; checkpoints, by contrast, are Flink's to manage.
    """
    settings = resolve_settings(ctx)
    info_path = JobInfo.path(settings)
    info = JobInfo.read(info_path)
    if info is None:
        raise UserError(f"no running job found ({info_path} is missing): start one with 'fraudstream run'")
    if not info.is_running():
        info_path.unlink(missing_ok=True)
        raise UserError(f"the job recorded in {info_path} (PID {info.pid}) is no longer running")
    base = f"{info.rest_url(settings)}/jobs/{info.job_id}"
    if stop:
        JobInfo.stop_marker(info_path).touch()
        try:
            trigger = _call(f"{base}/stop", {"targetDirectory": info.savepoint_uri, "drain": False})
        except UserError:  # refused (a job restarting, say): the run goes on, not as stopped
            JobInfo.stop_marker(info_path).unlink(missing_ok=True)
            raise
    else:
        trigger = _call(f"{base}/savepoints", {"target-directory": info.savepoint_uri, "cancel-job": False})
    request_id = trigger["request-id"]
    click.echo(f"savepoint of job {info.job_id} requested; waiting...", err=True)
    triggered = time.time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = _call(f"{base}/savepoints/{request_id}")
        except UserError:
            if not stop:
                raise
            # Stopped, the local mini-cluster shuts down with its job, REST and all: the
            # savepoint is then found where it was written.
            location = _written_since(info, triggered)
            if location is None:
                time.sleep(0.5)
                continue
            _done(location, stop)
            return
        if status.get("status", {}).get("id") == "COMPLETED":
            operation = status.get("operation", {})
            if "failure-cause" in operation:
                JobInfo.stop_marker(info_path).unlink(missing_ok=True)
                cause = operation["failure-cause"].get("stack-trace", "unknown").splitlines()[0]
                raise UserError(f"the savepoint failed: {cause}")
            _done(operation["location"].removeprefix("file:"), stop)
            return
        time.sleep(0.5)
    raise UserError(f"no savepoint after {timeout:g}s; the job may still be taking it")


def _written_since(info: JobInfo, since: float) -> str | None:
    """A complete savepoint of this job written after `since`, in a local savepoint directory."""
    from fraudstream.flink.checkpoints import local_dir

    folder = local_dir(info.savepoint_uri)
    if folder is None or not folder.is_dir():
        return None
    found = [
        m.parent for m in folder.glob(f"savepoint-{info.job_id[:6]}-*/_metadata") if m.stat().st_mtime >= since - 1
    ]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


def _done(location: str, stopped: bool) -> None:
    click.echo(location)
    click.echo(
        f"{'stopped the job; ' if stopped else ''}restore with: fraudstream run --from-savepoint {location}", err=True
    )
