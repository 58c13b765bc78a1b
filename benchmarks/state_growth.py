"""Does the job's state stay bounded? Run it over millions of orders from a million users and watch.

    .venv/bin/python benchmarks/state_growth.py                # 2,000,000 orders, 1,000,000 users
    .venv/bin/python benchmarks/state_growth.py --orders 200000 --every 10

Runs `fraudstream run` on the built-in generator (seeded, as fast as it goes, checkpoints every
`--checkpoint-ms`) and samples, every `--every` seconds, through the job's REST API and /proc:
orders processed, the size of the newest completed checkpoint (all keyed state: detector windows,
cooldowns, event-time buffers) and the resident memory of the Flink JVM and the driver. State
that is cleaned by timers levels off once the longest window (1 hour of event time) is full,
while the number of users seen keeps growing. Writes a table to stdout and JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _processed(port: int, job: str) -> int:
    """Orders that reached the keyed detectors (the admit step's output): the DataStream
    engine's per-user detector, or the SQL engine's busiest window operator."""
    vertices = _get(port, f"/jobs/{job}")["vertices"]
    by_user = [v["metrics"]["read-records"] for v in vertices if v["name"].startswith("detect-by-user_id")]
    windows = [v["metrics"]["read-records"] for v in vertices if v["name"].startswith("OverAggregate")]
    return sum(by_user) if by_user else max(windows, default=0)


def _distinct_users(orders: int, users: int, seed: int) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from fraudstream.config import GeneratorSettings
    from fraudstream.generator import generator_from_settings

    gen = generator_from_settings(GeneratorSettings(seed=seed, users=users, count=orders))
    return len({o["user_id"] for o in gen.orders(orders)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--checkpoint-ms", type=int, default=10_000)
    parser.add_argument(
        "--engine", choices=["sql", "datastream"], default="datastream", help="the README table used datastream"
    )
    parser.add_argument(
        "--jvm-heap", help="cap the Flink JVM's heap (for example 2g), so its resident memory means something"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "state_growth.json")
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="fraudstream-state-"))
    command = [
        sys.executable, "-m", "fraudstream", "--data-dir", str(data),
        "--set", f"generator.users={args.users}",
        "--set", f"checkpoint.interval_ms={args.checkpoint_ms}",
        "--set", "logging.level=WARNING",
        "run", "--count", str(args.orders), "--rate", "0", "--seed", str(args.seed), "--engine", args.engine,
    ]  # fmt: skip
    print(f"counting distinct users in the {args.orders:,} orders...", file=sys.stderr)
    distinct = _distinct_users(args.orders, args.users, args.seed)
    print(f"{distinct:,} distinct users; running the job (data in {data})", file=sys.stderr)
    started = time.monotonic()
    env = {**os.environ, "JVM_ARGS": f"-Xmx{args.jvm_heap}"} if args.jvm_heap else None
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env)
    samples = []
    try:
        job = None
        while proc.poll() is None:
            time.sleep(args.every if job else 1.0)
            info_file = data / "job.json"
            if job is None:
                if not info_file.exists():
                    continue
                info = json.loads(info_file.read_text())
                job, port = info["job_id"], info["rest_port"]
            try:
                latest = _get(port, f"/jobs/{job}/checkpoints")["latest"]["completed"]
                processed = _processed(port, job)
            except Exception:
                continue  # the job is finishing
            jvm = sum(_rss_mb(c) for c in _children(proc.pid))
            sample = {
                "seconds": round(time.monotonic() - started, 1),
                "orders_processed": processed,
                "checkpoint_id": latest["id"] if latest else None,
                "state_bytes": latest["state_size"] if latest else None,
                "jvm_rss_mb": round(jvm, 1),
                "driver_rss_mb": round(_rss_mb(proc.pid), 1),
            }
            samples.append(sample)
            print(
                f"{sample['seconds']:>7.0f}s {processed:>10,} orders  state {(sample['state_bytes'] or 0) / 1e6:8.2f} MB"
                f"  JVM {sample['jvm_rss_mb']:7.0f} MB  driver {sample['driver_rss_mb']:5.0f} MB",
                flush=True,
            )
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        proc.wait()
    result = {
        "command": " ".join(command),
        "orders": args.orders,
        "users_in_population": args.users,
        "distinct_users": distinct,
        "seconds": round(time.monotonic() - started, 1),
        "exit_code": proc.returncode,
        "jvm_heap": args.jvm_heap,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}", file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
