package io.fraudstream.flink;

import java.util.List;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import io.fraudstream.flink.features.DeviceHistory;
import io.fraudstream.flink.features.FeatureSpec;
import io.fraudstream.flink.features.FeatureSteps;

/**
 * Keyed by device: each order gets the number of other users seen on its device in the
 * window before it ({@code features/history.py device_step}), in sort_key order. A device
 * silent for the whole window is forgotten (a timer one window and 1 ms after its newest order).
 */
public class DeviceFeatures extends InEventTimeOrder {
    private static final long serialVersionUID = 1L;

    private final String specJson;
    private transient FeatureSpec spec;
    private transient ValueState<DeviceHistory> history;

    public DeviceFeatures(String specJson) {
        super(OrderAdmission.orderType());
        this.specJson = specJson;
    }

    /** The key: the order's device. */
    public static class DeviceKey implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(Row order) {
            return (String) order.getField(2);
        }
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
        super.open(openContext);
        spec = ScoredRows.spec(specJson);
        history = getRuntimeContext().getState(new ValueStateDescriptor<>("device", ScoredRows.deviceHistoryType()));
    }

    private long expiry(DeviceHistory h) {
        long newest = Long.MIN_VALUE;
        for (long last : h.users.values()) {
            newest = Math.max(newest, last);
        }
        return newest + spec.deviceWindowMs + 1;
    }

    @Override
    protected void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception {
        DeviceHistory h = history.value();
        if (h == null || h.users.isEmpty()) {
            return;
        }
        long expiry = expiry(h);
        if (timestamp >= expiry) {
            history.clear(); // every user is out of the window: what device_step would drop
        } else if (!ordersWaiting) {
            ctx.timerService().registerEventTimeTimer(expiry); // timed by an older, shorter window
        }
    }

    @Override
    protected void take(long timestamp, List<Row> orders, OnTimerContext ctx, Collector<Row> out) throws Exception {
        DeviceHistory h = history.value();
        Long previous = h == null || h.users.isEmpty() ? null : expiry(h);
        if (h == null) {
            h = new DeviceHistory();
        }
        for (Row order : orders) {
            int others = FeatureSteps.deviceStep(spec, h, (String) order.getField(1), timestamp);
            out.collect(ScoredRows.extended(order, others));
        }
        history.update(h);
        moveTimer(ctx, previous, expiry(h));
    }
}
