package io.fraudstream.flink;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

import org.apache.flink.api.common.functions.RuntimeContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;
import org.apache.flink.types.StringValue;

/**
 * Input idempotence for one user's orders (the key of the step that holds it), the rule of the
 * Python {@code fraudstream.events.redelivery} (docs/event-contract.md): the first copy of each
 * order id is admitted, a later copy within {@code horizonMs} of it is a {@code duplicate} dead
 * letter. The step calls {@link #expire} and then {@link #admit} when the watermark passes an
 * instant, with that instant's orders in arrival order, and registers a timer at each instant
 * either returns. An id older than the horizon counts as forgotten the moment it is looked up;
 * one timer per key forgets the old ids in a batch ({@code forget_at}), not one per instant, so
 * a busy user's orders cost no timers beyond their own instants'.
 *
 * <p>Used by {@link Redelivery} (a step of its own, before the features of a model) and by the
 * rules' user step ({@code rules.UserStep}, without a model), which does this and the user's rules
 * in one pass. Metrics ({@link JobMetrics}): {@code orders_valid}, {@code dead_letters} by reason
 * and {@code event_time_lag_ms}, the wall clock minus the newest watermark seen (NaN before).
 */
public final class Admissions {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int TRANSACTION_ID = 0;
    /** The fields two copies are compared on, as in Python's {@code COMPARED}. */
    private static final String[] COMPARED = {
        "device_id", "restaurant_id", "amount", "city", "payment_method", "event_time"
    };
    private static final int[] COMPARED_AT = {2, 3, 4, 5, 6, OrderTimestamps.EVENT_TIME};

    private final long horizonMs;
    private final int deadLetterMaxChars;
    /** id -> the admitted copy's compared fields, packed ({@link #pack}): one array per id, not a
     * row of boxed fields and strings, since every admitted id is kept for the horizon. */
    private final MapState<String, byte[]> admitted;
    /** The instant of the key's timer that forgets old ids; set whenever ids are kept. */
    private final ValueState<Long> forgetAt;
    private final JobMetrics metrics;
    private final Counter valid;
    /** The buffer {@link #pack} writes into, reused: only the packed copy is kept. */
    private final DataOutputSerializer packer = new DataOutputSerializer(64);
    private volatile long watermarkSeen = Long.MIN_VALUE;

