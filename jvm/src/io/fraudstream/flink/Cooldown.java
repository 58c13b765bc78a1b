package io.fraudstream.flink;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The alert cooldown of the SQL engine, over the rules' candidates keyed by (alert_type, key):
 * at most one alert per key per cooldown of event time (each candidate's own), the same rule as the Python
 * {@code AlertDeduplicator}. Candidates of one instant wait for the watermark and are then taken
 * in (event_time, transaction_id, user_id, device_id) order, so the choice between two orders at
 * the same instant never depends on arrival order. Kept in the JVM because it sees every
 * candidate; only the alerts it lets through cross into Python to get their text.
 *
 * <p>Candidate rows: alert_type, key, then the order columns (transaction_id at 2, user_id 3,
 * device_id 4, ..., event_time at 9), then the rule's facts (n at 11, m at 12), then the order's
 * {@code appended_at} (13, {@link OrderAdmission#APPENDED_AT}), its risk (14, null without a model)
 * and reasons (15), then the rule version in force at its event time (16..22,
 * {@link io.fraudstream.flink.rules.RuleRows}): each candidate's cooldown is that version's
 * (cooldown_ms, 20), and its held-back chain that version's min_risk (21).
 *
 * <p>The last alert's time is kept for the longer of its own cooldown and {@code keepMs} (the
 * longest cooldown of the settings), so a version that lengthens a cooldown within that still
 * counts from an earlier alert.
 *
 * <p>Metric ({@link JobMetrics}): {@code alert_latency_ms}, a histogram of the wall clock at an
 * alert's emission here minus its order's {@code appended_at}: from the order's Kafka timestamp
 * (or its admission, for sources without one) to the alert leaving the cooldown.
 */
public class Cooldown extends KeyedProcessFunction<String, Row, Row> {
    private static final long serialVersionUID = 1L;
    static final int TRANSACTION_ID = 2;
    static final int USER_ID = 3;
    static final int DEVICE_ID = 4;
    static final int EVENT_TIME = 9;
    static final int APPENDED_AT = 13;
    static final int RISK = 14;
    static final String TAKEOVER = "ACCOUNT_TAKEOVER";

    static final int COOLDOWN_MS = 20;
    static final int MIN_RISK = 21;

    private final long keepMs;
    private final TypeInformation<Row> rowType;
    private transient MapState<Long, List<Row>> pending;
    private transient ValueState<Long> lastEmitted;
    private transient Histogram latency;

    public Cooldown(long keepMs, TypeInformation<Row> rowType) {
        this.keepMs = keepMs;
        this.rowType = rowType;
    }

    /** The key: alert type and the user or device the alert is about; a rule alert held back
     * (its order's risk below the candidate's min_risk) has a chain of its own, "held|" first, so that it
     * never silences a delivered one (Python: {@code Alert.dedup_key}). Without a model the risk
     * is null and the key is what it always was. */
    public static class Key implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(Row candidate) {
            String key = candidate.getField(0) + "|" + candidate.getField(1);
            Object risk = candidate.getField(RISK);
            boolean held = risk instanceof Double r && r < (Double) candidate.getField(MIN_RISK)
                    && !TAKEOVER.equals(candidate.getField(0));
            return held ? "held|" + key : key;
        }
    }

    @Override
    public void open(OpenContext openContext) {
        pending = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("pending", Types.LONG, Types.LIST(rowType)));
        lastEmitted = getRuntimeContext().getState(new ValueStateDescriptor<>("last_emitted", Types.LONG));
        latency = new JobMetrics(getRuntimeContext().getMetricGroup()).histogram("alert_latency_ms");
    }

    @Override
    public void processElement(Row candidate, Context ctx, Collector<Row> out) throws Exception {
        long t = (Long) candidate.getField(EVENT_TIME);
        List<Row> waiting = pending.get(t);
        if (waiting == null) {
            waiting = new ArrayList<>();
        }
        waiting.add(candidate);
        pending.put(t, waiting);
        ctx.timerService().registerEventTimeTimer(t);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        List<Row> batch = pending.get(timestamp);
        if (batch != null) {
            pending.remove(timestamp);
            batch.sort(ORDER);
            for (Row candidate : batch) {
                long t = (Long) candidate.getField(EVENT_TIME);
                long cooldownMs = (Long) candidate.getField(COOLDOWN_MS);
                Long last = lastEmitted.value();
                if (last == null || t - last >= cooldownMs) {
                    lastEmitted.update(t);
                    ctx.timerService().registerEventTimeTimer(t + Math.max(cooldownMs, keepMs));
                    out.collect(candidate);
                    if (candidate.getArity() > APPENDED_AT && candidate.getField(APPENDED_AT) instanceof Long at) {
                        latency.update(Math.max(0, System.currentTimeMillis() - at));
                    }
                }
            }
        }
        Long last = lastEmitted.value();
        if (last != null && last + keepMs <= timestamp) {
            lastEmitted.clear();
        }
    }

    private static final Comparator<Row> ORDER = Comparator
            .comparing((Row r) -> (Long) r.getField(EVENT_TIME))
            .thenComparing(r -> (String) r.getField(TRANSACTION_ID), ValueTimes::compareCodePoints)
            .thenComparing(r -> (String) r.getField(USER_ID), ValueTimes::compareCodePoints)
            .thenComparing(r -> (String) r.getField(DEVICE_ID), ValueTimes::compareCodePoints);
}
