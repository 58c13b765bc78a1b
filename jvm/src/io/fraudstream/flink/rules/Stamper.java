package io.fraudstream.flink.rules;

import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.TwoInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.fraudstream.flink.JobMetrics;
import io.fraudstream.flink.OrderAdmission;

/**
 * Stamps each checked rule version with the event time it applies from, at parallelism 1.
 *
 * <p>Input 1: the admitted orders filtered to no records, for their watermark (and idle status),
 * which becomes this step's own. Input 2: the versions ({@link RuleRows#flatType}); their
 * watermark is ignored. A version applies from {@code max(requested effective_from, W + 1)}, W
 * the orders' watermark when it arrives (a request in the past is moved and logged): every
 * version stamped later applies after this step's watermark so far, so a rule step that takes an
 * instant only when its watermark (orders and this step) has passed it has every version for it.
 * A version not above the highest accepted is a "stale_rules" dead letter ({@link #REJECTED});
 * that number is operator state. A fresh start (not restored) first emits {@code initial}
 * stamped {@link Long#MIN_VALUE}, before any watermark.
 */
public class Stamper extends AbstractStreamOperator<Row> implements TwoInputStreamOperator<Row, Row, Row> {
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(Stamper.class);
    /** Dead letters (OrderAdmission.deadLetterType()) for versions refused as stale. */
    public static final OutputTag<Row> REJECTED = new OutputTag<>("stale-rules", OrderAdmission.deadLetterType());

    private final Row initial;
    private final int detailMax;
    private transient ListState<Long> highestState;
    private transient ListState<Long> floorState;
    /** The orders' watermark at the last checkpoint: after a restore the watermark restarts at
     * Long.MIN_VALUE, and a version arriving before the first one would otherwise be stamped
     * behind instants the rule steps have already taken; it applies from floor + 1 at the earliest. */
    private transient long floor;
    private transient long highest;
    private transient boolean initialPending;
    private transient long ordersWatermark;
    private transient volatile long newest;
    private transient JobMetrics metrics;

    public Stamper(Row initial, int detailMax) {
        this.initial = initial;
        this.detailMax = detailMax;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        highestState = context.getOperatorStateStore().getListState(new ListStateDescriptor<>("highest_version", Types.LONG));
        highest = Long.MIN_VALUE;
        for (Long h : highestState.get()) {
            highest = Math.max(highest, h);
        }
        floorState = context.getOperatorStateStore().getListState(new ListStateDescriptor<>("stamp_floor", Types.LONG));
        floor = Long.MIN_VALUE;
        for (Long f : floorState.get()) {
            floor = Math.max(floor, f);
        }
        initialPending = !context.isRestored();
        ordersWatermark = Long.MIN_VALUE;
        newest = highest;
    }

    @Override
    public void open() throws Exception {
        super.open();
        metrics = new JobMetrics(getMetricGroup());
        metrics.gauge("rules_version", () -> newest);
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        highestState.update(java.util.List.of(highest));
        floorState.update(java.util.List.of(Math.max(floor, ordersWatermark)));
    }

    private void emitInitial() {
        if (initialPending) {
            initialPending = false;
            Row r = Row.copy(initial);
            r.setField(RuleRows.EFFECTIVE_FROM, Long.MIN_VALUE);
            highest = Math.max(highest, RuleRows.version(r));
            newest = highest;
            output.collect(new StreamRecord<>(r));
        }
    }

    @Override
    public void processElement1(StreamRecord<Row> element) {
        // the orders carry no records here (filtered), only their watermarks
    }

    @Override
    public void processElement2(StreamRecord<Row> element) throws Exception {
        emitInitial();
        Row v = Row.copy(element.getValue());
        long version = RuleRows.version(v);
        if (version <= highest) {
            String detail = "rules version " + version + " is not newer than version " + highest
                    + ", already in force: ignored";
            LOG.warn(detail);
            metrics.deadLetter("stale_rules");
            String raw = v.toString();
            output.collect(REJECTED, new StreamRecord<>(Row.of("stale_rules", detail,
                    raw.length() > detailMax ? raw.substring(0, detailMax) : raw, System.currentTimeMillis(), null)));
            return;
        }
        long from = ordersWatermark == Long.MAX_VALUE ? Long.MAX_VALUE : ordersWatermark + 1;
        from = Math.max(from, floor == Long.MIN_VALUE || floor == Long.MAX_VALUE ? floor : floor + 1);
        long asked = RuleRows.effectiveFrom(v);
        if (asked >= 0 && asked < from) {
            LOG.warn("rules version {} asked to apply from event time {}, behind the orders' watermark: "
                    + "it applies from {}", version, asked, from);
        }
        v.setField(RuleRows.EFFECTIVE_FROM, Math.max(asked, from));
        highest = version;
        newest = version;
        LOG.info("rules version {} applies from event time {}", version, v.getField(RuleRows.EFFECTIVE_FROM));
        output.collect(new StreamRecord<>(v));
    }

    @Override
    public void processWatermark1(Watermark mark) throws Exception {
        emitInitial();
        ordersWatermark = Math.max(ordersWatermark, mark.getTimestamp());
        output.emitWatermark(mark);
    }

    @Override
    public void processWatermark2(Watermark mark) {
        // the versions' watermark says nothing about when they apply
    }

    @Override
    protected void processWatermarkStatus(WatermarkStatus status, int index) throws Exception {
        if (index == 0) {
            output.emitWatermarkStatus(status);
        }
    }
}
