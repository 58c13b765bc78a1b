package io.fraudstream.flink;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.metrics.Counter;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

import io.fraudstream.flink.features.FeatureSteps;
import io.fraudstream.flink.model.RiskModel;

/**
 * Scores orders with the model in batches (one ONNX Runtime call per batch, never one per order),
 * chained after {@link UserFeatures}. A batch is scored when it holds {@code batchSize} orders,
 * when a watermark arrives (before it goes on, so no order falls behind it), before a checkpoint
 * barrier (nothing is held in a checkpoint) and at the end of the input. Each order keeps its
 * timestamp; orders at or above {@code takeoverRisk} also get their reasons (all of a batch's
 * explained in one more call), as JSON: [{"feature", "value", "usual", "raised_by"}, ...].
 *
 * <p>The model arrives as bytes with the job (nothing is read from a path inside it). Metric
 * ({@link JobMetrics}): {@code orders_scored}.
 */
public class RiskScorer extends AbstractStreamOperator<Row> implements OneInputStreamOperator<Row, Row>, BoundedOneInput {
    private static final long serialVersionUID = 1L;
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Each order's id, features, risk and reasons, for tests: built only when the scorer was made
     * with {@code tap} on (a side output nobody reads still costs a row per order). */
    public static final OutputTag<Row> SCORED = new OutputTag<>("scored", ScoredRows.tapType());

    private final byte[] onnx;
    private final String[] names;
    private final double[] baseline;
    private final int batchSize;
    private final double takeoverRisk;
    private final int explainTop;
    private final boolean tap;

    private transient RiskModel model;
    private transient float[] inputs;
    private transient List<Row> rows;
    private transient long[] timestamps;
    private transient Counter scored;

    public RiskScorer(byte[] onnx, String[] names, double[] baseline, int batchSize, double takeoverRisk,
            int explainTop, boolean tap) {
        if (names.length != FeatureSteps.COUNT || baseline.length != FeatureSteps.COUNT) {
            throw new IllegalArgumentException("the model reads " + names.length + " features; this build computes "
                    + FeatureSteps.COUNT);
        }
        this.onnx = onnx;
        this.names = names;
        this.baseline = baseline;
        this.batchSize = batchSize;
        this.takeoverRisk = takeoverRisk;
        this.explainTop = explainTop;
        this.tap = tap;
    }

    @Override
    public void open() throws Exception {
        super.open();
        model = new RiskModel(onnx, baseline);
        inputs = new float[batchSize * FeatureSteps.COUNT];
        rows = new ArrayList<>(batchSize);
        timestamps = new long[batchSize];
        scored = new JobMetrics(getMetricGroup()).counter("orders_scored");
    }

    @Override
    public void processElement(StreamRecord<Row> record) throws Exception {
        Row row = record.getValue();
        double[] features = (double[]) row.getField(ScoredRows.FEATURES);
        int at = rows.size() * FeatureSteps.COUNT;
        for (int i = 0; i < FeatureSteps.COUNT; i++) {
            inputs[at + i] = (float) features[i];
        }
        timestamps[rows.size()] = record.hasTimestamp() ? record.getTimestamp() : Long.MIN_VALUE;
        rows.add(row);
        if (rows.size() == batchSize) {
            flush();
        }
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        flush();
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void endInput() throws Exception {
        flush();
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }

    @Override
    public void close() throws Exception {
        try {
            if (model != null) {
                model.close();
            }
        } finally {
            super.close();
        }
    }

    private void flush() throws Exception {
        int n = rows.size();
        if (n == 0) {
            return;
        }
        double[] risk = model.score(inputs, n);
        List<Integer> risky = new ArrayList<>();
        List<double[]> riskyFeatures = new ArrayList<>();
        List<Double> riskyRisk = new ArrayList<>();
        for (int j = 0; j < n; j++) {
            if (risk[j] >= takeoverRisk) {
                risky.add(j);
                riskyFeatures.add((double[]) rows.get(j).getField(ScoredRows.FEATURES));
                riskyRisk.add(risk[j]);
            }
        }
        String[] reasons = new String[n];
        if (!risky.isEmpty()) {
            List<List<RiskModel.Reason>> explained = model.explain(riskyFeatures, riskyRisk, explainTop);
            for (int k = 0; k < risky.size(); k++) {
                reasons[risky.get(k)] = json(explained.get(k), riskyFeatures.get(k));
            }
        }
        for (int j = 0; j < n; j++) {
            Row row = rows.get(j);
            StreamRecord<Row> out = new StreamRecord<>(ScoredRows.extended(row, risk[j], reasons[j]));
            if (timestamps[j] != Long.MIN_VALUE) {
                out.setTimestamp(timestamps[j]);
            }
            output.collect(out);
            if (tap) {
                StreamRecord<Row> tapped = new StreamRecord<>(Row.of(row.getField(0), row.getField(ScoredRows.FEATURES), risk[j], reasons[j]));
                if (timestamps[j] != Long.MIN_VALUE) {
                    tapped.setTimestamp(timestamps[j]);
                }
                output.collect(SCORED, tapped);
            }
        }
        scored.inc(n);
        rows.clear();
    }

    /** A number JSON can hold: a non-finite one is null (Jackson would write "Infinity" as a string). */
    private static Double finite(double value) {
        return Double.isFinite(value) ? value : null;
    }

    private String json(List<RiskModel.Reason> reasons, double[] features) throws Exception {
        List<Map<String, Object>> out = new ArrayList<>(reasons.size());
        for (RiskModel.Reason r : reasons) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("feature", names[r.feature()]);
            m.put("value", finite(features[r.feature()]));
            m.put("usual", finite(baseline[r.feature()]));
            m.put("raised_by", finite(r.raisedBy()));
            out.add(m);
        }
        return JSON.writeValueAsString(out);
    }
}
