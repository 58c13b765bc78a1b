package io.fraudstream.flink.model;

import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;

/**
 * The risk model on ONNX Runtime, as {@code fraudstream/model/score.py} runs it: one session on
 * one thread, float32 inputs, risk = the float32 probability of class 1 as a double. An
 * explanation sets each feature in turn to its baseline and scores the variants in one call;
 * {@code raised_by} is how much the risk falls (kept when above 0, largest first, equal ones in
 * feature order).
 */
public final class RiskModel implements AutoCloseable {
    private static final Set<String> OUTPUTS = Set.of("probabilities");

    private final OrtEnvironment env;
    private final OrtSession session;
    private final String input;
    private final int width;
    private final float[] baseline;

    /** One feature that raised a row's risk, by its index in the feature list. */
    public record Reason(int feature, double raisedBy) {
    }

    public RiskModel(byte[] onnx, double[] baseline) throws OrtException {
        this.env = OrtEnvironment.getEnvironment(OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
        try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
            options.setIntraOpNumThreads(1);
            options.setInterOpNumThreads(1);
            options.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
            options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT); // Python's default
            this.session = env.createSession(onnx, options);
        }
        if (!session.getOutputNames().contains("probabilities")) {
            session.close();
            throw new IllegalArgumentException("the model has no 'probabilities' output");
        }
        this.input = session.getInputNames().iterator().next();
        this.width = baseline.length;
        this.baseline = new float[width];
        for (int i = 0; i < width; i++) {
            this.baseline[i] = (float) baseline[i];
        }
    }

    public int width() {
        return width;
    }

    /** Risk of each of the first {@code n} rows of {@code rows} (row-major, {@link #width} floats each). */
    public double[] score(float[] rows, int n) throws OrtException {
        double[] risk = new double[n];
        if (n == 0) {
            return risk;
        }
        FloatBuffer x = FloatBuffer.wrap(rows, 0, n * width);
        try (OnnxTensor tensor = OnnxTensor.createTensor(env, x, new long[] {n, width});
                OrtSession.Result result = session.run(Collections.singletonMap(input, tensor), OUTPUTS)) {
            OnnxTensor probabilities = (OnnxTensor) result.get(0);
            FloatBuffer p = probabilities.getFloatBuffer();
            int columns = p.remaining() / n;
            for (int i = 0; i < n; i++) {
                risk[i] = p.get(i * columns + 1);
            }
        }
        return risk;
    }

    /** The reasons of several rows at once (all their variants scored in one call): for row j,
     * {@code features[j]} (the double values) scored {@code risks[j]}; at most {@code top} each. */
    public List<List<Reason>> explain(List<double[]> features, List<Double> risks, int top) throws OrtException {
        int rows = features.size();
        float[] variants = new float[rows * width * width];
        for (int j = 0; j < rows; j++) {
            double[] row = features.get(j);
            for (int v = 0; v < width; v++) {
                int at = (j * width + v) * width;
                for (int i = 0; i < width; i++) {
                    variants[at + i] = i == v ? baseline[i] : (float) row[i];
                }
            }
        }
        double[] lowered = score(variants, rows * width);
        List<List<Reason>> out = new ArrayList<>(rows);
        for (int j = 0; j < rows; j++) {
            double risk = risks.get(j);
            List<Reason> raised = new ArrayList<>();
            for (int i = 0; i < width; i++) {
                double by = risk - lowered[j * width + i];
                if (by > 0) {
                    raised.add(new Reason(i, by));
                }
            }
            raised.sort((a, b) -> a.raisedBy() != b.raisedBy() ? Double.compare(b.raisedBy(), a.raisedBy())
                    : Integer.compare(a.feature(), b.feature()));
            out.add(raised.size() > top ? new ArrayList<>(raised.subList(0, top)) : raised);
        }
        return out;
    }

    @Override
    public void close() throws OrtException {
        session.close();
    }
}
