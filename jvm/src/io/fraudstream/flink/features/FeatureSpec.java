package io.fraudstream.flink.features;

import java.io.Serializable;
import java.util.List;
import java.util.Map;

/**
 * The bounds of the features' state and the city distances (whole km): the JVM's copy of
 * {@code fraudstream.features.spec.FeatureSpec}, built from its {@code to_json()} (the distances
 * are data from Python, never computed here).
 */
public final class FeatureSpec implements Serializable {
    private static final long serialVersionUID = 1L;
    public static final long HOUR_MS = 3_600_000L;

    public final List<String> features;
    public final long historyMs;
    public final long recentMs;
    public final int recentMax;
    public final int maxDevices;
    public final int maxCities;
    public final long deviceWindowMs;
    public final int deviceUsersMax;
    public final Map<String, Map<String, Integer>> distances;

    public FeatureSpec(List<String> features, long historyMs, long recentMs, int recentMax, int maxDevices,
            int maxCities, long deviceWindowMs, int deviceUsersMax, Map<String, Map<String, Integer>> distances) {
        this.features = List.copyOf(features);
        this.historyMs = historyMs;
        this.recentMs = recentMs;
        this.recentMax = recentMax;
        this.maxDevices = maxDevices;
        this.maxCities = maxCities;
        this.deviceWindowMs = deviceWindowMs;
        this.deviceUsersMax = deviceUsersMax;
        this.distances = distances;
    }

    /** Whole km between two cities; -1 if either is unknown (Python: {@code .get(u, {}).get(c, -1)}). */
    public int km(String from, String to) {
        Map<String, Integer> row = distances.get(from);
        Integer d = row == null ? null : row.get(to);
        return d == null ? -1 : d;
    }
}
