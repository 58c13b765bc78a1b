package io.fraudstream.flink;

import java.util.HashMap;
import java.util.Map;

import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;

/**
 * The job's own metrics, in one {@code fraudstream} group of an operator's metric group, so that
 * Prometheus names read {@code flink_taskmanager_job_task_operator_fraudstream_<name>}. A
 * key-value group ({@code reason}, {@code alert_type}, ...) becomes a label of that name.
 * Names and labels are listed in docs/metrics.md.
 */
public final class JobMetrics {
    /** How many latencies a histogram keeps for its quantiles (a sliding window of the newest). */
    static final int HISTOGRAM_WINDOW = 10_000;

    private final MetricGroup group;
    private final Map<String, Counter> deadLetters = new HashMap<>();

    public JobMetrics(MetricGroup operatorGroup) {
        this.group = operatorGroup.addGroup("fraudstream");
    }

    public Counter counter(String name) {
        return group.counter(name);
    }

    /** {@code fraudstream_reason_dead_letters{reason=...}}: dead letters made here, by reason. */
    public void deadLetter(String reason) {
        deadLetters.computeIfAbsent(reason, r -> group.addGroup("reason", r).counter("dead_letters")).inc();
    }

    public <T> void gauge(String name, org.apache.flink.metrics.Gauge<T> gauge) {
        group.gauge(name, gauge);
    }

    public Histogram histogram(String name) {
        return group.histogram(name, new DescriptiveStatisticsHistogram(HISTOGRAM_WINDOW));
    }

    public MetricGroup group() {
        return group;
    }
}
