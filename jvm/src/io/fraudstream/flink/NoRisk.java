package io.fraudstream.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/** Without a model: each order with NULL risk and reasons, so the SQL and its state are those of a
 * job with a model ({@link ScoredRows#scoredType()}). */
public class NoRisk implements MapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public Row map(Row order) {
        return ScoredRows.unscored(order);
    }
}
