package io.fraudstream.flink;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;

import io.fraudstream.flink.features.DeviceHistory;
import io.fraudstream.flink.features.FeatureSpec;
import io.fraudstream.flink.features.UserHistory;

/**
 * The row types of the scoring steps and the features' state, and the feature spec from its JSON.
 *
 * <p>Rows: an order ({@link OrderAdmission#orderType()}, 11 fields) is followed by the device's
 * other users (after {@link DeviceFeatures}), or by the feature vector (after {@link UserFeatures}),
 * or by {@code risk} DOUBLE and {@code reasons} STRING (after {@link RiskScorer}, or
 * {@link NoRisk} without a model: NULLs, so the SQL and its state are the same either way).
 */
public final class ScoredRows {
    public static final int ORDER_ARITY = 11;
    public static final int DEVICE_USERS = ORDER_ARITY;
    public static final int FEATURES = ORDER_ARITY;
    public static final int RISK = ORDER_ARITY;
    public static final int REASONS = ORDER_ARITY + 1;
    private static final ObjectMapper JSON = new ObjectMapper();

    private ScoredRows() {
    }

    private static RowTypeInfo extend(String[] names, TypeInformation<?>... types) {
        RowTypeInfo order = OrderAdmission.orderType();
        String[] allNames = new String[ORDER_ARITY + names.length];
        TypeInformation<?>[] allTypes = new TypeInformation<?>[ORDER_ARITY + names.length];
        for (int i = 0; i < ORDER_ARITY; i++) {
            allNames[i] = order.getFieldNames()[i];
            allTypes[i] = order.getTypeAt(i);
        }
        for (int i = 0; i < names.length; i++) {
            allNames[ORDER_ARITY + i] = names[i];
            allTypes[ORDER_ARITY + i] = types[i];
        }
        return new RowTypeInfo(allTypes, allNames);
    }

    /** An order with the number of other users seen on its device. */
    public static RowTypeInfo withDeviceUsers() {
        return extend(new String[] {"device_users"}, Types.INT);
    }

    /** An order with its feature vector. */
    public static RowTypeInfo withFeatures() {
        return extend(new String[] {"features"}, Types.PRIMITIVE_ARRAY(Types.DOUBLE));
    }

    /** An order with its risk and (risky ones only) the reasons, as JSON. */
    public static RowTypeInfo scoredType() {
        return extend(new String[] {"risk", "reasons"}, Types.DOUBLE, Types.STRING);
    }

    /** What the scoring step tells a test about each order: its id, features, risk and reasons. */
    public static RowTypeInfo tapType() {
        return new RowTypeInfo(
                new TypeInformation<?>[] {Types.STRING, Types.PRIMITIVE_ARRAY(Types.DOUBLE), Types.DOUBLE, Types.STRING},
                new String[] {"transaction_id", "features", "risk", "reasons"});
    }

    /** {@code order} as a scored row with no risk and no reasons (without a model). */
    public static Row unscored(Row order) {
        return extended(order, null, null);
    }

    /** The order's fields of {@code row} followed by {@code extra}, without the record as received
     * ({@link OrderAdmission#RAW}: the archive has it by now, and no step after needs it, so it is
     * neither shipped between the steps nor held in their state). */
    static Row extended(Row row, Object... extra) {
        Row out = Row.withPositions(ORDER_ARITY + extra.length);
        for (int i = 0; i < ORDER_ARITY; i++) {
            if (i != OrderAdmission.RAW) {
                out.setField(i, row.getField(i));
            }
        }
        for (int i = 0; i < extra.length; i++) {
            out.setField(ORDER_ARITY + i, extra[i]);
        }
        return out;
    }

    static TypeInformation<DeviceHistory> deviceHistoryType() {
        Map<String, TypeInformation<?>> fields = new HashMap<>();
        fields.put("users", Types.MAP(Types.STRING, Types.LONG));
        return Types.POJO(DeviceHistory.class, fields);
    }

    static TypeInformation<UserHistory> userHistoryType() {
        Map<String, TypeInformation<?>> fields = new HashMap<>();
        fields.put("n", Types.INT);
        fields.put("mean", Types.DOUBLE);
        fields.put("m2", Types.DOUBLE);
        fields.put("firstTime", Types.LONG);
        fields.put("lastTime", Types.LONG);
        fields.put("recent", Types.LIST(Types.LONG));
        fields.put("devices", Types.MAP(Types.STRING, Types.PRIMITIVE_ARRAY(Types.LONG)));
        fields.put("cities", Types.MAP(Types.STRING, Types.PRIMITIVE_ARRAY(Types.LONG)));
        return Types.POJO(UserHistory.class, fields);
    }

    /** The spec from {@code FeatureSpec.to_json()}. */
    static FeatureSpec spec(String json) {
        try {
            JsonNode root = JSON.readTree(json);
            List<String> names = new ArrayList<>();
            root.get("features").forEach(n -> names.add(n.asText()));
            Map<String, Map<String, Integer>> distances = new HashMap<>();
            root.get("distances").fields().forEachRemaining(from -> {
                Map<String, Integer> row = new HashMap<>();
                from.getValue().fields().forEachRemaining(to -> row.put(to.getKey(), to.getValue().asInt()));
                distances.put(from.getKey(), row);
            });
            return new FeatureSpec(names, root.get("history_ms").asLong(), root.get("recent_ms").asLong(),
                    root.get("recent_max").asInt(), root.get("max_devices").asInt(), root.get("max_cities").asInt(),
                    root.get("device_window_ms").asLong(), root.get("device_users_max").asInt(), distances);
        } catch (Exception e) {
            throw new IllegalArgumentException("not a feature spec: " + e.getMessage(), e);
        }
    }
}
