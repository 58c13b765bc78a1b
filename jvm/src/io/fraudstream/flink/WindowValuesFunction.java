package io.fraudstream.flink;

import java.util.Map;

import org.apache.flink.table.functions.AggregateFunction;

/**
 * What {@link DistinctLatest} and {@link OthersBefore} share: an OVER-window aggregate of
 * (value, event_time) pairs into {@link ValueTimes}, retractable as rows leave the window.
 * Subclasses only say what the window's values mean (their {@code getValue}).
 */
public abstract class WindowValuesFunction extends AggregateFunction<Map<String, Long>, ValueTimes> {
    @Override
    public ValueTimes createAccumulator() {
        return new ValueTimes();
    }

    public void accumulate(ValueTimes acc, String value, Long time) {
        acc.add(value, time);
    }

    public void retract(ValueTimes acc, String value, Long time) {
        acc.remove(value, time);
    }

    public void resetAccumulator(ValueTimes acc) {
        acc.clear();
    }
}
