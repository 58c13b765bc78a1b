package io.fraudstream.flink;

import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The accumulator of {@link DistinctLatest} and {@link OthersBefore}: for each distinct value
 * in an OVER window, the event times at which it occurs (a multiset, so rows leaving the
 * window can be retracted); for each time, the values occurring at it; and every value by its
 * latest time, newest first. Each row costs O(log n) to add or retract, and the functions read
 * a bounded view (the newest {@code limit} values and their number) without copying the window:
 * an aggregate over a device shared by thousands of accounts stays linear in its rows.
 */
public class ValueTimes {
    public final Map<String, TreeMap<Long, Integer>> byValue = new HashMap<>();
    public final TreeMap<Long, Map<String, Integer>> byTime = new TreeMap<>();
    public final TreeSet<Latest> newest = new TreeSet<>();
    /** How many values the functions list (the SQL passes it with every row). */
    public int limit;

    /** A value and its latest time, ordered newest first, equal times in code-point order. */
    public static final class Latest implements Comparable<Latest> {
        public long time;
        public String value;

        public Latest() {}

        Latest(long time, String value) {
            this.time = time;
            this.value = value;
        }

        @Override
        public int compareTo(Latest o) {
            if (time != o.time) {
                return time > o.time ? -1 : 1;
            }
            return compareCodePoints(value, o.value);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Latest && compareTo((Latest) o) == 0;
        }

        @Override
        public int hashCode() {
            return Long.hashCode(time) * 31 + value.hashCode();
        }
    }

    /** Python's string order (code points), not Java's (UTF-16 units): both sides pick the same values. */
    public static int compareCodePoints(String a, String b) {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i);
            int cb = b.codePointAt(j);
            if (ca != cb) {
                return Integer.compare(ca, cb);
            }
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Boolean.compare(i < a.length(), j < b.length());
    }

    void add(String value, long time) {
        TreeMap<Long, Integer> times = byValue.get(value);
        if (times == null) {
            times = new TreeMap<>();
            byValue.put(value, times);
        } else if (times.lastKey() < time) {
            newest.remove(new Latest(times.lastKey(), value));
        }
        if (times.isEmpty() || times.lastKey() < time) {
            newest.add(new Latest(time, value));
        }
        times.merge(time, 1, Integer::sum);
        byTime.computeIfAbsent(time, t -> new HashMap<>()).merge(value, 1, Integer::sum);
    }

    void remove(String value, long time) {
        TreeMap<Long, Integer> times = byValue.get(value);
        if (times == null || !times.containsKey(time)) {
            return;
        }
        long latest = times.lastKey();
        decrement(times, time);
        if (times.isEmpty()) {
            byValue.remove(value);
            newest.remove(new Latest(latest, value));
        } else if (times.lastKey() != latest) {
            newest.remove(new Latest(latest, value));
            newest.add(new Latest(times.lastKey(), value));
        }
        Map<String, Integer> values = byTime.get(time);
        if (values != null && decrement(values, value) && values.isEmpty()) {
            byTime.remove(time);
        }
    }

    private static <K> boolean decrement(Map<K, Integer> counts, K key) {
        Integer n = counts.get(key);
        if (n == null) {
            return false;
        }
        if (n == 1) {
            counts.remove(key);
        } else {
            counts.put(key, n - 1);
        }
        return true;
    }

    /** The first {@code n} values of {@code from} on (newest first) with their latest times, into {@code out}. */
    static void take(Iterator<Latest> from, int n, Map<String, Long> out) {
        for (int i = 0; i < n && from.hasNext(); i++) {
            Latest l = from.next();
            out.put(l.value, l.time);
        }
    }

    void clear() {
        byValue.clear();
        byTime.clear();
        newest.clear();
    }
}
