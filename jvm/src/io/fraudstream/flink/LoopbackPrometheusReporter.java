package io.fraudstream.flink;

import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.InetSocketAddress;
import java.net.URL;
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
 */
public class LoopbackPrometheusReporter implements MetricReporter {
    private static final Logger LOG = LoggerFactory.getLogger(LoopbackPrometheusReporter.class);
    private static final String PROMETHEUS = "org.apache.flink.metrics.prometheus.";

    private final MetricReporter delegate;
    private final Object server;
    private final int port;

    LoopbackPrometheusReporter(String host, Iterator<Integer> ports) {
        ClassLoader loader = LoopbackPrometheusReporter.class.getClassLoader();
        Object registry;
        Constructor<?> newServer;
        try {
            Class<?> push = Class.forName(PROMETHEUS + "PrometheusPushGatewayReporter", true, loader);
            Constructor<?> make = push.getDeclaredConstructor(URL.class, String.class, Map.class, boolean.class);
            make.setAccessible(true);
            delegate = (MetricReporter) make.newInstance(
                    new URL("http://127.0.0.1:9/never-pushed"), "fraudstream", Collections.emptyMap(), false);
            Field field = Class.forName(PROMETHEUS + "AbstractPrometheusReporter", true, loader)
                    .getDeclaredField("registry");
            field.setAccessible(true);
            registry = field.get(delegate);
            Class<?> registryClass = Class.forName("io.prometheus.client.CollectorRegistry", true, loader);
            newServer = Class.forName("io.prometheus.client.exporter.HTTPServer", true, loader)
                    .getConstructor(InetSocketAddress.class, registryClass);
        } catch (ReflectiveOperationException | java.net.MalformedURLException e) {
            throw new IllegalStateException(
                    "the fraudstream Prometheus reporter needs flink-metrics-prometheus in its plugin folder", e);
        }
        Object started = null;
        int chosen = -1;
        StringBuilder tried = new StringBuilder();
        while (started == null && ports.hasNext()) {
            int candidate = ports.next();
            try {
                started = newServer.newInstance(new InetSocketAddress(host, candidate), registry);
                chosen = candidate;
            } catch (InvocationTargetException e) {
                tried.append(tried.length() == 0 ? "" : ", ").append(candidate);
                LOG.debug("Prometheus reporter: port {} on {} is taken", candidate, host, e.getCause());
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException("could not start the Prometheus reporter's HTTP server", e);
            }
        }
        if (started == null) {
            throw new IllegalStateException(
                    "no free port for the Prometheus reporter on " + host + " (tried " + tried + ")");
        }
        server = started;
        port = chosen;
        LOG.info("Started PrometheusReporter HTTP server on {}:{}", host, port);
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

    /** {@code metrics.reporter.<name>.factory.class}; options {@code host} and {@code port} (a port or range). */
    public static class Factory implements MetricReporterFactory {
        @Override
        public MetricReporter createMetricReporter(Properties properties) {
            MetricConfig config = (MetricConfig) properties;
            String host = config.getString("host", "127.0.0.1");
            PortRange ports = new PortRange(config.getString("port", "9249"));
            return new LoopbackPrometheusReporter(host, ports.getPortsIterator());
        }
    }
}
