package io.fraudstream.flink.rules;

import java.util.ArrayList;
import java.util.List;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import io.fraudstream.flink.Admissions;
import io.fraudstream.flink.OrderAdmission;
import io.fraudstream.flink.ScoredRows;

/**
 * The user's step of a job without a model: input idempotence ({@link Admissions}, what the
 * {@code Redelivery} step does in a job with one) and the user's rules ({@link UserRules}) in one
 * pass over one user's state, with one wait for the watermark and one shuffle instead of two.
 *
 * <p>When the watermark passes an instant, its orders are first checked in arrival order (later
 * copies become {@code duplicate} dead letters); the first copies go on to {@link #ADMITTED} (as
 * received: the archive), to {@link #TO_DEVICES} (without the record, for the device's rules) and,
 * sorted, to the user's rules. An order behind the watermark on arrival is a {@code late} dead
 * letter.
 */
public class UserStep extends UserRules {
    private static final long serialVersionUID = 1L;
    /** The admitted orders, each as received ({@code OrderAdmission.orderType()}). */
    public static final OutputTag<Row> ADMITTED = new OutputTag<>("admitted", OrderAdmission.orderType());
    /** The admitted orders as the device's rules take them ({@code ScoredRows.scoredType()}). */
    public static final OutputTag<Row> TO_DEVICES = new OutputTag<>("to-devices", ScoredRows.scoredType());

    private final long horizonMs;
    private final int deadLetterMaxChars;
    private transient Admissions admissions;

    public UserStep(RowTypeInfo versionType, long velocityMaxMs, long geoMaxMs, int listMax, long takeoverCooldownMs,
            long horizonMs, int deadLetterMaxChars) {
        super(versionType, OrderAdmission.orderType(), velocityMaxMs, geoMaxMs, listMax, takeoverCooldownMs);
        this.horizonMs = horizonMs;
        this.deadLetterMaxChars = deadLetterMaxChars;
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
        super.open(openContext);
        admissions = new Admissions(getRuntimeContext(), horizonMs, deadLetterMaxChars);
    }

    @Override
    public void processElement(Row order, ReadOnlyContext ctx, Collector<Row> out) throws Exception {
        Row late = admissions.lateOrNull(order, ctx.currentWatermark());
        if (late != null) {
            ctx.output(OrderAdmission.DEAD_LETTERS, late);
            return;
        }
        super.processElement(order, ctx, out);
    }

    @Override
    protected void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception {
        admissions.sawWatermark(ctx.currentWatermark());
        Long next = admissions.expire(timestamp);
        if (next != null) {
            ctx.timerService().registerEventTimeTimer(next);
        }
        super.expire(timestamp, ordersWaiting, ctx);
    }

    @Override
    protected List<Row> admit(long timestamp, List<Row> batch, OnTimerContext ctx) throws Exception {
        List<Row> admitted = new ArrayList<>(batch.size());
        List<Row> duplicates = new ArrayList<>(0);
        Long forget = admissions.admit(timestamp, batch, admitted, duplicates);
        for (Row letter : duplicates) {
            ctx.output(OrderAdmission.DEAD_LETTERS, letter);
        }
        List<Row> scored = new ArrayList<>(admitted.size());
        for (Row order : admitted) {
            ctx.output(ADMITTED, order);
            Row row = ScoredRows.unscored(order);
            ctx.output(TO_DEVICES, row);
            scored.add(row);
        }
        if (forget != null) {
            ctx.timerService().registerEventTimeTimer(forget);
        }
        return scored;
    }
}
