package io.fraudstream.flink.sinks;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.Set;

import org.apache.flink.connector.file.sink.FileSink;
import org.apache.flink.core.fs.Path;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.formats.parquet.ParquetBuilder;
import org.apache.flink.formats.parquet.ParquetWriterFactory;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.functions.sink.filesystem.BucketAssigner;
import org.apache.flink.streaming.api.functions.sink.filesystem.bucketassigners.SimpleVersionedStringSerializer;
import org.apache.flink.streaming.api.functions.sink.filesystem.rollingpolicies.OnCheckpointRollingPolicy;
import org.apache.flink.types.Row;
import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.api.WriteSupport;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.io.OutputFile;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.io.api.RecordConsumer;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType.PrimitiveTypeName;
import org.apache.parquet.schema.Types;

/**
 * The raw-event archive's sink: flat rows as Snappy Parquet files under
 * {@code <base>/dt=YYYY-MM-DD/hour=HH/} (UTC, from one epoch-millisecond column). Flink's
 * FileSink keeps a part file hidden while in progress and renames it into place when the
 * checkpoint covering its rows completes; bulk formats roll at every checkpoint.
 *
 * <p>A DataStream sink, not the Table API's filesystem connector, so that no job plans SQL
 * at start-up. Column kinds: STRING, DOUBLE, BIGINT (all optional).
 */
public final class ParquetArchive {

    private ParquetArchive() {}

    /** Attach the sink of {@code rows}, whose fields are {@code names} of {@code kinds}. */
    public static void attach(
            DataStream<Row> rows, String base, String[] names, String[] kinds, String timeColumn, String uid) {
        int time = indexOf(names, timeColumn);
        for (String kind : kinds) {
            primitive(kind); // fail now, in the driver, on an unknown kind
        }
        FileSink<Row> sink =
                FileSink.forBulkFormat(new Path(base), new ParquetWriterFactory<>(new Rows(names, kinds)))
                        .withBucketAssigner(new Hours(time))
                        .withRollingPolicy(OnCheckpointRollingPolicy.build())
                        .build();
        rows.sinkTo(sink).name("archive: " + base).uid(uid).setParallelism(rows.getParallelism());
    }

    private static int indexOf(String[] names, String name) {
        for (int i = 0; i < names.length; i++) {
            if (names[i].equals(name)) {
                return i;
            }
        }
        throw new IllegalArgumentException("no column " + name);
    }

    private static PrimitiveTypeName primitive(String kind) {
        switch (kind) {
            case "STRING":
                return PrimitiveTypeName.BINARY;
            case "DOUBLE":
                return PrimitiveTypeName.DOUBLE;
            case "BIGINT":
                return PrimitiveTypeName.INT64;
            default:
                throw new IllegalArgumentException("unknown column kind " + kind);
        }
    }

    /** The partition folder of a row: its time column's UTC date and hour. */
    static final class Hours implements BucketAssigner<Row, String> {
        private static final long serialVersionUID = 1L;
        private static final String NONE = "__DEFAULT_PARTITION__";
        private final int time;
        private static final long HOUR_MS = 3_600_000L;
        private transient DateTimeFormatter format;
        private transient long lastHour;
        private transient String lastId;

        Hours(int time) {
            this.time = time;
        }

        @Override
        public String getBucketId(Row row, Context context) {
            Object millis = row.getField(time);
            if (millis == null) {
                return "dt=" + NONE + "/hour=" + NONE;
            }
            long hour = Math.floorDiv(((Number) millis).longValue(), HOUR_MS);
            if (format == null) {
                format = DateTimeFormatter.ofPattern("'dt='yyyy-MM-dd'/hour='HH").withZone(ZoneOffset.UTC);
            } else if (hour == lastHour) {
                return lastId; // the rows of one hour come together: format once
            }
            lastHour = hour;
            lastId = format.format(Instant.ofEpochMilli(hour * HOUR_MS));
            return lastId;
        }

        @Override
        public SimpleVersionedSerializer<String> getSerializer() {
            return SimpleVersionedStringSerializer.INSTANCE;
        }
    }

    /** A Parquet writer of flat rows, one optional column per field. */
    static final class Rows implements ParquetBuilder<Row> {
        private static final long serialVersionUID = 1L;
        /** Columns of few distinct values, the only ones written with a dictionary: for ids, amounts
         * and times a file's dictionary grows to its limit and falls back, having cost a hash and
         * a retained value per row (measured: a third slower to write, no smaller). */
        private static final Set<String> FEW_VALUES = Set.of("restaurant_id", "city", "payment_method", "behavior",
                "reason");
        private final String[] names;
        private final String[] kinds;

        Rows(String[] names, String[] kinds) {
            this.names = names.clone();
            this.kinds = kinds.clone();
        }

        @Override
        public ParquetWriter<Row> createWriter(OutputFile out) throws IOException {
            Builder builder = new Builder(out, names, kinds).withCompressionCodec(CompressionCodecName.SNAPPY);
            for (String name : names) {
                if (!FEW_VALUES.contains(name)) {
                    builder = builder.withDictionaryEncoding(name, false);
                }
            }
            return builder.build();
        }
    }

    private static final class Builder extends ParquetWriter.Builder<Row, Builder> {
        private final String[] names;
        private final String[] kinds;

        Builder(OutputFile out, String[] names, String[] kinds) {
            super(out);
            this.names = names;
            this.kinds = kinds;
        }

        @Override
        protected Builder self() {
            return this;
        }

        @Override
        protected WriteSupport<Row> getWriteSupport(Configuration conf) {
            return new Writes(names, kinds);
        }
    }

    private static final class Writes extends WriteSupport<Row> {
        private static final int TEXT = 0;
        private static final int NUMBER = 1;
        private static final int WHOLE = 2;
        private final String[] names;
        /** Each column's kind: TEXT, NUMBER (double) or WHOLE (long), read once, not per value. */
        private final int[] kinds;
        private final MessageType schema;
        private RecordConsumer out;

        Writes(String[] names, String[] kinds) {
            this.names = names;
            this.kinds = new int[kinds.length];
            for (int i = 0; i < kinds.length; i++) {
                this.kinds[i] = switch (primitive(kinds[i])) {
                    case BINARY -> TEXT;
                    case DOUBLE -> NUMBER;
                    default -> WHOLE;
                };
            }
            Types.MessageTypeBuilder builder = Types.buildMessage();
            for (int i = 0; i < names.length; i++) {
                if (kinds[i].equals("STRING")) {
                    builder.optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named(names[i]);
                } else {
                    builder.optional(primitive(kinds[i])).named(names[i]);
                }
            }
            this.schema = builder.named("archive");
        }

        @Override
        public WriteContext init(Configuration configuration) {
            return new WriteContext(schema, new HashMap<>());
        }

        @Override
        public void prepareForWrite(RecordConsumer recordConsumer) {
            this.out = recordConsumer;
        }

        @Override
        public void write(Row row) {
            out.startMessage();
            for (int i = 0; i < names.length; i++) {
                Object value = row.getField(i);
                if (value == null) {
                    continue;
                }
                out.startField(names[i], i);
                switch (kinds[i]) {
                    // the text's UTF-8 bytes, exactly sized: Binary.fromString encodes through a
                    // buffer of three bytes per character, two objects more per value
                    case TEXT -> out.addBinary(
                            Binary.fromConstantByteArray(((String) value).getBytes(StandardCharsets.UTF_8)));
                    case NUMBER -> out.addDouble(((Number) value).doubleValue());
                    default -> out.addLong(((Number) value).longValue());
                }
                out.endField(names[i], i);
            }
            out.endMessage();
        }
    }
}