    /** One step's admissions: its keyed state and metrics, from its runtime context at open. */
    public Admissions(RuntimeContext context, long horizonMs, int deadLetterMaxChars) {
        this.horizonMs = Math.max(horizonMs, 1); // two copies at one instant are always one order
        this.deadLetterMaxChars = deadLetterMaxChars;
        admitted = context.getMapState(new MapStateDescriptor<>(
                "admitted", Types.STRING, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        forgetAt = context.getState(new ValueStateDescriptor<>("forget_at", Types.LONG));
        metrics = new JobMetrics(context.getMetricGroup());
        valid = metrics.counter("orders_valid");
        metrics.gauge("event_time_lag_ms", () -> {
            long w = watermarkSeen;
            return w == Long.MIN_VALUE ? Double.NaN : (double) (System.currentTimeMillis() - w);
        });
    }

    /**
     * What is remembered of an admitted copy: its compared fields alone, packed in one array: the
     * event time (8 bytes, first, so {@link #keptAt} reads it in place), then the others in
     * {@link #COMPARED} order, each a tag (0 null, 1 text, 2 number) and its value. Unpacked only
     * for a duplicate's detail.
     */
    private byte[] pack(Row order) throws IOException {
        DataOutputSerializer out = packer;
        out.clear();
        out.writeLong(OrderTimestamps.eventTime(order));
        for (int i = 0; i < COMPARED_AT.length - 1; i++) {
            Object v = order.getField(COMPARED_AT[i]);
            if (v == null) {
                out.writeByte(0);
            } else if (v instanceof Double d) {
                out.writeByte(2);
                out.writeDouble(d);
            } else {
                out.writeByte(1);
                StringValue.writeString((String) v, out);
            }
        }
        return out.getCopyOfBuffer();
    }

    /** The fields {@link #pack} packed, in {@link #COMPARED} order (event_time last). */
    static Object[] unpack(byte[] kept) throws IOException {
        DataInputDeserializer in = new DataInputDeserializer(kept);
        Object[] fields = new Object[COMPARED.length];
        fields[COMPARED.length - 1] = in.readLong();
        for (int i = 0; i < COMPARED.length - 1; i++) {
            byte tag = in.readByte();
            fields[i] = tag == 0 ? null : tag == 2 ? (Object) in.readDouble() : StringValue.readString(in);
        }
        return fields;
    }

    /** The newest watermark the step has seen (for {@code event_time_lag_ms}). */
    public void sawWatermark(long watermark) {
        watermarkSeen = watermark;
    }

    /** The dead letter of an order behind the watermark on arrival, or null if it is in time. */
    public Row lateOrNull(Row order, long watermark) throws JsonProcessingException {
        watermarkSeen = watermark;
        long t = OrderTimestamps.eventTime(order);
        if (t > watermark) {
            return null;
        }
        metrics.deadLetter("late");
        return deadLetter("late", "event_time " + t + " is behind the watermark " + watermark, order);
    }

    /**
     * At the key's forgetting instant, forget the ids admitted at or before {@code timestamp -
     * horizon} ((t - horizon, t] is half-open) and return the instant of the next forgetting
     * timer (a horizon after the newest id kept), or null: no timer needed. At any other
     * instant, nothing (ids past the horizon are already ignored by {@link #admit}).
     */
    public Long expire(long timestamp) throws Exception {
        Long at = forgetAt.value();
        if (at != null ? at > timestamp : admitted.isEmpty()) {
            return null; // (ids without an instant: a savepoint of an older job, forgotten now)
        }
        long before = timestamp - horizonMs;
        long newest = Long.MIN_VALUE;
        Iterator<Map.Entry<String, byte[]>> entries = admitted.iterator();
        while (entries.hasNext()) {
            long t = keptAt(entries.next().getValue());
            if (t <= before) {
                entries.remove();
            } else {
                newest = Math.max(newest, t);
            }
        }
        if (newest == Long.MIN_VALUE) {
            admitted.clear(); // (an emptied map would stay, as an entry of its own)
            forgetAt.clear();
            return null;
        }
        forgetAt.update(newest + horizonMs);
        return newest + horizonMs;
    }

    /** The event time of a packed copy: its first 8 bytes, big-endian. */
    static long keptAt(byte[] kept) {
        long t = 0;
        for (int i = 0; i < 8; i++) {
            t = (t << 8) | (kept[i] & 0xFF);
        }
        return t;
    }

    /**
     * The orders of instant {@code timestamp} ({@code batch}, in arrival order) that are first copies
     * (no copy admitted in the horizon before); each later copy goes to {@code duplicates} as a dead
     * letter row. Returns the instant of a forgetting timer to register ({@code timestamp + horizon}),
     * or null if the key has one already or none was admitted.
     */
    public Long admit(long timestamp, List<Row> batch, List<Row> admittedOut, List<Row> duplicates)
            throws Exception {
        boolean fresh = false;
        long before = timestamp - horizonMs;
        for (Row order : batch) {
            String id = (String) order.getField(TRANSACTION_ID);
            byte[] kept = admitted.get(id);
            if (kept != null && keptAt(kept) > before) {
                metrics.deadLetter("duplicate");
                duplicates.add(deadLetter("duplicate", detail(id, kept, order), order));
                continue;
            }
            admitted.put(id, pack(order));
            fresh = true;
            valid.inc();
            admittedOut.add(order);
        }
        if (!fresh || forgetAt.value() != null) {
            return null;
        }
        forgetAt.update(timestamp + horizonMs);
        return timestamp + horizonMs;
    }

    /** What a duplicate dead letter says: which copy was kept and which fields differ. */
    static String detail(String id, byte[] packed, Row copy) throws IOException {
        Object[] kept = unpack(packed);
        List<String> differ = new ArrayList<>();
        for (int i = 0; i < COMPARED.length; i++) {
            Object a = kept[i];
            Object b = copy.getField(COMPARED_AT[i]);
            boolean same = a instanceof Double x && b instanceof Double y ? x.doubleValue() == y.doubleValue()
                    : Objects.equals(a, b);
            if (!same) {
                differ.add(COMPARED[i]);
            }
        }
        String what = differ.isEmpty() ? "is identical" : "differs in " + String.join(", ", differ);
        return "order " + id + " was already admitted with event_time " + kept[COMPARED.length - 1]
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
