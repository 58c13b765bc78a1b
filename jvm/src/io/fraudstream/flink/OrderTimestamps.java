package io.fraudstream.flink;

import java.time.Duration;

import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.types.Row;

/** Event time of an admitted order row (see {@link OrderAdmission#orderType()}), in the JVM. */
public class OrderTimestamps implements SerializableTimestampAssigner<Row> {
    private static final long serialVersionUID = 1L;
    /** Position of event_time in an order row. */
    static final int EVENT_TIME = 7;

    @Override
    public long extractTimestamp(Row order, long recordTimestamp) {
        return eventTime(order);
    }

    static long eventTime(Row order) {
        return (Long) order.getField(EVENT_TIME);
    }

    /** Bounded out-of-orderness watermarks, idle after `idleMs` (0: never idle). */
    public static WatermarkStrategy<Row> strategy(long outOfOrdernessMs, long idleMs) {
        WatermarkStrategy<Row> s = WatermarkStrategy.<Row>forBoundedOutOfOrderness(Duration.ofMillis(outOfOrdernessMs))
                .withTimestampAssigner(new OrderTimestamps());
        return idleMs > 0 ? s.withIdleness(Duration.ofMillis(idleMs)) : s;
    }
}
