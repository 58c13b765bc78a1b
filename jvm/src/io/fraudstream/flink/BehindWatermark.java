package io.fraudstream.flink;

import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Turns orders that are behind the job's watermark into {@code late} dead letters, as the
 * DataStream engine's detectors do, instead of handing them to the SQL windows: an OVER
 * window would hold such an order until event time moves again, or drop it, counted only in
 * a metric.
 *
 * <p>Admission judges lateness per partition, so this happens only after idleness: an idle
 * partition's subtask stops holding back time, the others move it on, and when the partition
 * wakes up with older orders they are behind. It runs after a shuffle, so its watermark is the
 * combined one; an order it lets through is ahead of every watermark the windows have seen.
 */
public class BehindWatermark extends ProcessFunction<Row, Row> {

    private static final long serialVersionUID = 1L;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final int deadLetterMaxChars;

    public BehindWatermark(int deadLetterMaxChars) {
        this.deadLetterMaxChars = deadLetterMaxChars;
    }

    @Override
    public void processElement(Row order, Context ctx, Collector<Row> out) throws JsonProcessingException {
        long t = (Long) order.getField(OrderTimestamps.EVENT_TIME);
        long watermark = ctx.timerService().currentWatermark();
        if (t > watermark) {
            out.collect(order);
            return;
        }
        Object received = order.getField(OrderAdmission.RAW);
        String raw = OrderParser.truncate(
                received != null ? (String) received : JSON.writeValueAsString(asMap(order)), deadLetterMaxChars);
        ctx.output(
                OrderAdmission.DEAD_LETTERS,
                Row.of("late", "event_time " + t + " is behind the watermark " + watermark, raw,
                        System.currentTimeMillis(), t));
    }

    /** The admitted order by field name (behavior only when set), for when the record as received was not kept. */
    static Map<String, Object> asMap(Row order) {
        Map<String, Object> fields = new LinkedHashMap<>();
        String[] names = OrderAdmission.orderType().getFieldNames();
        for (int i = 0; i < names.length; i++) {
            Object value = order.getField(i);
            if (i == OrderAdmission.RAW) {
                continue;
            }
            if (value != null || !"behavior".equals(names[i])) {
                fields.put(names[i], value);
            }
        }
        return fields;
    }
}
