package io.fraudstream.flink.features;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** A customer's normal (Python's {@code UserHistory}): how many orders, their amounts (running mean
 * and spread, Welford), when, from which devices and cities ({@code name -> [orders, last time]}).
 * A POJO, so that Flink keeps it in state with its own serializers. */
public class UserHistory {
    public int n;
    public double mean;
    public double m2;
    public long firstTime;
    public long lastTime;
    public List<Long> recent = new ArrayList<>();
    public Map<String, long[]> devices = new HashMap<>();
    public Map<String, long[]> cities = new HashMap<>();

    public UserHistory() {
    }
}
