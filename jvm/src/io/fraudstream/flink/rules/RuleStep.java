package io.fraudstream.flink.rules;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.BroadcastState;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.streaming.api.functions.co.KeyedBroadcastProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import io.fraudstream.flink.InEventTimeOrder;
import io.fraudstream.flink.ScoredRows;
import io.fraudstream.flink.ValueTimes;

/**
 * A keyed rule step fed by the stamped versions (broadcast, {@link Stamper}): each key's orders wait
 * in keyed state for the watermark (orders and versions combined), then the orders of one instant are
 * taken together in {@code Order.sort_key} order with the version in force at that instant (the
 * highest stamped effective_from at or before it; ties: the higher version), as
 * {@code InEventTimeOrder} does for the feature steps. Other event-time timers (state expiry)
 * reach {@link #expire}, before the orders of that instant.
 */
public abstract class RuleStep extends KeyedBroadcastProcessFunction<String, Row, Row, Row> {
    private static final long serialVersionUID = 1L;

    private final RowTypeInfo versionType;
    private final RowTypeInfo heldType;
    protected transient MapState<Long, List<Row>> pending;
    private transient ValueState<Long> expiryAt;
    private transient List<Row> sorted;

    protected RuleStep(RowTypeInfo versionType) {
        this(versionType, ScoredRows.scoredType());
    }

    /** {@code heldType}: the rows that wait for the watermark (what {@link #admit} is given). */
    protected RuleStep(RowTypeInfo versionType, RowTypeInfo heldType) {
        this.versionType = versionType;
        this.heldType = heldType;
    }

    /** The broadcast state: version -> stamped version row. */
    public static MapStateDescriptor<Long, Row> versions(RowTypeInfo versionType) {
        return new MapStateDescriptor<>("rule_versions", Types.LONG, versionType);
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
        pending = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("pending", Types.LONG, Types.LIST(heldType)));
        expiryAt = getRuntimeContext().getState(new ValueStateDescriptor<>("expiry_at", Types.LONG));
    }

    @Override
    public void processBroadcastElement(Row version, Context ctx, Collector<Row> out) throws Exception {
        BroadcastState<Long, Row> state = ctx.getBroadcastState(versions(versionType));
        state.put(RuleRows.version(version), version);
        sorted = null;
    }

    @Override
    public void processElement(Row order, ReadOnlyContext ctx, Collector<Row> out) throws Exception {
        InEventTimeOrder.hold(pending, ctx.timerService(), order);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        List<Row> batch = pending.get(timestamp);
        expire(timestamp, batch != null, ctx);
        if (batch == null) {
            return;
        }
        batch = admit(timestamp, batch, ctx);
        InEventTimeOrder.release(pending, timestamp, batch);
        if (batch.isEmpty()) {
            return;
        }
        if (sorted == null) {
            sorted = RuleRows.byEffective(ctx.getBroadcastState(versions(versionType)).immutableEntries());
        }
        Row v = RuleRows.inForce(sorted, timestamp);
        if (v == null) {
            throw new IllegalStateException("no rules version in force at event time " + timestamp);
        }
        take(timestamp, batch, v, ctx, out);
    }

    /** The orders of instant {@code timestamp} that the rules take, from those that waited for it
     * ({@code batch}, in arrival order): all of them, unless the step also checks its input. */
    protected List<Row> admit(long timestamp, List<Row> batch, OnTimerContext ctx) throws Exception {
        return batch;
    }

    /** Drop the state past keeping at {@code timestamp} (see {@code InEventTimeOrder.expire}). */
    protected abstract void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception;

    /** The orders of one instant, in sort_key order, under version {@code v}. */
    protected abstract void take(long timestamp, List<Row> orders, Row v, OnTimerContext ctx, Collector<Row> out)
            throws Exception;

    /** The instant of the key's expiry timer, or null if it has none (a step that keeps its state
     * in one object keeps this there too, overriding this and {@link #setExpiry}). */
    protected Long expiry() throws Exception {
        return expiryAt.value();
    }

    /** Record the key's expiry instant ({@code null}: none). */
    protected void setExpiry(Long at) throws Exception {
        if (at == null) {
            expiryAt.clear();
        } else {
            expiryAt.update(at);
        }
    }

    /** Whether {@code timestamp} is the key's expiry instant (state kept without one, from a
     * savepoint of an older job, is expired as if it were). */
    protected boolean isExpiry(long timestamp) throws Exception {
        Long at = expiry();
        return at == null || at <= timestamp;
    }

    /** The key's expiry timer at {@code next}: one timer per key, moved on only when it fires
     * (the state's times then say whether it is past keeping), not at every order. */
    protected void expireAt(OnTimerContext ctx, long next) throws Exception {
        ctx.timerService().registerEventTimeTimer(next);
        setExpiry(next);
    }

    /** An expiry timer at {@code next} unless the key has one. */
    protected void ensureExpiry(OnTimerContext ctx, long next) throws Exception {
        if (expiry() == null) {
            expireAt(ctx, next);
        }
    }

    /** The key's state is gone: no expiry timer. */
    protected void expired() throws Exception {
        setExpiry(null);
    }

    /** The {@code limit} entries of {@code latest} (name -> time) with time above {@code after} and the
     * newest times, equal times in code-point order ({@code detectors.base.newest}'s choice). */
    static Map<String, Long> newest(Map<String, Long> latest, long after, int limit) {
        List<Map.Entry<String, Long>> in = new ArrayList<>();
        for (Map.Entry<String, Long> e : latest.entrySet()) {
            if (e.getValue() > after) {
                in.add(e);
            }
        }
        if (in.size() > limit) {
            in.sort((a, b) -> !a.getValue().equals(b.getValue()) ? Long.compare(b.getValue(), a.getValue())
                    : ValueTimes.compareCodePoints(a.getKey(), b.getKey()));
            in = in.subList(0, limit);
        }
        Map<String, Long> out = new HashMap<>();
        for (Map.Entry<String, Long> e : in) {
            out.put(e.getKey(), e.getValue());
        }
        return out;
    }

    static long countAfter(Map<String, Long> latest, long after) {
        long n = 0;
        for (long t : latest.values()) {
            if (t > after) {
                n++;
            }
        }
        return n;
    }
}
