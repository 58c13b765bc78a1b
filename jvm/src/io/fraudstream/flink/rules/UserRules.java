package io.fraudstream.flink.rules;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import io.fraudstream.flink.ScoredRows;

/**
 * The user's rules, keyed by user, under the version in force at each instant: velocity (the
 * user's orders in (t - w, t], this instant's included, more than the threshold), high value (an
 * amount above the threshold), geo anomaly (the user's cities in (t - w, t), strictly before this
 * instant: {@code n} of them, {@code m} the newest {@code listMax + 1} and those of this instant's
 * cities among them, as {@code GeoAnomalyDetector.evaluate} reads them) and, when a model scores
 * the orders, ACCOUNT_TAKEOVER (risk at or above the version's takeover_risk). Order times and
 * cities are kept for each rule's maximum window (rules.*_max_window_ms), not the version's.
 */
public class UserRules extends RuleStep {
    private static final long serialVersionUID = 1L;

    private final long velocityMaxMs;
    private final long geoMaxMs;
    private final int listMax;
    private final long takeoverCooldownMs;
    /** The user's order times, ascending (one per order: a primitive array, not boxed times). */
    private transient ValueState<long[]> times;
    private transient ValueState<Map<String, Long>> cities;

    public UserRules(RowTypeInfo versionType, long velocityMaxMs, long geoMaxMs, int listMax, long takeoverCooldownMs) {
        this(versionType, ScoredRows.scoredType(), velocityMaxMs, geoMaxMs, listMax, takeoverCooldownMs);
    }

    protected UserRules(RowTypeInfo versionType, RowTypeInfo heldType, long velocityMaxMs, long geoMaxMs,
            int listMax, long takeoverCooldownMs) {
        super(versionType, heldType);
        this.velocityMaxMs = velocityMaxMs;
        this.geoMaxMs = geoMaxMs;
        this.listMax = listMax;
        this.takeoverCooldownMs = takeoverCooldownMs;
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
        super.open(openContext);
        times = getRuntimeContext().getState(new ValueStateDescriptor<>(
                "order_times", PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
        cities = getRuntimeContext().getState(
                new ValueStateDescriptor<>("city_times", Types.MAP(Types.STRING, Types.LONG)));
    }

    private long last() throws Exception {
        long[] ts = times.value();
        return ts == null || ts.length == 0 ? Long.MIN_VALUE : ts[ts.length - 1];
    }

    private long keep() {
        return Math.max(velocityMaxMs, geoMaxMs);
    }

    @Override
    protected void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception {
        long last = last();
        if (last == Long.MIN_VALUE || !isExpiry(timestamp)) {
            return;
        }
        if (timestamp - last >= keep()) {
            times.clear();
            cities.clear();
            expired();
        } else {
            expireAt(ctx, last + keep());
        }
    }

    @Override
    protected void take(long t, List<Row> orders, Row v, OnTimerContext ctx, Collector<Row> out) throws Exception {
        String user = (String) orders.get(0).getField(RuleRows.O_USER);

        // velocity: every order time (each user's orders come in time order), kept for its maximum
        long[] old = times.value();
        int kept = old == null ? 0 : old.length;
        int drop = 0;
        while (drop < kept && old[drop] <= t - velocityMaxMs) {
            drop++;
        }
        long[] ts = new long[kept - drop + orders.size()];
        if (old != null) {
            System.arraycopy(old, drop, ts, 0, kept - drop);
        }
        Arrays.fill(ts, kept - drop, ts.length, t);
        times.update(ts);
        if (RuleRows.enabled(v, RuleRows.VELOCITY)) {
            long after = t - RuleRows.windowMs(v, RuleRows.VELOCITY);
            int lo = 0;
            int hi = ts.length;
            while (lo < hi) { // the first time inside the window
                int mid = (lo + hi) >>> 1;
                if (ts[mid] > after) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            long n = ts.length - lo;
            if (n > (long) RuleRows.threshold(v, RuleRows.VELOCITY)) {
                for (Row o : orders) {
                    out.collect(RuleRows.candidate("VELOCITY_FRAUD", user, o, n, null, v, RuleRows.VELOCITY, 0L));
                }
            }
        }

        if (RuleRows.enabled(v, RuleRows.HIGH_VALUE)) {
            double limit = RuleRows.threshold(v, RuleRows.HIGH_VALUE);
            for (Row o : orders) {
                if ((Double) o.getField(RuleRows.O_AMOUNT) > limit) {
                    out.collect(RuleRows.candidate("HIGH_VALUE_FRAUD", user, o, null, null, v, RuleRows.HIGH_VALUE,
                            0L));
                }
            }
        }

        // geo: the state holds only times before t
        Map<String, Long> seen = cities.value();
        if (seen == null) {
            seen = new HashMap<>();
        } else {
            seen.values().removeIf(x -> x <= t - geoMaxMs);
        }
        if (RuleRows.enabled(v, RuleRows.GEO) && !seen.isEmpty()) {
            long after = t - RuleRows.windowMs(v, RuleRows.GEO);
            long n = RuleStep.countAfter(seen, after);
            if (n > 0) {
                Map<String, Long> m = RuleStep.newest(seen, after, listMax + 1);
                for (Row o : orders) {
                    String city = (String) o.getField(RuleRows.O_CITY);
                    Long before = seen.get(city);
                    if (before != null && before > after) {
                        m.put(city, before);
                    }
                }
                for (Row o : orders) {
                    String city = (String) o.getField(RuleRows.O_CITY);
                    Long before = seen.get(city);
                    boolean own = before != null && before > after;
                    if (n - (own ? 1 : 0) > 0) {
                        out.collect(RuleRows.candidate("GEO_ANOMALY_FRAUD", user, o, n, m, v, RuleRows.GEO, 0L));
                    }
                }
            }
        }
        for (Row o : orders) {
            seen.put((String) o.getField(RuleRows.O_CITY), t);
        }
        cities.update(seen);

        double takeover = (Double) v.getField(RuleRows.TAKEOVER_RISK);
        for (Row o : orders) {
            if (o.getField(RuleRows.O_RISK) instanceof Double r && r >= takeover) {
                out.collect(RuleRows.candidate("ACCOUNT_TAKEOVER", user, o, null, null, v, -1, takeoverCooldownMs));
            }
        }
        ensureExpiry(ctx, t + keep());
    }
}
