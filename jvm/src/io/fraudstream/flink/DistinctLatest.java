package io.fraudstream.flink;

import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;

/**
 * DISTINCT_LATEST(value, event_time) OVER w: every distinct value in the window with the
 * newest event time it occurs at. Device sharing uses it for the distinct users of a device
 * (their number is the map's cardinality, their names go into the alert).
 */
@FunctionHint(
        accumulator = @DataTypeHint(value = "RAW", bridgedTo = ValueTimes.class),
        output = @DataTypeHint("MAP<STRING, BIGINT>"))
public class DistinctLatest extends WindowValuesFunction {
    @Override
    public Map<String, Long> getValue(ValueTimes acc) {
        Map<String, Long> out = new HashMap<>();
        for (Map.Entry<String, TreeMap<Long, Integer>> e : acc.byValue.entrySet()) {
            out.put(e.getKey(), e.getValue().lastKey());
        }
        return out;
    }
}
