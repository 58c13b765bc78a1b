package io.fraudstream.flink;

import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/**
 * LATEST_BEFORE(value, event_time, limit) OVER w: the distinct values in the window that occur
 * strictly before the current row's time, each with the newest such time. The geo rule's window
 * is open at its upper end (orders at the same instant are not "before"), which an OVER frame,
 * always closed at CURRENT ROW, cannot say by itself. The current row's time is the newest in
 * the accumulator: an OVER window accumulates rows up to the current time only.
 *
 * <p>The result is bounded: {@code n} counts those values, {@code m} holds the {@code limit + 1}
 * newest of them, plus those among them that also occur at the current time. One value per row
 * of this instant may be that row's own city: without it, the newest {@code limit} others of any
 * row are in {@code m}, and its count is {@code n} less one if its city is in {@code m}.
 */
@FunctionHint(
        accumulator = @DataTypeHint(value = "RAW", bridgedTo = ValueTimes.class),
        output = @DataTypeHint("ROW<n BIGINT, m MAP<STRING, BIGINT>>"))
public class OthersBefore extends WindowValuesFunction {
    @Override
    public Row getValue(ValueTimes acc) {
        Map<String, Long> out = new HashMap<>();
        if (acc.byTime.isEmpty()) {
            return Row.of(0L, out);
        }
        long now = acc.byTime.lastKey();
        Map<String, Integer> atNow = acc.byTime.get(now);
        // Newest first, so every value whose latest time is before now follows this probe.
        ValueTimes.take(acc.newest.tailSet(new ValueTimes.Latest(now - 1, ""), true).iterator(), acc.limit + 1, out);
        long n = acc.byValue.size() - atNow.size();
        for (String value : atNow.keySet()) {
            TreeMap<Long, Integer> times = acc.byValue.get(value);
            Long before = times == null ? null : times.lowerKey(now);
            if (before != null) {
                out.put(value, before);
                n++;
            }
        }
        return Row.of(n, out);
    }
}
