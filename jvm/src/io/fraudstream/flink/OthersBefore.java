package io.fraudstream.flink;

import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;

/**
 * LATEST_BEFORE(value, event_time) OVER w: every distinct value in the window that occurs
 * strictly before the current row's time, with the newest such time. The geo rule's window
 * is open at its upper end (orders at the same instant are not "before"), which an OVER
 * frame, always closed at CURRENT ROW, cannot say by itself. The current row's time is the
 * newest in the accumulator: an OVER window accumulates rows up to the current time only.
 */
@FunctionHint(
        accumulator = @DataTypeHint(value = "RAW", bridgedTo = ValueTimes.class),
        output = @DataTypeHint("MAP<STRING, BIGINT>"))
public class OthersBefore extends WindowValuesFunction {
    @Override
    public Map<String, Long> getValue(ValueTimes acc) {
        Map<String, Long> out = new HashMap<>();
        if (acc.all.isEmpty()) {
            return out;
        }
        long now = acc.all.lastKey();
        for (Map.Entry<String, TreeMap<Long, Integer>> e : acc.byValue.entrySet()) {
            Long before = e.getValue().lowerKey(now);
            if (before != null) {
                out.put(e.getKey(), before);
            }
        }
        return out;
    }
}
