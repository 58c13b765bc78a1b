package io.fraudstream.flink.rules;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;

/**
 * The rows of the versioned rule steps.
 *
 * <p>A version ({@code fraudstream.rules.model.FLAT_FIELDS}, {@code RuleSet.to_row()}): version BIGINT,
 * effective_from BIGINT (-1: from the watermark; after {@link Stamper}: the event time it applies from),
 * then per rule in RULES order (velocity, device_sharing, high_value, geo) enabled BOOLEAN, threshold
 * DOUBLE (-1: none), window_ms BIGINT (-1: none), cooldown_ms BIGINT, severity STRING; then
 * model.takeover_risk DOUBLE, model.min_risk DOUBLE (24 fields).
 *
 * <p>A candidate (what {@link UserRules} and {@link DeviceRules} emit, {@code Cooldown} and the Python
 * alert text read): 0 alert_type, 1 key (user or device), 2..10 the order columns (transaction_id,
 * user_id, device_id, restaurant_id, amount, city, payment_method, event_time, behavior), 11 n BIGINT
 * (velocity: the orders in the window; device sharing: the device's users; geo: the user's cities
 * before this instant), 12 m MAP&lt;STRING, BIGINT&gt; (the newest of those users or cities with their
 * latest times), 13 appended_at, 14 risk, 15 reasons (the order's, null without a model), then the
 * version in force at the order's event time: 16 rule_version BIGINT, 17 threshold DOUBLE (-1: none),
 * 18 window_ms BIGINT (-1: none), 19 severity STRING, 20 cooldown_ms BIGINT, 21 min_risk DOUBLE,
 * 22 takeover_risk DOUBLE.
 */
public final class RuleRows {
    public static final String[] RULES = {"velocity", "device_sharing", "high_value", "geo"};
    public static final int VELOCITY = 0;
    public static final int DEVICE_SHARING = 1;
    public static final int HIGH_VALUE = 2;
    public static final int GEO = 3;
    public static final int VERSION = 0;
    public static final int EFFECTIVE_FROM = 1;
    public static final int TAKEOVER_RISK = 22;
    public static final int MIN_RISK = 23;
    public static final int FLAT_ARITY = 24;

    public static final int C_N = 11;
    public static final int C_M = 12;
    public static final int C_APPENDED_AT = 13;
    public static final int C_RISK = 14;
    public static final int C_RULE_VERSION = 16;
    public static final int C_THRESHOLD = 17;
    public static final int C_WINDOW_MS = 18;
    public static final int C_SEVERITY = 19;
    public static final int C_COOLDOWN_MS = 20;
    public static final int C_MIN_RISK = 21;
    public static final int C_TAKEOVER_RISK = 22;
    public static final int CANDIDATE_ARITY = 23;

    // In a scored order row (ScoredRows.scoredType()).
    static final int O_USER = 1;
    static final int O_DEVICE = 2;
    static final int O_AMOUNT = 4;
    static final int O_CITY = 5;
    static final int O_EVENT_TIME = 7;
    static final int O_APPENDED_AT = 10;
    static final int O_RISK = 11;
    static final int O_REASONS = 12;

    private RuleRows() {
    }

    /** The flat version row's type; {@code names}: FLAT_FIELDS (as Python names them). */
    public static RowTypeInfo flatType(String[] names) {
        TypeInformation<?>[] types = new TypeInformation<?>[FLAT_ARITY];
        types[VERSION] = Types.LONG;
        types[EFFECTIVE_FROM] = Types.LONG;
        for (int r = 0; r < RULES.length; r++) {
            int b = 2 + 5 * r;
            types[b] = Types.BOOLEAN;
            types[b + 1] = Types.DOUBLE;
            types[b + 2] = Types.LONG;
            types[b + 3] = Types.LONG;
            types[b + 4] = Types.STRING;
        }
        types[TAKEOVER_RISK] = Types.DOUBLE;
        types[MIN_RISK] = Types.DOUBLE;
        return new RowTypeInfo(types, names.clone());
    }

    /** The candidate row's type (see the class comment). */
    public static RowTypeInfo candidateType() {
        return new RowTypeInfo(
                new TypeInformation<?>[] {
                    Types.STRING, Types.STRING, Types.STRING, Types.STRING, Types.STRING, Types.STRING, Types.DOUBLE,
                    Types.STRING, Types.STRING, Types.LONG, Types.STRING, Types.LONG, Types.MAP(Types.STRING, Types.LONG),
                    Types.LONG, Types.DOUBLE, Types.STRING, Types.LONG, Types.DOUBLE, Types.LONG, Types.STRING,
                    Types.LONG, Types.DOUBLE, Types.DOUBLE
                },
                new String[] {
                    "alert_type", "k", "transaction_id", "user_id", "device_id", "restaurant_id", "amount", "city",
                    "payment_method", "event_time", "behavior", "n", "m", "appended_at", "risk", "reasons",
                    "rule_version", "threshold", "window_ms", "severity", "cooldown_ms", "min_risk", "takeover_risk"
                });
    }

