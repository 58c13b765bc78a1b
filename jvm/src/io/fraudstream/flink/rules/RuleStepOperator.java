package io.fraudstream.flink.rules;

import java.util.List;

import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.streaming.api.datastream.BroadcastStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.operators.SimpleOperatorFactory;
import org.apache.flink.streaming.api.operators.co.CoBroadcastWithKeyedOperator;
import org.apache.flink.streaming.api.transformations.TwoInputTransformation;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;
import org.apache.flink.types.Row;

/**
 * The operator of a rule step ({@link RuleStep}): Flink's keyed broadcast operator, except that its
 * event time is always the lesser of its two inputs' watermarks, idle or not.
 *
 * <p>Both inputs carry the same orders' time: input 1 the orders themselves, input 2 the stamped
 * versions, whose watermark is those orders' watermark after the {@link Stamper}. Flink's own
 * operator leaves an idle input out of that minimum. When every partition has been quiet for the
 * idle timeout and orders come again, the two paths wake up at different moments, and the
 * Stamper's, which carries no records, can bring the new watermark first: the step would take
 * instants whose orders are still on their way on input 1, and make them {@code late} dead letters
 * (or, one step further down, leave their alerts waiting in the cooldown for a later watermark).
 * Idleness still works where it belongs: between the channels of one input, so an idle partition
 * does not hold the others back. The step never announces itself idle downstream either, so the
 * cooldown after it takes the lesser of the user's and the device's watermarks in the same way.
 */
public class RuleStepOperator extends CoBroadcastWithKeyedOperator<String, Row, Row, Row> {
    private static final long serialVersionUID = 1L;

    public RuleStepOperator(RuleStep step, List<MapStateDescriptor<?, ?>> descriptors) {
        super(step, descriptors);
    }

    @Override
    protected void processWatermarkStatus(WatermarkStatus status, int index) {
        // neither input's idleness moves this step's time; see the class comment
    }

    /** {@code orders.connect(versions).process(step, type)}, with this operator. */
    public static SingleOutputStreamOperator<Row> apply(
            KeyedStream<Row, String> orders, BroadcastStream<Row> versions, RuleStep step,
            TypeInformation<Row> type, String name) {
        StreamExecutionEnvironment env = orders.getExecutionEnvironment();
        RuleStepOperator operator = new RuleStepOperator(env.clean(step), versions.getBroadcastStateDescriptors());
        TwoInputTransformation<Row, Row, Row> transformation = new TwoInputTransformation<>(
                orders.getTransformation(), versions.getTransformation(), name,
                SimpleOperatorFactory.of(operator), type, env.getParallelism());
        transformation.setStateKeySelectors(orders.getKeySelector(), null);
        transformation.setStateKeyType(orders.getKeyType());
        env.addOperator(transformation);
        return new Stream(env, transformation);
    }

    /** SingleOutputStreamOperator's constructor is protected. */
    private static final class Stream extends SingleOutputStreamOperator<Row> {
        Stream(StreamExecutionEnvironment env, TwoInputTransformation<Row, Row, Row> transformation) {
            super(env, transformation);
        }
    }
}
