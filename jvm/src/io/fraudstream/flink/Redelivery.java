package io.fraudstream.flink;

import java.util.ArrayList;
import java.util.List;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The SQL engine's input idempotence as a step of its own, keyed by user ({@link Admissions}), for
 * a job with a model, whose features come between it and the rules (without one, the rules' user
 * step does this itself).
 *
 * <p>Orders wait for the watermark to pass their event time, so copies are judged in event-time
 * order (the earlier copy is kept, whatever the arrival order) and copies of one instant in
 * arrival order. An order already behind the watermark when it arrives (possible after idleness,
 * as this runs behind a shuffle and sees the combined watermark) is a {@code late} dead letter
 * instead of being dropped.
 */
public class Redelivery extends KeyedProcessFunction<String, Row, Row> {

    private static final long serialVersionUID = 1L;
    private static final int USER_ID = 1;

    private final long horizonMs;
    private final int deadLetterMaxChars;
    private transient MapState<Long, List<Row>> pending;
    private transient Admissions admissions;

    public Redelivery(long horizonMs, int deadLetterMaxChars) {
        this.horizonMs = horizonMs;
        this.deadLetterMaxChars = deadLetterMaxChars;
    }

    /** The key: the order's user. */
    public static class UserKey implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(Row order) {
            return (String) order.getField(USER_ID);
        }
    }

    @Override
    public void open(OpenContext openContext) {
        pending = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("pending", Types.LONG, Types.LIST(OrderAdmission.orderType())));
        admissions = new Admissions(getRuntimeContext(), horizonMs, deadLetterMaxChars);
    }

    @Override
    public void processElement(Row order, Context ctx, Collector<Row> out) throws Exception {
        Row late = admissions.lateOrNull(order, ctx.timerService().currentWatermark());
        if (late != null) {
            ctx.output(OrderAdmission.DEAD_LETTERS, late);
            return;
        }
        InEventTimeOrder.hold(pending, ctx.timerService(), order);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        admissions.sawWatermark(ctx.timerService().currentWatermark());
        Long next = admissions.expire(timestamp);
        if (next != null) {
            ctx.timerService().registerEventTimeTimer(next);
        }
        List<Row> batch = pending.get(timestamp);
        if (batch == null) {
            return;
        }
        pending.remove(timestamp);
        List<Row> admitted = new ArrayList<>(batch.size());
        List<Row> duplicates = new ArrayList<>(0);
        Long forget = admissions.admit(timestamp, batch, admitted, duplicates);
        for (Row letter : duplicates) {
            ctx.output(OrderAdmission.DEAD_LETTERS, letter);
        }
        for (Row order : admitted) {
            out.collect(order);
        }
        if (forget != null) {
            ctx.timerService().registerEventTimeTimer(forget);
        }
    }
}
