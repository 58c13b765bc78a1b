package io.fraudstream.flink;

import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * What {@link DistinctLatest} and {@link OthersBefore} share: an OVER-window aggregate of
 * (value, event_time) pairs into {@link ValueTimes}, retractable as rows leave the window.
 * The third argument is how many values the result lists. Subclasses only say what the
 * window's values mean (their {@code getValue}: a ROW of the number of values, {@code n}, and a
 * bounded map of the newest of them with their times, {@code m}).
 */
public abstract class WindowValuesFunction extends AggregateFunction<Row, ValueTimes> {
    @Override
    public ValueTimes createAccumulator() {
        return new ValueTimes();
    }

    public void accumulate(ValueTimes acc, String value, Long time, Integer limit) {
        acc.limit = limit;
        acc.add(value, time);
    }

    public void retract(ValueTimes acc, String value, Long time, Integer limit) {
        acc.remove(value, time);
    }

    public void resetAccumulator(ValueTimes acc) {
        acc.clear();
    }
}
