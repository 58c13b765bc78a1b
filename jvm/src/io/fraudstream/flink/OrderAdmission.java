package io.fraudstream.flink;

import java.io.Serializable;
import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * Admission in the JVM: parse and validate raw records ({@link OrderParser}), reject late and
 * future orders, and emit valid orders as rows; every rejection goes to {@link #DEAD_LETTERS}.
 * The same decisions as the Python {@code AdmitFunction}.
 *
 * <p>Runs one subtask per source reader, chained to it, so it sees one reader's records in
 * that reader's order. Lateness is judged against the newest event time this subtask has
 * admitted ({@link Lateness}), kept in operator state: restored with the same parallelism,
 * each subtask gets its own value back and judges exactly as an uninterrupted run would.
 *
 * <p>Metrics ({@link JobMetrics}): {@code orders_in}, every non-blank record read, and
 * {@code dead_letters} by reason for the records turned away here.
 */
public class OrderAdmission extends ProcessFunction<byte[], Row> implements CheckpointedFunction {

    private static final long serialVersionUID = 1L;

    private static final String[] ORDER_FIELDS = {
        "transaction_id", "user_id", "device_id", "restaurant_id", "amount", "city", "payment_method",
        "event_time", "behavior", "raw", "appended_at"
    };
    /** Index of the record as received (UTF-8 text), or null when the job keeps no archive. */
    public static final int RAW = 9;
    /**
     * Index of when the record entered the pipeline (epoch ms): its Kafka timestamp (the
     * producer's CreateTime, or the broker's LogAppendTime if the topic is set so), else, for
     * sources without one (file, generator), the wall clock at admission. The end-to-end alert
     * latency ({@link Cooldown}) is measured from it.
     */
    public static final int APPENDED_AT = 10;
    private static final String[] DEAD_LETTER_FIELDS = {"reason", "detail", "raw", "seen_at", "event_time"};

    /** Rejected records: (reason, detail, raw, seen_at, event_time), see {@link #deadLetterType()}. */
    public static final OutputTag<Row> DEAD_LETTERS = new OutputTag<>("dead-letters", deadLetterType());

    private final int maxRecordBytes;
    private final int deadLetterMaxChars;
    private final long outOfOrdernessMs;
    private final long maxFutureMs;
    private final boolean keepRaw;

    private transient Lateness lateness;
    private transient ListState<Long> maxSeenState;
    private transient JobMetrics metrics;
    private transient Counter ordersIn;

    /**
     * @param maxFutureMs orders stamped more than this ahead of the wall clock are rejected
     *     as {@code future}; 0 turns the check off
     */
    public OrderAdmission(int maxRecordBytes, int deadLetterMaxChars, long outOfOrdernessMs, long maxFutureMs) {
        this(maxRecordBytes, deadLetterMaxChars, outOfOrdernessMs, maxFutureMs, false);
    }

    /**
     * @param keepRaw also emit each valid record as received (the {@link #RAW} field), for the
     *     raw-event archive and for dead letters made further on
     */
    public OrderAdmission(
            int maxRecordBytes, int deadLetterMaxChars, long outOfOrdernessMs, long maxFutureMs, boolean keepRaw) {
        if (outOfOrdernessMs < 0 || maxFutureMs < 0) {
            throw new IllegalArgumentException("out-of-orderness and max future must be >= 0");
        }
        this.maxRecordBytes = maxRecordBytes;
        this.deadLetterMaxChars = deadLetterMaxChars;
        this.outOfOrdernessMs = outOfOrdernessMs;
        this.maxFutureMs = maxFutureMs;
        this.keepRaw = keepRaw;
    }

    /** transaction_id, user_id, device_id, restaurant_id STRING, amount DOUBLE, city,
     * payment_method STRING, event_time BIGINT (epoch ms), behavior STRING (nullable),
     * raw STRING (nullable: the record as received), appended_at BIGINT (see {@link #APPENDED_AT}). */
    public static RowTypeInfo orderType() {
        return new RowTypeInfo(
                new TypeInformation<?>[] {
                    Types.STRING, Types.STRING, Types.STRING, Types.STRING, Types.DOUBLE, Types.STRING, Types.STRING,
                    Types.LONG, Types.STRING, Types.STRING, Types.LONG
                },
                ORDER_FIELDS.clone());
    }

    /** reason, detail, raw STRING, seen_at BIGINT (wall clock, ms), event_time BIGINT (nullable). */
    public static RowTypeInfo deadLetterType() {
        return new RowTypeInfo(
                new TypeInformation<?>[] {Types.STRING, Types.STRING, Types.STRING, Types.LONG, Types.LONG},
                DEAD_LETTER_FIELDS.clone());
    }

    @Override
    public void initializeState(FunctionInitializationContext context) throws Exception {
        useMetrics(new JobMetrics(new UnregisteredMetricsGroup())); // until open() gives the operator's
        lateness = new Lateness(outOfOrdernessMs, maxFutureMs);
        maxSeenState = context.getOperatorStateStore()
                .getListState(new ListStateDescriptor<>("max_seen", Types.LONG));
        Long restored = null;
        for (Long value : maxSeenState.get()) {
            // One value per subtask. Only a restore at another parallelism hands a subtask
            // several (or none): keep the oldest, which rejects no order any of them admits.
            if (value != null && (restored == null || value < restored)) {
                restored = value;
            }
        }
        lateness.restore(restored);
    }

    @Override
    public void open(OpenContext openContext) {
        useMetrics(new JobMetrics(getRuntimeContext().getMetricGroup()));
    }

    private void useMetrics(JobMetrics m) {
        metrics = m;
        ordersIn = m.counter("orders_in");
    }

    @Override
    public void snapshotState(FunctionSnapshotContext context) throws Exception {
        maxSeenState.clear();
        if (lateness.maxSeen != null) {
            maxSeenState.add(lateness.maxSeen);
        }
    }

    @Override
    public void processElement(byte[] raw, Context ctx, Collector<Row> out) {
        OrderParser.Parsed order = OrderParser.parse(raw, maxRecordBytes);
        if (order == null) {
            return; // a blank record is skipped, not an error
        }
        ordersIn.inc();
        if (!order.isValid()) {
            metrics.deadLetter(order.getReason());
            ctx.output(DEAD_LETTERS, deadLetter(order.getReason(), order.getDetail(), raw, null));
            return;
        }
        long t = order.eventTimeMs();
        Rejection rejection = lateness.admit(t, System.currentTimeMillis());
        if (rejection != null) {
            metrics.deadLetter(rejection.getReason());
            ctx.output(DEAD_LETTERS, deadLetter(rejection.getReason(), rejection.getDetail(), raw, t));
            return;
        }
        out.collect(Row.of(
                order.getTransactionId(), order.getUserId(), order.getDeviceId(), order.getRestaurantId(),
                order.amountValue(), order.getCity(), order.getPaymentMethod(), t, order.getBehavior(),
                keepRaw ? new String(raw, StandardCharsets.UTF_8) : null, appendedAt(ctx)));
    }

    /** The record's Kafka timestamp, else now (see {@link #APPENDED_AT}). */
    private static long appendedAt(Context ctx) {
        Long stamp = ctx == null ? null : ctx.timestamp();
        return stamp != null && stamp > 0 ? stamp : System.currentTimeMillis();
    }

    private Row deadLetter(String reason, String detail, byte[] raw, Long eventTime) {
        String text = OrderParser.deadLetterRaw(raw, deadLetterMaxChars);
        return Row.of(reason, detail, text, System.currentTimeMillis(), eventTime);
    }

    /** Why an order was turned away: {@code late} or {@code future}, and a sentence. */
    public static final class Rejection implements Serializable {
        private static final long serialVersionUID = 1L;
        private final String reason;
        private final String detail;

        Rejection(String reason, String detail) {
            this.reason = reason;
            this.detail = detail;
        }

        public String getReason() {
            return reason;
        }

        public String getDetail() {
            return detail;
        }
    }

    /**
     * The late/future rule over one reader's valid orders, without Flink (so it can be tested
     * on its own). An order is {@code future} when {@code maxFutureMs > 0} and its time is
     * beyond {@code now + maxFutureMs}; else {@code late} when
     * {@code t <= maxSeen - outOfOrdernessMs - 1}, the newest admitted time minus the bound:
     * the watermark Flink's bounded-out-of-orderness strategy computes, minus its periodic
     * emission delay, so lateness depends only on the input order, never on timing.
     *
     * <p>With {@code maxFutureMs > 0}, {@code maxSeen} never runs past {@code now + maxFutureMs}.
     * Admitted orders never exceed it, so only a checkpoint made under a laxer limit (or a clock
     * stepped far back) can hold a value beyond it, left by an order this limit rejects: it is
     * dropped before the order is judged, and the reader starts afresh with that order, as at the
     * start of a run (kept, it would make the honest orders after a resume late).
     */
    public static final class Lateness implements Serializable {
        private static final long serialVersionUID = 1L;
        private final long outOfOrdernessMs;
        private final long maxFutureMs;
        /** The newest event time admitted so far; null before the first. */
        Long maxSeen;

        public Lateness(long outOfOrdernessMs, long maxFutureMs) {
            if (outOfOrdernessMs < 0 || maxFutureMs < 0) {
                throw new IllegalArgumentException("out-of-orderness and max future must be >= 0");
            }
            this.outOfOrdernessMs = outOfOrdernessMs;
            this.maxFutureMs = maxFutureMs;
        }

        /** Null when the order at {@code t} is admitted (and remembered), else why it is not. */
        public Rejection admit(long t, long nowMs) {
            // t - maxFutureMs > now, not t > now + maxFutureMs: no overflow for any limit > 0.
            if (maxFutureMs > 0 && t - maxFutureMs > nowMs) {
                return new Rejection(
                        "future", "event_time " + t + " is more than " + maxFutureMs + " ms ahead of the clock");
            }
            if (maxFutureMs > 0 && maxSeen != null && maxSeen - maxFutureMs > nowMs) {
                maxSeen = null; // this order is admitted below and takes its place
            }
            if (maxSeen != null) {
                long watermark = maxSeen - outOfOrdernessMs - 1; // >= Long.MIN_VALUE: both terms >= 0
                if (t <= watermark) {
                    return new Rejection("late", "event_time " + t + " is behind the watermark " + watermark);
                }
            }
            if (maxSeen == null || t > maxSeen) {
                maxSeen = t;
            }
            return null;
        }

        public Long getMaxSeen() {
            return maxSeen;
        }

        /** Start from a checkpoint's newest time (null: none); {@link #admit} drops it if too far ahead. */
        public void restore(Long restoredMaxSeen) {
            maxSeen = restoredMaxSeen;
        }
    }
}
