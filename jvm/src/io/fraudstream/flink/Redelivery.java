package io.fraudstream.flink;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.metrics.Counter;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The SQL engine's input idempotence, keyed by user: the first copy of each order id is
 * admitted, a later copy within {@code horizonMs} of it becomes a {@code duplicate} dead letter,
 * the same rule as the Python {@code fraudstream.events.redelivery} (see docs/event-contract.md).
 *
 * <p>Orders wait for the watermark to pass their event time, so copies are judged in event-time
 * order (the earlier copy is kept, whatever the arrival order) and copies of one instant in
 * arrival order. An id is forgotten {@code horizonMs} after its admitted copy, so state stays
 * bounded. An order already behind the watermark when it arrives (possible after idleness, as
 * this runs behind a shuffle and sees the combined watermark) is a {@code late} dead letter
 * instead of being dropped by the OVER windows.
 *
 * <p>Metrics ({@link JobMetrics}): {@code orders_valid}, the orders that go on to the rules;
 * {@code dead_letters} by reason ({@code duplicate}, {@code late}); and {@code event_time_lag_ms},
 * the wall clock minus the newest watermark this subtask has seen (NaN before the first).
 */
public class Redelivery extends KeyedProcessFunction<String, Row, Row> {

    private static final long serialVersionUID = 1L;
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int TRANSACTION_ID = 0;
    private static final int USER_ID = 1;
    /** The fields two copies are compared on, as in Python's {@code COMPARED}. */
    private static final String[] COMPARED = {
        "device_id", "restaurant_id", "amount", "city", "payment_method", "event_time"
    };
    private static final int[] COMPARED_AT = {2, 3, 4, 5, 6, OrderTimestamps.EVENT_TIME};

    private final long horizonMs;
    private final int deadLetterMaxChars;
    private transient MapState<Long, List<Row>> pending;
    private transient MapState<String, Row> admitted;
    private transient MapState<Long, List<String>> admittedAt;
    private transient JobMetrics metrics;
    private transient Counter valid;
    private transient volatile long watermarkSeen;

    public Redelivery(long horizonMs, int deadLetterMaxChars) {
        this.horizonMs = Math.max(horizonMs, 1); // two copies at one instant are always one order
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
        admitted = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("admitted", Types.STRING, OrderAdmission.orderType()));
        admittedAt = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("admitted_at", Types.LONG, Types.LIST(Types.STRING)));
        metrics = new JobMetrics(getRuntimeContext().getMetricGroup());
        valid = metrics.counter("orders_valid");
        watermarkSeen = Long.MIN_VALUE;
        metrics.gauge("event_time_lag_ms", () -> {
            long w = watermarkSeen;
            return w == Long.MIN_VALUE ? Double.NaN : (double) (System.currentTimeMillis() - w);
        });
    }

    @Override
    public void processElement(Row order, Context ctx, Collector<Row> out) throws Exception {
        long t = OrderTimestamps.eventTime(order);
        long watermark = ctx.timerService().currentWatermark();
        watermarkSeen = watermark;
        if (t <= watermark) {
            metrics.deadLetter("late");
            ctx.output(OrderAdmission.DEAD_LETTERS,
                    deadLetter("late", "event_time " + t + " is behind the watermark " + watermark, order));
            return;
        }
        List<Row> waiting = pending.get(t);
        if (waiting == null) {
            waiting = new ArrayList<>();
            ctx.timerService().registerEventTimeTimer(t);
        }
        waiting.add(order);
        pending.put(t, waiting);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        watermarkSeen = ctx.timerService().currentWatermark();
        // First forget the ids admitted exactly one horizon ago: (t - horizon, t] is half-open.
        long expired = timestamp - horizonMs;
        List<String> ids = admittedAt.get(expired);
        if (ids != null) {
            for (String id : ids) {
                Row kept = admitted.get(id);
                if (kept != null && OrderTimestamps.eventTime(kept) == expired) {
                    admitted.remove(id);
                }
            }
            admittedAt.remove(expired);
        }
        List<Row> batch = pending.get(timestamp);
        if (batch == null) {
            return;
        }
        pending.remove(timestamp);
        List<String> fresh = new ArrayList<>();
        for (Row order : batch) {
            String id = (String) order.getField(TRANSACTION_ID);
            Row kept = admitted.get(id);
            if (kept != null) {
                metrics.deadLetter("duplicate");
                ctx.output(OrderAdmission.DEAD_LETTERS, deadLetter("duplicate", detail(id, kept, order), order));
                continue;
            }
            Row remembered = Row.copy(order);
            remembered.setField(OrderAdmission.RAW, null); // only the compared fields matter
            admitted.put(id, remembered);
            fresh.add(id);
            valid.inc();
            out.collect(order);
        }
        if (!fresh.isEmpty()) {
            admittedAt.put(timestamp, fresh);
            ctx.timerService().registerEventTimeTimer(timestamp + horizonMs);
        }
    }

    /** What a duplicate dead letter says: which copy was kept and which fields differ. */
    static String detail(String id, Row kept, Row copy) {
        List<String> differ = new ArrayList<>();
        for (int i = 0; i < COMPARED.length; i++) {
            Object a = kept.getField(COMPARED_AT[i]);
            Object b = copy.getField(COMPARED_AT[i]);
            boolean same = a instanceof Double x && b instanceof Double y ? x.doubleValue() == y.doubleValue()
                    : Objects.equals(a, b);
            if (!same) {
                differ.add(COMPARED[i]);
            }
        }
        String what = differ.isEmpty() ? "is identical" : "differs in " + String.join(", ", differ);
        return "order " + id + " was already admitted with event_time " + OrderTimestamps.eventTime(kept)
                + "; this copy " + what;
    }

    private Row deadLetter(String reason, String detail, Row order) throws JsonProcessingException {
        Object received = order.getField(OrderAdmission.RAW);
        String raw = OrderParser.truncate(
                received != null ? (String) received : JSON.writeValueAsString(asMap(order)), deadLetterMaxChars);
        return Row.of(reason, detail, raw, System.currentTimeMillis(), OrderTimestamps.eventTime(order));
    }

    /** The admitted order by field name (behavior only when set), for when the record as received was not kept. */
    static Map<String, Object> asMap(Row order) {
        Map<String, Object> fields = new LinkedHashMap<>();
        String[] names = OrderAdmission.orderType().getFieldNames();
        for (int i = 0; i < names.length; i++) {
            Object value = order.getField(i);
            if (i == OrderAdmission.RAW || i == OrderAdmission.APPENDED_AT) {
                continue;
            }
            if (value != null || !"behavior".equals(names[i])) {
                fields.put(names[i], value);
            }
        }
        return fields;
    }
}
