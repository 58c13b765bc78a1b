package io.fraudstream.flink;

import java.util.List;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import io.fraudstream.flink.features.FeatureSpec;
import io.fraudstream.flink.features.FeatureSteps;
import io.fraudstream.flink.features.UserHistory;

/**
 * Keyed by user, after {@link DeviceFeatures}: each order's feature vector from the user's
 * history ({@code features/history.py user_step}), in sort_key order. A user silent for
 * {@code history_ms} starts again: the state goes at a timer {@code history_ms} + 1 ms after
 * their newest order (the order-time timers are never moved; one timed by an older, shorter
 * history_ms is moved to the current expiry when it fires).
 */
public class UserFeatures extends InEventTimeOrder {
    private static final long serialVersionUID = 1L;

    private final String specJson;
    private transient FeatureSpec spec;
    private transient ValueState<UserHistory> history;

    public UserFeatures(String specJson) {
        super(ScoredRows.withDeviceUsers());
        this.specJson = specJson;
    }

    @Override
    public void open(OpenContext openContext) throws Exception {
        super.open(openContext);
        spec = ScoredRows.spec(specJson);
        if (spec.features.size() != FeatureSteps.COUNT) {
            throw new IllegalArgumentException("the feature spec names " + spec.features.size()
                    + " features; this build computes " + FeatureSteps.COUNT);
        }
        history = getRuntimeContext().getState(new ValueStateDescriptor<>("user", ScoredRows.userHistoryType()));
    }

    @Override
    protected void expire(long timestamp, boolean ordersWaiting, OnTimerContext ctx) throws Exception {
        UserHistory h = history.value();
        if (h == null || h.n == 0) {
            return;
        }
        if (timestamp - h.lastTime >= spec.historyMs) {
            history.clear();
        } else if (!ordersWaiting) {
            ctx.timerService().registerEventTimeTimer(h.lastTime + spec.historyMs + 1);
        }
    }

    @Override
    protected void take(long timestamp, List<Row> orders, OnTimerContext ctx, Collector<Row> out) throws Exception {
        UserHistory h = history.value();
        Long previous = h == null ? null : h.lastTime + spec.historyMs + 1;
        if (h == null) {
            h = new UserHistory();
        }
        for (Row order : orders) {
            double[] features = new double[FeatureSteps.COUNT];
            h = FeatureSteps.userStep(spec, h, (String) order.getField(2), (String) order.getField(5),
                    (Double) order.getField(4), timestamp, (Integer) order.getField(ScoredRows.DEVICE_USERS), features);
            out.collect(ScoredRows.extended(order, (Object) features));
        }
        history.update(h);
        moveTimer(ctx, previous, h.lastTime + spec.historyMs + 1);
    }
}
