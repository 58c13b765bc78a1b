package io.fraudstream.flink.features;

import java.util.Iterator;
import java.util.List;
import java.util.Map;

import io.fraudstream.flink.ValueTimes;

/**
 * The behavioural features, line by line as {@code fraudstream/features/history.py} computes them
 * (the same double arithmetic, in the same order), so the job and training agree exactly. Each
 * step first computes the order's features from the state as it is, then folds the order in.
 * The caller feeds each key's orders in {@code Order.sort_key} order.
 */
public final class FeatureSteps {
    public static final int COUNT = 11;

    private FeatureSteps() {
    }

    /** The least recently seen name (equal times: the first name in code-point order, Python's string
     * order), as Python's {@code _evict_oldest}. */
    private static String oldest(Map<String, ?> seen, java.util.function.ToLongFunction<Object> lastOf) {
        String found = null;
        long foundLast = 0;
        for (Map.Entry<String, ?> e : seen.entrySet()) {
            long last = lastOf.applyAsLong(e.getValue());
            if (found == null || last < foundLast || (last == foundLast && ValueTimes.compareCodePoints(e.getKey(), found) < 0)) {
                found = e.getKey();
                foundLast = last;
            }
        }
        return found;
    }

    private static void evictOldest(Map<String, ?> seen, int limit, java.util.function.ToLongFunction<Object> lastOf) {
        while (seen.size() >= limit) {
            seen.remove(oldest(seen, lastOf));
        }
    }

    private static void count(Map<String, long[]> seen, String name, long t, int limit) {
        long[] entry = seen.get(name);
        if (entry == null) {
            evictOldest(seen, limit, e -> ((long[]) e)[1]);
            seen.put(name, new long[] {1, t});
        } else {
            entry[0] += 1;
            entry[1] = t;
        }
    }

    /** The city of most orders; then the most recent; then the first name (null: none yet). */
    public static String usualCity(UserHistory h) {
        String found = null;
        long[] best = null;
        for (Map.Entry<String, long[]> e : h.cities.entrySet()) {
            long[] c = e.getValue();
            if (found == null || c[0] > best[0] || (c[0] == best[0] && (c[1] > best[1]
                    || (c[1] == best[1] && ValueTimes.compareCodePoints(e.getKey(), found) < 0)))) {
                found = e.getKey();
                best = c;
            }
        }
        return found;
    }

    /** Other users seen on the order's device in the {@code deviceWindowMs} before it; then the
     * order's user is recorded there. */
    public static int deviceStep(FeatureSpec spec, DeviceHistory state, String userId, long t) {
        Map<String, Long> users = state.users;
        for (Iterator<Map.Entry<String, Long>> it = users.entrySet().iterator(); it.hasNext();) {
            if (t - it.next().getValue() >= spec.deviceWindowMs) {
                it.remove();
            }
        }
        boolean known = users.containsKey(userId);
        int others = users.size() - (known ? 1 : 0);
        if (!known) {
            evictOldest(users, spec.deviceUsersMax, last -> (Long) last);
        }
        users.put(userId, t);
        return others;
    }

    /** The order's feature vector (in FEATURES order) from the user's history; then the order is
     * folded into it. Returns the state to keep: a new one when the user was silent too long. */
    public static UserHistory userStep(FeatureSpec spec, UserHistory state, String deviceId, String city,
            double amount, long t, int deviceUsers, double[] features) {
        UserHistory h = state;
        if (h.n != 0 && t - h.lastTime >= spec.historyMs) {
            h = new UserHistory(); // silent for too long: a new history
        }
        List<Long> recent = h.recent;
        while (!recent.isEmpty() && t - recent.get(0) >= spec.recentMs) {
            recent.remove(0);
        }
        double toUsual;
        double z;
        double ageH;
        double sinceH;
        long km;
        if (h.n != 0) {
            double std = Math.sqrt(h.m2 / h.n);
            toUsual = amount / Math.max(h.mean, 1.0); // a rupee's floor: finite, as in Python
            z = (amount - h.mean) / (std + 0.1 * h.mean + 1.0);
            ageH = (double) (t - h.firstTime) / FeatureSpec.HOUR_MS;
            sinceH = (double) (t - h.lastTime) / FeatureSpec.HOUR_MS;
            String usual = usualCity(h);
            km = usual != null ? spec.km(usual, city) : -1;
        } else {
            toUsual = 1.0;
            z = 0.0;
            ageH = 0.0;
            sinceH = (double) spec.historyMs / FeatureSpec.HOUR_MS;
            km = 0;
        }
        long[] device = h.devices.get(deviceId);
        long[] seenCity = h.cities.get(city);
        features[0] = amount;
        features[1] = h.n;
        features[2] = toUsual;
        features[3] = z;
        features[4] = ageH;
        features[5] = sinceH;
        features[6] = recent.size();
        features[7] = device != null ? device[0] : 0;
        features[8] = seenCity != null ? seenCity[0] : 0;
        features[9] = km;
        features[10] = deviceUsers;
        // fold the order in
        if (h.n == 0) {
            h.firstTime = t;
        }
        h.n += 1;
        double d = amount - h.mean;
        h.mean += d / h.n;
        h.m2 += d * (amount - h.mean);
        h.lastTime = t;
        recent.add(t);
        if (recent.size() > spec.recentMax) {
            recent.remove(0);
        }
        count(h.devices, deviceId, t, spec.maxDevices);
        count(h.cities, city, t, spec.maxCities);
        return h;
    }
}
