"""A rule step's event time is the lesser of its orders' and the Stamper's watermarks, idle or not.

Flink's own keyed broadcast operator leaves an idle input out of that minimum. After all
partitions had been idle, the Stamper's path (no records, only the orders' watermark) could
bring the new watermark first and make the orders still on their way `late`: the intermittent
failure of test_an_order_behind_the_watermark_after_idleness_is_a_late_dead_letter[sql]. Here the
same interleavings go through Flink's operator test harness, deterministically, with our
operator and with Flink's, so each scenario shows the failure it guards against."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fraudstream.jars import jars_dir
from tests.flink.rule_step_harness import BOUND, HORIZON, T

pytestmark = pytest.mark.flink

JARS = [jars_dir(None) / "flink" / "fraudstream-flink.jar", *sorted((jars_dir(None) / "flink-test").glob("*.jar"))]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    if len(JARS) < 3 or not JARS[0].is_file():
        pytest.skip("the helper jar or Flink's test harness is missing: run 'make jars'")
    libs = tmp_path_factory.mktemp("harness-libs")
    for jar in JARS:
        (libs / jar.name).symlink_to(jar)
    env = {**os.environ, "FLINK_TESTING": "1", "FLINK_TEST_LIBS": str(libs / "*.jar")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.flink.rule_step_harness"],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return orjson.loads(proc.stdout.splitlines()[-1])


def test_orders_arriving_after_the_stampers_watermark_woke_up_are_on_time(results):
    ours, flinks = results["ours"]["stamper_wakes_first"], results["flink"]["stamper_wakes_first"]
    assert (ours["alerts"], ours["late"], ours["watermarks"]) == (["first"], [], [T + 60_000 - BOUND])
    assert flinks["late"] == ["first"] and flinks["alerts"] == []  # the race this operator removes


def test_the_step_waits_for_the_stampers_watermark_even_while_that_input_is_idle(results):
    ours, flinks = results["ours"]["stamper_idle_behind"], results["flink"]["stamper_idle_behind"]
    assert (ours["alerts"], ours["late"], ours["watermarks"]) == ([], [], [])
    assert flinks["alerts"] == ["first"]  # taken before a version stamped behind it could arrive


def test_a_busy_users_state_and_timers_go_once_past_keeping(results):
    """One timer per instant of orders, and one to expire the user (and forget its ids) that moves
    on only when it fires: not one per order. Copies inside the horizon are duplicates, at the
    horizon new orders, and after the user's last order nothing of it stays."""
    busy = results["ours"]["busy_user_then_quiet"]
    instants = 3
    assert busy["timers_seen"][0] == instants  # one per instant while the orders wait
    assert busy["timers_seen"][1] <= 2  # those fired; only the expiry and the forgetting wait
    assert busy["duplicates"] == ["a"]  # the copy a moment inside the horizon
    assert busy["alerts"] == ["a", "b", "c", "a"]  # the copy at the horizon + 2 s is an order again
    assert busy["watermarks"][-1] == T + 10 * HORIZON
    assert busy["left"] == {"entries": 0, "timers": 0}
