package io.fraudstream.flink;

import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * The accumulator of {@link DistinctLatest} and {@link OthersBefore}: for each distinct value
 * in an OVER window, the event times at which it occurs (a multiset, so rows leaving the
 * window can be retracted), and the multiset of all times (its newest is the current row's).
 */
public class ValueTimes {
    public final Map<String, TreeMap<Long, Integer>> byValue = new HashMap<>();
    public final TreeMap<Long, Integer> all = new TreeMap<>();

    void add(String value, long time) {
        byValue.computeIfAbsent(value, v -> new TreeMap<>()).merge(time, 1, Integer::sum);
        all.merge(time, 1, Integer::sum);
    }

    void remove(String value, long time) {
        TreeMap<Long, Integer> times = byValue.get(value);
        if (times != null && decrement(times, time) && times.isEmpty()) {
            byValue.remove(value);
        }
        decrement(all, time);
    }

    private static boolean decrement(TreeMap<Long, Integer> times, long time) {
        Integer n = times.get(time);
        if (n == null) {
            return false;
        }
        if (n == 1) {
            times.remove(time);
        } else {
            times.put(time, n - 1);
        }
        return true;
    }

    void clear() {
        byValue.clear();
        all.clear();
    }
}
