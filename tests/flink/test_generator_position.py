"""The generator source after a restart within a run (no Flink needed: plain objects)."""

from __future__ import annotations

from fraudstream.config import GeneratorSettings
from fraudstream.flink.sources import GenerateOrders


def _started(cfg: GeneratorSettings) -> GenerateOrders:
    fn = GenerateOrders(cfg)
    fn.open(None)
    return fn


def test_a_restarted_generator_continues_at_the_restored_sequence_number():
    """The sequence source's position is checkpointed; the generator is made anew in open().
    Restored at number 6, the stream must go on with order 6: not order 0 again (which
    repeats the first orders and, with --count, never makes the last ones)."""
    cfg = GeneratorSettings(seed=7, rate=0, count=10)
    first = _started(cfg)
    uninterrupted = [first.map(i) for i in range(10)]
    restarted = _started(cfg)
    assert [restarted.map(i) for i in range(6, 10)] == uninterrupted[6:]
    # and a restore to an earlier position (a failure after a later checkpoint was aborted)
    assert restarted.map(2) == uninterrupted[2]
    assert restarted.map(3) == uninterrupted[3]
