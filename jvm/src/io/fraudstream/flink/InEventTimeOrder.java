package io.fraudstream.flink;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.streaming.api.TimerService;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * A keyed step that takes each key's orders in {@code Order.sort_key} order (event time,
 * transaction id, user, device; ids in code-point order, as Python compares strings), whatever
 * their arrival order: an order waits for the watermark to pass its event time, then the
 * orders of that instant are taken sorted. Event-time timers of other kinds (state expiry)
 * reach {@link #expire}, called before the orders of that instant.
 */
public abstract class InEventTimeOrder extends KeyedProcessFunction<String, Row, Row> {
    private static final long serialVersionUID = 1L;
    private static final Comparator<Row> SORT_KEY = Comparator
            .comparing((Row r) -> OrderTimestamps.eventTime(r))
            .thenComparing(r -> (String) r.getField(0), ValueTimes::compareCodePoints)
            .thenComparing(r -> (String) r.getField(1), ValueTimes::compareCodePoints)
            .thenComparing(r -> (String) r.getField(2), ValueTimes::compareCodePoints);

    private final RowTypeInfo inputType;
    protected transient MapState<Long, List<Row>> pending;

    protected InEventTimeOrder(RowTypeInfo inputType) {
        this.inputType = inputType;
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
        pending = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("pending", Types.LONG, Types.LIST(inputType)));
    }

    @Override
    public void processElement(Row order, Context ctx, Collector<Row> out) throws Exception {
        hold(pending, ctx.timerService(), order);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        List<Row> batch = pending.get(timestamp);
        expire(timestamp, batch != null, ctx);
        if (batch != null) {
            take(timestamp, release(pending, timestamp, batch), ctx, out);
        }
    }

    /** Keeps {@code order} in {@code pending} until the watermark passes its event time (one
     * timer per instant); shared with the rule steps, whose base class is another Flink one. */
    public static void hold(MapState<Long, List<Row>> pending, TimerService timers, Row order) throws Exception {
        long t = OrderTimestamps.eventTime(order);
        List<Row> waiting = pending.get(t);
        if (waiting == null) {
            waiting = new ArrayList<>(1);
            timers.registerEventTimeTimer(t);
        }
        waiting.add(order);
        pending.put(t, waiting);
    }

    /** The held orders {@code batch} of instant {@code t}, out of {@code pending}, in sort_key order. */
    public static List<Row> release(MapState<Long, List<Row>> pending, long t, List<Row> batch) throws Exception {
        pending.remove(t);
        if (batch.size() > 1) {
            batch.sort(SORT_KEY);
        }
        return batch;
    }

    /** Drop the state that is past keeping at {@code timestamp}. {@code ordersWaiting}: the timer
     * is also the instant of orders (which {@link #take} then folds in and moves the expiry timer
     * for); without, a state still kept was timed by an older spec (a resume with a longer
     * history), and the step registers its expiry under the current one, or it would never go. */
    protected abstract void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception;

    /** The orders of one instant, in sort_key order. */
    protected abstract void take(long timestamp, List<Row> orders, OnTimerContext ctx, Collector<Row> out)
            throws Exception;

    /** Move the key's expiry timer from {@code previous} (if any) to {@code next}, never deleting
     * an instant at which orders still wait (a timer is one per key and instant). */
    protected void moveTimer(OnTimerContext ctx, Long previous, long next) throws Exception {
        if (previous != null && previous != next && !pending.contains(previous)) {
            ctx.timerService().deleteEventTimeTimer(previous);
        }
        ctx.timerService().registerEventTimeTimer(next);
    }
}
