package io.fraudstream.flink.features;

import java.util.HashMap;
import java.util.Map;

/** Who used a device lately: user -> the time of their latest order on it (Python's {@code DeviceHistory}).
 * A POJO, so that Flink keeps it in state with its own serializers. */
public class DeviceHistory {
    public Map<String, Long> users = new HashMap<>();

    public DeviceHistory() {
    }
}
