import Hummingbird
import Metrics
import NIOCore
package import Prometheus
import TanhuiCore
import TanhuiPostgres
import TanhuiService

/// Prometheus metrics: HTTP requests and latencies by route and status (Hummingbird's
/// MetricsMiddleware), events by verdict and code, and connection-pool usage.
package final class TanhuiMetrics: Sendable {
    package let registry: PrometheusCollectorRegistry

    // MetricNameDescriptor is not Sendable, so these are built on use rather than stored.
    static var events: MetricNameDescriptor {
        MetricNameDescriptor(namespace: "tanhui", metricName: "events", unitName: "total", helpText: "Events judged, by verdict status and code")
    }
    static var poolConnections: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "tanhui", subsystem: "db_pool", metricName: "connections", unitName: "count",
            helpText: "Database connections by state (open, in_use, waiting, maximum)")
    }

    package init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    /// Routes swift-metrics (and so Hummingbird's request metrics) into this registry.
    /// Once per process: `serve` calls it; tests that build routers do not.
    package func bootstrapProcessMetrics() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// Counts one verdict.
    func record(_ verdict: Verdict) {
        registry.makeCounter(descriptor: Self.events, labels: [("status", verdict.status.rawValue), ("code", verdict.code ?? "none")]).increment()
    }

    /// The text exposition, with pool gauges read at scrape time.
    func render(pool: PostgresPool) -> ByteBuffer {
        let usage = pool.usage
        for (state, value) in [("open", usage.open), ("in_use", usage.inUse), ("waiting", usage.waiting), ("maximum", usage.maximum)] {
            registry.makeGauge(descriptor: Self.poolConnections, labels: [("state", state)]).set(Double(value))
        }
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return ByteBuffer(bytes: bytes)
    }
}
