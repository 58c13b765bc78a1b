package io.fraudstream.flink;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.function.BiConsumer;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.ReaderInfo;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceEvent;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.SplitsAssignment;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.connector.kafka.source.split.KafkaPartitionSplit;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.metrics.groups.SplitEnumeratorMetricGroup;

/**
 * Wraps a bounded source (fraudstream's bounded Kafka source) so that it also ends after a
 * restore.
 *
 * <p>A bounded KafkaSource whose enumerator is recreated from a checkpoint (a resumed run,
 * a savepoint, or a job-wide restart after a failure) finds no new partitions, and so never
 * tells its readers that no more splits will come: they read to their stopping offsets and
 * then wait forever (FLINK-31006). This wrapper watches the enumerator's asynchronous work
 * (partition discovery and split initialisation); once none is pending, every split there is
 * has been assigned, so each reader is told, now and whenever it (re)registers, that no
 * more splits will come. Telling a reader twice is harmless.
 *
 * <p>Given this run's stopping offsets (partition to offset), it also moves every Kafka split
 * it restores to them: a split checkpointed by an earlier bounded run still carries that
 * run's end, and would stop there, so that the orders that arrived since would be skipped
 * while this run commits its own, later end for the group. Splits reach the readers (from a
 * checkpoint, or from the enumerator) only through the split serializer, so that is where
 * the offsets are replaced.
 *
 * <p>It also tells Flink that the source reads a backlog, so that a bounded run checkpoints at
 * the slower backlog interval.
 */
