package io.fraudstream.flink.rules;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
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
 * cities are kept for each rule's maximum window (rules.*_max_window_ms), not the version's, in one
 * object per user ({@link Kept}): one state to read per instant, not three, and a few arrays rather
 * than a map of boxed times.
 */
public class UserRules extends RuleStep {
    private static final long serialVersionUID = 1L;

    private final long velocityMaxMs;
    private final long geoMaxMs;
    private final int listMax;
    private final long takeoverCooldownMs;
    private transient ValueState<Kept> kept;
    /** At most this many city names are shared (a stream of ever new names stops sharing). */
    private static final int CITY_NAMES_MAX = 100_000;
    /** One instance of each city name for all users' kept state (few names, many users). */
    private transient Map<String, String> cityNames;

    /**
     * What the rules keep of one user (a Flink POJO, one state entry): the order times, ascending,
     * one per order; each city's latest order time ({@code cities[i]} at {@code cityTimes[i]}); the
     * instant of the key's expiry timer ({@link #NONE}: none).
     */
    public static class Kept {
        public static final long NONE = Long.MIN_VALUE;
        public long[] times = new long[0];
        public String[] cities = new String[0];
        public long[] cityTimes = new long[0];
        public long expiryAt = NONE;

        public Kept() {}

        int city(String name) {
            for (int i = 0; i < cities.length; i++) {
                if (cities[i].equals(name)) {
                    return i;
                }
            }
            return -1;
        }

        /** The latest time of {@code name}, or null. */
        Long cityTime(String name) {
            int i = city(name);
            return i < 0 ? null : cityTimes[i];
        }

        /** How many cities were seen after {@code after}. */
        long citiesAfter(long after) {
            long n = 0;
            for (long c : cityTimes) {
                if (c > after) {
                    n++;
                }
            }
            return n;
        }

        /** Keep only the cities seen after {@code after}. */
        void dropCitiesUpTo(long after) {
            int n = 0;
            for (int i = 0; i < cities.length; i++) {
                if (cityTimes[i] > after) {
                    n++;
                }
            }
            if (n == cities.length) {
                return;
            }
            String[] c = new String[n];
            long[] ts = new long[n];
            for (int i = 0, j = 0; i < cities.length; i++) {
                if (cityTimes[i] > after) {
                    c[j] = cities[i];
                    ts[j++] = cityTimes[i];
                }
            }
            cities = c;
            cityTimes = ts;
        }

        /** {@code name} seen at {@code t}; a new name is stored as its shared instance in {@code names}. */
        void sawCity(String name, long t, Map<String, String> names) {
            int i = city(name);
            if (i >= 0) {
                cityTimes[i] = t;
                return;
            }
            String known = names.get(name);
            if (known != null) {
                name = known;
            } else if (names.size() < UserRules.CITY_NAMES_MAX) {
                names.put(name, name);
            }
            cities = Arrays.copyOf(cities, cities.length + 1);
            cityTimes = Arrays.copyOf(cityTimes, cityTimes.length + 1);
            cities[cities.length - 1] = name;
            cityTimes[cityTimes.length - 1] = t;
        }

        /** The cities as a map, city -> latest time (for the rules' shared helpers). */
        Map<String, Long> cityMap() {
            Map<String, Long> m = new HashMap<>();
            for (int i = 0; i < cities.length; i++) {
                m.put(cities[i], cityTimes[i]);
            }
            return m;
        }
    }

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
        kept = getRuntimeContext().getState(new ValueStateDescriptor<>("user_kept", Types.POJO(Kept.class)));
        cityNames = new HashMap<>();
    }

    @Override
    protected Long expiry() throws Exception {
        Kept k = kept.value();
        return k == null || k.expiryAt == Kept.NONE ? null : k.expiryAt;
    }

    @Override
    protected void setExpiry(Long at) throws Exception {
        Kept k = kept.value();
        if (k == null) {
            if (at == null) {
                return;
            }
            k = new Kept();
        }
        k.expiryAt = at == null ? Kept.NONE : at;
        kept.update(k);
    }

    private long keep() {
        return Math.max(velocityMaxMs, geoMaxMs);
    }

    @Override
    protected void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception {
        Kept k = kept.value();
        if (k == null || k.times.length == 0 || !isExpiry(timestamp)) {
            return;
        }
        long last = k.times[k.times.length - 1];
        if (timestamp - last >= keep()) {
            kept.clear();
        } else {
            expireAt(ctx, last + keep());
        }
    }

    @Override
    protected void take(long t, List<Row> orders, Row v, OnTimerContext ctx, Collector<Row> out) throws Exception {
        String user = (String) orders.get(0).getField(RuleRows.O_USER);
        Kept k = kept.value();
        if (k == null) {
            k = new Kept();
        }

        // velocity: every order time (each user's orders come in time order), kept for its maximum
        long[] old = k.times;
        int drop = 0;
        while (drop < old.length && old[drop] <= t - velocityMaxMs) {
            drop++;
        }
        long[] ts = new long[old.length - drop + orders.size()];
        System.arraycopy(old, drop, ts, 0, old.length - drop);
        Arrays.fill(ts, old.length - drop, ts.length, t);
        k.times = ts;
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

        // geo: the kept cities hold only times before t
        k.dropCitiesUpTo(t - geoMaxMs);
        if (RuleRows.enabled(v, RuleRows.GEO) && k.cities.length > 0) {
            long after = t - RuleRows.windowMs(v, RuleRows.GEO);
            long n = k.citiesAfter(after);
            if (n > 0) {
                Map<String, Long> m = RuleStep.newest(k.cityMap(), after, listMax + 1);
                for (Row o : orders) {
                    String city = (String) o.getField(RuleRows.O_CITY);
                    Long before = k.cityTime(city);
                    if (before != null && before > after) {
                        m.put(city, before);
                    }
                }
                for (Row o : orders) {
                    Long before = k.cityTime((String) o.getField(RuleRows.O_CITY));
                    boolean own = before != null && before > after;
                    if (n - (own ? 1 : 0) > 0) {
                        out.collect(RuleRows.candidate("GEO_ANOMALY_FRAUD", user, o, n, m, v, RuleRows.GEO, 0L));
                    }
                }
            }
        }
        for (Row o : orders) {
            k.sawCity((String) o.getField(RuleRows.O_CITY), t, cityNames);
        }

        double takeover = (Double) v.getField(RuleRows.TAKEOVER_RISK);
        for (Row o : orders) {
            if (o.getField(RuleRows.O_RISK) instanceof Double r && r >= takeover) {
                out.collect(RuleRows.candidate("ACCOUNT_TAKEOVER", user, o, null, null, v, -1, takeoverCooldownMs));
            }
        }
        kept.update(k);
        ensureExpiry(ctx, t + keep());
    }
}
