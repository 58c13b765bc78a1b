import java.lang.reflect.Method;

/**
 * Time per row of the SQL engine's window aggregates on one device shared by many users (the
 * device-sharing rule's DISTINCT_LATEST) and one user in many cities (the geo rule's
 * LATEST_BEFORE): each row is accumulated, then the row's result is read, as an OVER window
 * does. Runs against whichever build of the helper jar is on the class path (reflection: the
 * aggregates took two arguments before their results were capped, three since).
 *
 *   L=.venv/lib/python3.11/site-packages/pyflink/lib; CP="jvm/lib/flink/fraudstream-flink.jar:$(ls $L/flink-dist-*.jar):$(ls $L/flink-table-api-java-uber-*.jar)"
 *   java -cp "$CP" benchmarks/DetailAggregates.java 5000 500
 */
public class DetailAggregates {
    public static void main(String[] args) throws Exception {
        int users = args.length > 0 ? Integer.parseInt(args[0]) : 5000;
        int cities = args.length > 1 ? Integer.parseInt(args[1]) : 500;
        for (int round = 0; round < 5; round++) { // the first rounds warm the JIT up
            run("DistinctLatest", users, "u", round == 4);
            run("OthersBefore", cities, "City", round == 4);
        }
    }

    static void run(String name, int rows, String prefix, boolean print) throws Exception {
        Class<?> cls = Class.forName("io.fraudstream.flink." + name);
        Object fn = cls.getDeclaredConstructor().newInstance();
        Object acc = cls.getMethod("createAccumulator").invoke(fn);
        Method accumulate = null;
        for (Method m : cls.getMethods()) {
            if (m.getName().equals("accumulate")) {
                accumulate = m;
            }
        }
        Method getValue = cls.getMethod("getValue", acc.getClass());
        boolean capped = accumulate.getParameterCount() == 4;
        String[] values = new String[rows];
        for (int i = 0; i < rows; i++) {
            values[i] = String.format("%s%06d", prefix, i) + "x".repeat(243); // 250-character ids
        }
        long sink = 0;
        long start = System.nanoTime();
        for (int i = 0; i < rows; i++) {
            String value = values[i];
            if (capped) {
                accumulate.invoke(fn, acc, value, (long) i * 60, 20);
            } else {
                accumulate.invoke(fn, acc, value, (long) i * 60);
            }
            sink += getValue.invoke(fn, acc).hashCode() & 1;
        }
        double us = (System.nanoTime() - start) / 1e3 / rows;
        if (print) {
            System.out.printf("%s: %d rows, %.1f us per row (last rows of the window: %s)%n",
                    name, rows, us, capped ? "bounded" : "the whole window copied");
        }
        if (sink < 0) {
            System.out.println();
        }
    }
}