public final class RestartableBoundedSource<T, SplitT extends SourceSplit, EnumT>
        implements Source<T, SplitT, EnumT>, ResultTypeQueryable<T> {

    private static final long serialVersionUID = 1L;

    private final Source<T, SplitT, EnumT> inner;
    private final HashMap<Integer, Long> stoppingOffsets;

    public RestartableBoundedSource(Source<T, SplitT, EnumT> inner) {
        this(inner, new HashMap<>());
    }

    /**
     * `stoppingOffsets`: where this run stops reading each partition of its one topic (any
     * numbers: py4j hands small Python ints over as Integer, whatever the map was built with).
     */
    public RestartableBoundedSource(Source<T, SplitT, EnumT> inner, Map<?, ?> stoppingOffsets) {
        if (inner.getBoundedness() != Boundedness.BOUNDED) {
            throw new IllegalArgumentException("only a bounded source needs this wrapper");
        }
        this.inner = inner;
        this.stoppingOffsets = new HashMap<>();
        for (Map.Entry<?, ?> e : stoppingOffsets.entrySet()) {
            this.stoppingOffsets.put(((Number) e.getKey()).intValue(), ((Number) e.getValue()).longValue());
        }
    }

    @Override
    public Boundedness getBoundedness() {
        return Boundedness.BOUNDED;
    }

    @Override
    public SourceReader<T, SplitT> createReader(SourceReaderContext readerContext) throws Exception {
        return new KeepingFinished<>(inner.createReader(readerContext));
    }

    @Override
    public SplitEnumerator<SplitT, EnumT> createEnumerator(SplitEnumeratorContext<SplitT> context)
            throws Exception {
        Tracking<SplitT, EnumT> tracking = new Tracking<>(context);
        tracking.inner = inner.createEnumerator(tracking.context);
        return tracking;
    }

    @Override
    public SplitEnumerator<SplitT, EnumT> restoreEnumerator(
            SplitEnumeratorContext<SplitT> context, EnumT checkpoint) throws Exception {
        Tracking<SplitT, EnumT> tracking = new Tracking<>(context);
        tracking.inner = inner.restoreEnumerator(tracking.context, checkpoint);
        return tracking;
    }

    @Override
    public SimpleVersionedSerializer<SplitT> getSplitSerializer() {
        SimpleVersionedSerializer<SplitT> splits = inner.getSplitSerializer();
        if (stoppingOffsets.isEmpty()) {
            return splits;
        }
        return new Restopping<>(splits, stoppingOffsets);
    }

    @Override
    public SimpleVersionedSerializer<EnumT> getEnumeratorCheckpointSerializer() {
        return inner.getEnumeratorCheckpointSerializer();
    }

    @Override
    @SuppressWarnings("unchecked")
    public TypeInformation<T> getProducedType() {
        return ((ResultTypeQueryable<T>) inner).getProducedType();
    }

    /** The split serializer, with each Kafka split it reads moved to this run's stopping offset. */
    private static final class Restopping<SplitT> implements SimpleVersionedSerializer<SplitT> {

        private final SimpleVersionedSerializer<SplitT> inner;
        private final Map<Integer, Long> stoppingOffsets;

        Restopping(SimpleVersionedSerializer<SplitT> inner, Map<Integer, Long> stoppingOffsets) {
            this.inner = inner;
            this.stoppingOffsets = stoppingOffsets;
        }

        @Override
        public int getVersion() {
            return inner.getVersion();
        }

        @Override
        public byte[] serialize(SplitT split) throws IOException {
            return inner.serialize(split);
        }

        @Override
        @SuppressWarnings("unchecked")
        public SplitT deserialize(int version, byte[] serialized) throws IOException {
            SplitT split = inner.deserialize(version, serialized);
            if (!(split instanceof KafkaPartitionSplit)) {
                return split;
            }
            KafkaPartitionSplit kafka = (KafkaPartitionSplit) split;
            if (stoppingOffsets == null) { // an unbounded run: no stop, whatever the checkpoint said
                if (kafka.getStoppingOffset().isEmpty()) {
                    return split;
                }
                return (SplitT) new KafkaPartitionSplit(
                        kafka.getTopicPartition(), kafka.getStartingOffset(), KafkaPartitionSplit.NO_STOPPING_OFFSET);
            }
            Long stop = stoppingOffsets.get(kafka.getPartition());
            if (stop == null || kafka.getStoppingOffset().equals(java.util.Optional.of(stop))) {
                return split;
            }
            return (SplitT) new KafkaPartitionSplit(kafka.getTopicPartition(), kafka.getStartingOffset(), stop);
        }
    }

    /**
     * An unbounded Kafka source whose splits never stop, also those restored from a bounded
     * run's checkpoint (which carry that run's end: the run would read to it and then idle,
     * never reading what arrives later). Otherwise the source itself, untouched.
     */
    public static <T, SplitT extends SourceSplit, EnumT> Source<T, SplitT, EnumT> unbounded(
            Source<T, SplitT, EnumT> inner) {
        return new Unstopped<>(inner);
    }

    private static final class Unstopped<T, SplitT extends SourceSplit, EnumT>
            implements Source<T, SplitT, EnumT>, ResultTypeQueryable<T> {

        private static final long serialVersionUID = 1L;

        private final Source<T, SplitT, EnumT> inner;

        Unstopped(Source<T, SplitT, EnumT> inner) {
            if (inner.getBoundedness() != Boundedness.CONTINUOUS_UNBOUNDED) {
                throw new IllegalArgumentException("an unbounded source is needed here");
            }
            this.inner = inner;
        }

        @Override
        public Boundedness getBoundedness() {
            return Boundedness.CONTINUOUS_UNBOUNDED;
        }

        @Override
        public SourceReader<T, SplitT> createReader(SourceReaderContext readerContext) throws Exception {
            return new KeepingFinished<>(inner.createReader(readerContext));
        }

        @Override
        public SplitEnumerator<SplitT, EnumT> createEnumerator(SplitEnumeratorContext<SplitT> context)
                throws Exception {
            return inner.createEnumerator(context);
        }

        @Override
        public SplitEnumerator<SplitT, EnumT> restoreEnumerator(
                SplitEnumeratorContext<SplitT> context, EnumT checkpoint) throws Exception {
            return inner.restoreEnumerator(context, checkpoint);
        }

        @Override
        public SimpleVersionedSerializer<SplitT> getSplitSerializer() {
            return new Restopping<>(inner.getSplitSerializer(), null);
        }

        @Override
        public SimpleVersionedSerializer<EnumT> getEnumeratorCheckpointSerializer() {
            return inner.getEnumeratorCheckpointSerializer();
        }

        @Override
        @SuppressWarnings("unchecked")
        public TypeInformation<T> getProducedType() {
            return ((ResultTypeQueryable<T>) inner).getProducedType();
        }
    }

    /**
     * A reader that keeps its finished splits in its checkpoints, as splits with nothing left
     * to read (start = stop = where it ended).
     *
     * <p>Kafka's reader drops a split from its state once it reached its stopping offset,
     * while the enumerator's state keeps the partition as assigned, so a restore hands it to
     * no one. A later run that restores with a later end (`--bounded --resume`) or with none
     * (an unbounded run) would then never read what arrived on that partition since, while
     * committing its own end for the group. Kept, the finished split is restored, moved to
     * this run's end by the split serializer, and read on (or finished at once, if the end is
     * the same).
     */
    private static final class KeepingFinished<T, SplitT extends SourceSplit> implements SourceReader<T, SplitT> {

        private final SourceReader<T, SplitT> inner;
        private final Map<String, KafkaPartitionSplit> bounded = new HashMap<>();

        KeepingFinished(SourceReader<T, SplitT> inner) {
            this.inner = inner;
        }

        @Override
        public void start() {
            inner.start();
        }

        @Override
        public InputStatus pollNext(ReaderOutput<T> output) throws Exception {
            return inner.pollNext(output);
        }

        @Override
        @SuppressWarnings("unchecked")
        public List<SplitT> snapshotState(long checkpointId) {
            List<SplitT> live = inner.snapshotState(checkpointId);
            Set<String> reading = new HashSet<>();
            for (SplitT split : live) {
                reading.add(split.splitId());
            }
            List<SplitT> all = new ArrayList<>(live);
            for (Map.Entry<String, KafkaPartitionSplit> e : bounded.entrySet()) {
                if (!reading.contains(e.getKey())) {
                    KafkaPartitionSplit done = e.getValue();
                    long end = done.getStoppingOffset().get();
                    all.add((SplitT) new KafkaPartitionSplit(done.getTopicPartition(), end, end));
                }
            }
            return all;
        }

        @Override
        public CompletableFuture<Void> isAvailable() {
            return inner.isAvailable();
        }

        @Override
        public void addSplits(List<SplitT> splits) {
            for (SplitT split : splits) {
                if (split instanceof KafkaPartitionSplit) {
                    KafkaPartitionSplit kafka = (KafkaPartitionSplit) split;
                    if (kafka.getStoppingOffset().isPresent() && kafka.getStoppingOffset().get() >= 0) {
                        bounded.put(kafka.splitId(), kafka);
                    } else {
                        bounded.remove(kafka.splitId());
                    }
                }
            }
            inner.addSplits(splits);
        }

        @Override
        public void notifyNoMoreSplits() {
            inner.notifyNoMoreSplits();
        }

        @Override
        public void handleSourceEvents(SourceEvent sourceEvent) {
            inner.handleSourceEvents(sourceEvent);
        }

        @Override
        public void pauseOrResumeSplits(Collection<String> splitsToPause, Collection<String> splitsToResume) {
            inner.pauseOrResumeSplits(splitsToPause, splitsToResume);
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) throws Exception {
            inner.notifyCheckpointComplete(checkpointId);
        }

        @Override
        public void notifyCheckpointAborted(long checkpointId) throws Exception {
            inner.notifyCheckpointAborted(checkpointId);
        }

        @Override
        public void close() throws Exception {
            inner.close();
        }
    }

    /** The wrapped enumerator, plus the bookkeeping of its pending asynchronous calls. */
    private static final class Tracking<SplitT extends SourceSplit, EnumT>
            implements SplitEnumerator<SplitT, EnumT> {

        private final SplitEnumeratorContext<SplitT> outer;
        private final CountingContext<SplitT> context;
        private final Set<Integer> told = new HashSet<>();
        private SplitEnumerator<SplitT, EnumT> inner;
        private boolean started;

        Tracking(SplitEnumeratorContext<SplitT> outer) {
            this.outer = outer;
            this.context = new CountingContext<>(outer, this::maybeSignal);
        }

        /** Runs in the coordinator thread after start, after each async handler, and per reader. */
        private void maybeSignal() {
            if (!started || context.pending > 0) {
                return;
            }
            for (Integer reader : outer.registeredReaders().keySet()) {
                if (told.add(reader)) {
                    outer.signalNoMoreSplits(reader);
                }
            }
        }

        @Override
        public void start() {
            // A bounded run replays what is already in the topic: a backlog, so Flink
            // checkpoints at execution.checkpointing.interval-during-backlog (FLIP-309), the
            // throughput's pace, not the live interval that exactly-once alerts wait on.
            outer.setIsProcessingBacklog(true);
            inner.start();
            started = true;
            maybeSignal();
        }

        @Override
        public void handleSplitRequest(int subtaskId, String requesterHostname) {
            inner.handleSplitRequest(subtaskId, requesterHostname);
        }

        @Override
        public void addSplitsBack(java.util.List<SplitT> splits, int subtaskId) {
            inner.addSplitsBack(splits, subtaskId);
            told.remove(subtaskId); // the reader failed; it is told again when it comes back
        }

        @Override
        public void addReader(int subtaskId) {
            told.remove(subtaskId);
            inner.addReader(subtaskId);
            maybeSignal();
        }

        @Override
        public EnumT snapshotState(long checkpointId) throws Exception {
            return inner.snapshotState(checkpointId);
        }

        @Override
        public void close() throws java.io.IOException {
            try {
                inner.close();
            } catch (java.io.IOException | RuntimeException e) {
                throw e;
            } catch (Exception e) {
                throw new java.io.IOException(e);
            }
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) throws Exception {
            inner.notifyCheckpointComplete(checkpointId);
        }

        @Override
        public void handleSourceEvent(int subtaskId, SourceEvent sourceEvent) {
            inner.handleSourceEvent(subtaskId, sourceEvent);
        }
    }

    /** Passes everything through, counting async calls whose handlers have not yet run. */
    private static final class CountingContext<SplitT extends SourceSplit>
            implements SplitEnumeratorContext<SplitT> {

        private final SplitEnumeratorContext<SplitT> outer;
        private final Runnable afterHandler;
        int pending;

        CountingContext(SplitEnumeratorContext<SplitT> outer, Runnable afterHandler) {
            this.outer = outer;
            this.afterHandler = afterHandler;
        }

        private <R> BiConsumer<R, Throwable> counted(BiConsumer<R, Throwable> handler) {
            pending++;
            return (result, error) -> {
                try {
                    handler.accept(result, error);
                } finally {
                    pending--;
                    afterHandler.run();
                }
            };
        }

        @Override
        public SplitEnumeratorMetricGroup metricGroup() {
            return outer.metricGroup();
        }

        @Override
        public void sendEventToSourceReader(int subtaskId, SourceEvent event) {
            outer.sendEventToSourceReader(subtaskId, event);
        }

        @Override
        public void sendEventToSourceReader(int subtaskId, int attemptNumber, SourceEvent event) {
            outer.sendEventToSourceReader(subtaskId, attemptNumber, event);
        }

        @Override
        public int currentParallelism() {
            return outer.currentParallelism();
        }

        @Override
        public Map<Integer, ReaderInfo> registeredReaders() {
            return outer.registeredReaders();
        }

        @Override
        public Map<Integer, Map<Integer, ReaderInfo>> registeredReadersOfAttempts() {
            return outer.registeredReadersOfAttempts();
        }

        @Override
        public void assignSplits(SplitsAssignment<SplitT> newSplitAssignments) {
            outer.assignSplits(newSplitAssignments);
        }

        @Override
        public void assignSplit(SplitT split, int subtask) {
            outer.assignSplit(split, subtask);
        }

        @Override
        public void signalNoMoreSplits(int subtask) {
            outer.signalNoMoreSplits(subtask);
        }

        @Override
        public <R> void callAsync(Callable<R> callable, BiConsumer<R, Throwable> handler) {
            outer.callAsync(callable, counted(handler));
        }

        @Override
        public <R> void callAsync(
                Callable<R> callable, BiConsumer<R, Throwable> handler, long initialDelay, long period) {
            // Periodic work (partition discovery) never ends; bounded sources do not use it.
            outer.callAsync(callable, handler, initialDelay, period);
        }

        @Override
        public void runInCoordinatorThread(Runnable runnable) {
            outer.runInCoordinatorThread(runnable);
        }

        @Override
        public void setIsProcessingBacklog(boolean isProcessingBacklog) {
            outer.setIsProcessingBacklog(isProcessingBacklog);
        }
    }
}
