package io.fraudstream.flink.sinks;

import java.nio.charset.StandardCharsets;
import java.util.Properties;

import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.types.Row;

/**
 * The job's exactly-once Kafka sinks: rows of (key, value) text, written in transactions that
 * commit with the checkpoint covering them. A DataStream sink, not a Table API one, so that no
 * job plans SQL at start-up (the planner's cold start cost seconds per run).
 */
public final class KafkaSinks {

    private KafkaSinks() {}

    /**
     * Attach a sink of {@code rows} (field 0: key, field 1: value, both text, either may be
     * null) to {@code topic}. {@code producer} holds the client properties, bootstrap.servers
     * and transaction.timeout.ms included. {@code exactlyOnce}: in transactions whose ids start
     * with {@code transactionalIdPrefix} (unique per running job), visible when the checkpoint
     * covering them completes; else at least once, visible as soon as the broker has them.
     */
    public static void attach(
            DataStream<Row> rows,
            String topic,
            Properties producer,
            boolean exactlyOnce,
            String transactionalIdPrefix,
            String uid,
            int parallelism) {
        KafkaSink<Row> sink =
                KafkaSink.<Row>builder()
                        .setKafkaProducerConfig(producer)
                        .setDeliveryGuarantee(
                                exactlyOnce ? DeliveryGuarantee.EXACTLY_ONCE : DeliveryGuarantee.AT_LEAST_ONCE)
                        .setTransactionalIdPrefix(transactionalIdPrefix)
                        .setRecordSerializer(new KeyValue(topic))
                        .build();
        rows.sinkTo(sink).name("kafka: " + topic).uid(uid).setParallelism(parallelism);
    }

    /** A (key, value) row as one record, UTF-8 both; the broker stamps its time. */
    static final class KeyValue implements KafkaRecordSerializationSchema<Row> {
        private static final long serialVersionUID = 1L;
        private final String topic;

        KeyValue(String topic) {
            this.topic = topic;
        }

        @Override
        public ProducerRecord<byte[], byte[]> serialize(Row row, KafkaSinkContext context, Long timestamp) {
            return new ProducerRecord<>(topic, utf8(row.getField(0)), utf8(row.getField(1)));
        }

        private static byte[] utf8(Object text) {
            return text == null ? null : ((String) text).getBytes(StandardCharsets.UTF_8);
        }
    }
}
