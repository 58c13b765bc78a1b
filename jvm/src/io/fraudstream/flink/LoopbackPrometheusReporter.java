package io.fraudstream.flink;

import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.InetSocketAddress;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Collections;
import java.util.Iterator;
import java.util.Map;
import java.util.Properties;

import org.apache.flink.metrics.Metric;
import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;
import org.apache.flink.util.PortRange;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Flink's Prometheus reporter, listening on one address ({@code host}, default 127.0.0.1) rather
 * than on every interface, as Flink's own {@code PrometheusReporter} does (it binds
 * {@code new InetSocketAddress(port)}, with no option for the host).
 *
 * <p>The metrics are Flink's own Prometheus reporter's: the conversion of Flink metrics to
 * Prometheus collectors is delegated to an {@code AbstractPrometheusReporter} of the
 * flink-metrics-prometheus plugin (its push-gateway variant, which opens no socket and, not
 * scheduled here, never pushes); only the HTTP server is ours. The plugin's classes are reached
 * by reflection, so this class compiles against flink-dist alone; it must be loaded from a
 * plugin folder that also holds flink-metrics-prometheus (see fraudstream.flink.reporter).
 *
 * <p>With option {@code status-file}, it writes the outcome there for the driver (one line:
 * {@code port <n>} or {@code error <why>}), as a failure here only reaches Flink's log.
 */
public class LoopbackPrometheusReporter implements MetricReporter {
    private static final Logger LOG = LoggerFactory.getLogger(LoopbackPrometheusReporter.class);
    private static final String PROMETHEUS = "org.apache.flink.metrics.prometheus.";

    private final MetricReporter delegate;
    private final Object server;
    private final int port;

    LoopbackPrometheusReporter(String host, Iterator<Integer> ports, String statusFile) {
        try {
            ClassLoader loader = LoopbackPrometheusReporter.class.getClassLoader();
            Object registry;
            Constructor<?> newServer;
            // what is being looked up, for the message when it is missing
            String member = "class " + PROMETHEUS + "PrometheusPushGatewayReporter";
            try {
                Class<?> push = Class.forName(PROMETHEUS + "PrometheusPushGatewayReporter", true, loader);
                member = push.getName() + "(URL, String, Map, boolean)";
                Constructor<?> make = push.getDeclaredConstructor(URL.class, String.class, Map.class, boolean.class);
                make.setAccessible(true);
                delegate = (MetricReporter) make.newInstance(
                        new URL("http://127.0.0.1:9/never-pushed"), "fraudstream", Collections.emptyMap(), false);
                member = "field " + PROMETHEUS + "AbstractPrometheusReporter.registry";
                Field field = Class.forName(PROMETHEUS + "AbstractPrometheusReporter", true, loader)
                        .getDeclaredField("registry");
                field.setAccessible(true);
                registry = field.get(delegate);
                member = "class io.prometheus.client.CollectorRegistry";
                Class<?> registryClass = Class.forName("io.prometheus.client.CollectorRegistry", true, loader);
                member = "constructor io.prometheus.client.exporter.HTTPServer(InetSocketAddress, CollectorRegistry)";
                newServer = Class.forName("io.prometheus.client.exporter.HTTPServer", true, loader)
                        .getConstructor(InetSocketAddress.class, registryClass);
            } catch (ReflectiveOperationException | java.net.MalformedURLException e) {
                throw new IllegalStateException("the fraudstream Prometheus reporter found no " + member
                        + " (flink-metrics-prometheus missing from its class path, or of another version): " + e, e);
            }
            Object started = null;
            int chosen = -1;
            StringBuilder tried = new StringBuilder();
            Throwable lastCause = null;
            while (started == null && ports.hasNext()) {
                int candidate = ports.next();
                try {
                    started = newServer.newInstance(new InetSocketAddress(host, candidate), registry);
                    chosen = candidate;
                } catch (InvocationTargetException e) {
                    tried.append(tried.length() == 0 ? "" : ", ").append(candidate);
                    lastCause = e.getCause();
                    LOG.debug("Prometheus reporter: port {} on {} is taken", candidate, host, e.getCause());
                } catch (ReflectiveOperationException e) {
                    throw new IllegalStateException("could not start the Prometheus reporter's HTTP server: " + e, e);
                }
            }
            if (started == null) {
                // the cause says which: in use, or an address this machine does not have
                throw new IllegalStateException("no free port for the Prometheus reporter on " + host + " (tried "
                        + tried + "; the last: " + lastCause + ")", lastCause);
            }
            server = started;
            port = chosen;
        } catch (IllegalStateException e) {
            writeStatus(statusFile, "error " + e.getMessage());
            throw e;
        }
        writeStatus(statusFile, "port " + port);
        LOG.info("Started PrometheusReporter HTTP server on {}:{}", host, port);
    }

    /** One line, written whole and renamed into place (the driver polls for it). */
    private static void writeStatus(String statusFile, String line) {
        if (statusFile == null || statusFile.isEmpty()) {
            return;
        }
        try {
            Path target = Paths.get(statusFile);
            Files.createDirectories(target.getParent());
            Path tmp = target.resolveSibling(target.getFileName() + ".tmp");
            Files.write(tmp, (line.replace('\n', ' ') + "\n").getBytes(StandardCharsets.UTF_8));
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (java.io.IOException | RuntimeException e) {
            LOG.warn("could not write the Prometheus reporter's status to {}", statusFile, e);
        }
    }

    /** The port the reporter listens on. */
    public int getPort() {
        return port;
    }

    @Override
    public void open(MetricConfig config) {
        delegate.open(config);
    }

    @Override
    public void close() {
        try {
            Method stop = server.getClass().getMethod("stop");
            stop.invoke(server);
        } catch (ReflectiveOperationException e) {
            LOG.warn("could not stop the Prometheus reporter's HTTP server", e);
        }
        delegate.close();
    }

    @Override
    public void notifyOfAddedMetric(Metric metric, String metricName, MetricGroup group) {
        delegate.notifyOfAddedMetric(metric, metricName, group);
    }

    @Override
    public void notifyOfRemovedMetric(Metric metric, String metricName, MetricGroup group) {
        delegate.notifyOfRemovedMetric(metric, metricName, group);
    }

    /** {@code metrics.reporter.<name>.factory.class}; options {@code host}, {@code port} (a port or
     * range) and {@code status-file}. */
    public static class Factory implements MetricReporterFactory {
        @Override
        public MetricReporter createMetricReporter(Properties properties) {
            MetricConfig config = (MetricConfig) properties;
            String host = config.getString("host", "127.0.0.1");
            PortRange ports = new PortRange(config.getString("port", "9249"));
            return new LoopbackPrometheusReporter(host, ports.getPortsIterator(), config.getString("status-file", ""));
        }
    }
}
