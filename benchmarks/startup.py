"""How long `fraudstream run` takes to its first alert, where the time goes, and the JVM's memory.

    .venv/bin/python benchmarks/startup.py                  # 3 runs of the embedded default
    .venv/bin/python benchmarks/startup.py --runs 5 --watch 30 -- --rate 200

Each run starts `fraudstream run` (the embedded default: the built-in generator, the sql
engine, the local mini-cluster; anything after `--` is passed on), reads its console until the
first ALERT line, keeps it running `--watch` seconds more while sampling the resident memory of
every process in its tree, then stops it with SIGINT as a user's Ctrl-C would. The phases come
from the run's own log (app.log): Python start-up and settings (to the first log line), the job
planned and submitted (to "job ... submitted"), the job's first order to its first alert.
Prints one row per run and the median; `--out` writes JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_time(line: str) -> float | None:
    m = _STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp() if m else None


def _first(log: list[str], needle: str) -> float | None:
    return next((t for line in log if needle in line and (t := _log_time(line)) is not None), None)


def one_run(extra: list[str], watch_s: float, timeout_s: float) -> dict:
    data = Path(tempfile.mkdtemp(prefix="startup-"))
    cmd = [sys.executable, "-m", "fraudstream", "--data-dir", str(data), "run", *extra]
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    first_alert: list[float] = []
    peak: dict[str, float] = {}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not first_alert and line.startswith("ALERT"):
                first_alert.append(time.time())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    deadline = started + timeout_s
    while proc.poll() is None and time.time() < deadline:
        if first_alert and time.time() > first_alert[0] + watch_s:
            break
        try:
            for p in [root, *root.children(recursive=True)]:
                kind = "JVM" if p.name() == "java" else "Python"
                rss = p.memory_info().rss / 2**20
                key = f"{kind} {p.pid}"
                peak[key] = max(peak.get(key, 0.0), rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(5)
    log = (data / "app.log").read_text(errors="replace").splitlines() if (data / "app.log").exists() else []
    logged = _first(log, "fraudstream.cli: starting")
    submitted = _first(log, " submitted: ")
    jvm = max((v for k, v in peak.items() if k.startswith("JVM")), default=None)
    return {
        "first_alert_s": round(first_alert[0] - started, 2) if first_alert else None,
        "python_and_settings_s": round(logged - started, 2) if logged else None,
        "planned_and_submitted_s": round(submitted - logged, 2) if submitted and logged else None,
        "submitted_to_first_alert_s": round(first_alert[0] - submitted, 2) if first_alert and submitted else None,
        "jvm_peak_rss_mb": round(jvm) if jvm else None,
        "python_peak_rss_mb": round(sum(v for k, v in peak.items() if k.startswith("Python"))),
        "data_dir": str(data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--watch", type=float, default=20.0, help="seconds to keep each run after its first alert")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("extra", nargs="*", help="arguments for `fraudstream run` (after --)")
    args = parser.parse_args()
    rows = []
    columns = (
        "first_alert_s",
        "python_and_settings_s",
        "planned_and_submitted_s",
        "submitted_to_first_alert_s",
        "jvm_peak_rss_mb",
        "python_peak_rss_mb",
    )
    print(" | ".join(("run", *columns)))
    for i in range(args.runs):
        row = one_run(args.extra, args.watch, args.timeout)
        rows.append(row)
        print(" | ".join([str(i + 1), *(str(row[c]) for c in columns)]), flush=True)
    medians = {c: statistics.median(v) for c in columns if (v := [r[c] for r in rows if r[c] is not None])}
    print(" | ".join(["median", *(str(round(medians.get(c, 0), 2)) for c in columns)]))
    if args.out:
        args.out.write_text(json.dumps({"runs": rows, "median": medians, "args": args.extra}, indent=2))


if __name__ == "__main__":
    main()