    /** A flat version row from loosely typed values (as py4j passes Python ints and floats), each
     * field converted to the type {@link #flatType} gives it. */
    public static Row fromValues(Object[] values) {
        if (values.length != FLAT_ARITY) {
            throw new IllegalArgumentException("a rules version row has " + FLAT_ARITY + " fields, not " + values.length);
        }
        Row r = Row.withPositions(FLAT_ARITY);
        r.setField(VERSION, ((Number) values[VERSION]).longValue());
        r.setField(EFFECTIVE_FROM, ((Number) values[EFFECTIVE_FROM]).longValue());
        for (int rule = 0; rule < RULES.length; rule++) {
            int b = 2 + 5 * rule;
            r.setField(b, Boolean.TRUE.equals(values[b]));
            r.setField(b + 1, ((Number) values[b + 1]).doubleValue());
            r.setField(b + 2, ((Number) values[b + 2]).longValue());
            r.setField(b + 3, ((Number) values[b + 3]).longValue());
            r.setField(b + 4, values[b + 4] == null ? null : values[b + 4].toString());
        }
        r.setField(TAKEOVER_RISK, ((Number) values[TAKEOVER_RISK]).doubleValue());
        r.setField(MIN_RISK, ((Number) values[MIN_RISK]).doubleValue());
        return r;
    }

    /** Lets no record through: the orders' stream as the {@link Stamper}'s watermark input. */
    public static class NoRecords implements org.apache.flink.api.common.functions.FilterFunction<Row> {
        private static final long serialVersionUID = 1L;

        @Override
        public boolean filter(Row value) {
            return false;
        }
    }

    static boolean enabled(Row v, int rule) {
        return Boolean.TRUE.equals(v.getField(2 + 5 * rule));
    }

    static double threshold(Row v, int rule) {
        return (Double) v.getField(3 + 5 * rule);
    }

    static long windowMs(Row v, int rule) {
        return (Long) v.getField(4 + 5 * rule);
    }

    static long cooldownMs(Row v, int rule) {
        return (Long) v.getField(5 + 5 * rule);
    }

    static String severity(Row v, int rule) {
        return (String) v.getField(6 + 5 * rule);
    }

    static long version(Row v) {
        return (Long) v.getField(VERSION);
    }

    static long effectiveFrom(Row v) {
        return (Long) v.getField(EFFECTIVE_FROM);
    }

    /** The versions by the event time they apply from (ties: the higher version last), for lookups. */
    static List<Row> byEffective(Iterable<Map.Entry<Long, Row>> versions) {
        List<Row> out = new ArrayList<>();
        for (Map.Entry<Long, Row> e : versions) {
            out.add(e.getValue());
        }
        out.sort(Comparator.comparingLong(RuleRows::effectiveFrom).thenComparingLong(RuleRows::version));
        return out;
    }

    /** The version in force at {@code t} in {@code sorted} (see {@link #byEffective}), or null. */
    static Row inForce(List<Row> sorted, long t) {
        int lo = 0;
        int hi = sorted.size() - 1;
        Row found = null;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (effectiveFrom(sorted.get(mid)) <= t) {
                found = sorted.get(mid);
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return found;
    }

    /** A candidate: the order's columns, the rule's facts and the version's values for this rule
     * ({@code rule} -1: ACCOUNT_TAKEOVER, whose threshold is the version's takeover_risk and whose
     * cooldown is not a rule's, detectors.dedup_cooldown_ms). */
    static Row candidate(String alertType, String key, Row order, Long n, Map<String, Long> m, Row v, int rule,
            long takeoverCooldownMs) {
        Row c = Row.withPositions(CANDIDATE_ARITY);
        c.setField(0, alertType);
        c.setField(1, key);
        for (int i = 0; i < 9; i++) {
            c.setField(2 + i, order.getField(i));
        }
        c.setField(C_N, n);
        c.setField(C_M, m);
        c.setField(C_APPENDED_AT, order.getField(O_APPENDED_AT));
        c.setField(C_RISK, order.getField(O_RISK));
        c.setField(15, order.getField(O_REASONS));
        c.setField(C_RULE_VERSION, version(v));
        c.setField(C_THRESHOLD, rule < 0 ? (Double) v.getField(TAKEOVER_RISK) : threshold(v, rule));
        c.setField(C_WINDOW_MS, rule < 0 ? -1L : windowMs(v, rule));
        c.setField(C_SEVERITY, rule < 0 ? null : severity(v, rule));
        c.setField(C_COOLDOWN_MS, rule < 0 ? takeoverCooldownMs : cooldownMs(v, rule));
        c.setField(C_MIN_RISK, v.getField(MIN_RISK));
        c.setField(C_TAKEOVER_RISK, v.getField(TAKEOVER_RISK));
        return c;
    }
}
