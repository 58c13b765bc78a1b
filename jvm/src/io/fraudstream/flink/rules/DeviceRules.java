package io.fraudstream.flink.rules;

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

/**
 * Device sharing, keyed by device, under the version in force at each instant
 * ({@code DeviceSharingDetector.evaluate}): the distinct users of the device in (t - w, t], this
 * instant's included; more than the threshold makes a candidate of every order of the instant, with
 * the number ({@code n}) and the newest {@code listMax} users and their latest times ({@code m}).
 * Each user's latest time is kept for the rule's maximum window (rules.device_sharing_max_window_ms),
 * not the version's, so a later version can widen the window up to it.
 */
public class DeviceRules extends RuleStep {
    private static final long serialVersionUID = 1L;
    static final String TYPE = "DEVICE_SHARING_FRAUD";

    private final long maxWindowMs;
    private final int listMax;
    private transient ValueState<Map<String, Long>> users;

    public DeviceRules(RowTypeInfo versionType, long maxWindowMs, int listMax) {
        super(versionType);
        this.maxWindowMs = maxWindowMs;
        this.listMax = listMax;
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
        super.open(openContext);
        users = getRuntimeContext().getState(
                new ValueStateDescriptor<>("device_users", Types.MAP(Types.STRING, Types.LONG)));
    }

    @Override
    protected void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception {
        Map<String, Long> seen = users.value();
        if (seen == null || seen.isEmpty() || !isExpiry(timestamp)) {
            return;
        }
        long last = java.util.Collections.max(seen.values());
        if (timestamp - last >= maxWindowMs) {
            users.clear();
            expired();
        } else {
            expireAt(ctx, last + maxWindowMs);
        }
    }

    @Override
    protected void take(long t, List<Row> orders, Row v, OnTimerContext ctx, Collector<Row> out) throws Exception {
        Map<String, Long> seen = users.value();
        if (seen == null) {
            seen = new HashMap<>();
        } else {
            seen.values().removeIf(ts -> ts <= t - maxWindowMs);
        }
        for (Row o : orders) {
            seen.put((String) o.getField(RuleRows.O_USER), t);
        }
        users.update(seen);
        ensureExpiry(ctx, t + maxWindowMs);
        if (!RuleRows.enabled(v, RuleRows.DEVICE_SHARING)) {
            return;
        }
        long after = t - RuleRows.windowMs(v, RuleRows.DEVICE_SHARING);
        long n = RuleStep.countAfter(seen, after);
        if (n <= (long) RuleRows.threshold(v, RuleRows.DEVICE_SHARING)) {
            return;
        }
        Map<String, Long> recent = RuleStep.newest(seen, after, listMax);
        for (Row o : orders) {
            out.collect(RuleRows.candidate(TYPE, (String) o.getField(RuleRows.O_DEVICE), o, n, recent, v,
                    RuleRows.DEVICE_SHARING, 0L));
        }
    }
}
