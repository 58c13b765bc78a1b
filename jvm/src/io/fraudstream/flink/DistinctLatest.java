package io.fraudstream.flink;

import java.util.HashMap;
import java.util.Map;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/**
 * DISTINCT_LATEST(value, event_time, limit) OVER w: the number of distinct values in the window
 * ({@code n}) and the {@code limit} of them with the newest latest times, each with that time
 * ({@code m}; equal times in code-point order). Device sharing uses it for the distinct users of
 * a device: their number decides, the newest of them go into the alert. O(limit) per row.
 */
@FunctionHint(
        accumulator = @DataTypeHint(value = "RAW", bridgedTo = ValueTimes.class),
        output = @DataTypeHint("ROW<n BIGINT, m MAP<STRING, BIGINT>>"))
public class DistinctLatest extends WindowValuesFunction {
    @Override
    public Row getValue(ValueTimes acc) {
        Map<String, Long> out = new HashMap<>();
        ValueTimes.take(acc.newest.iterator(), acc.limit, out);
        return Row.of((long) acc.byValue.size(), out);
    }
}
