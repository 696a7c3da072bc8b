import Hummingbird
import Metrics
import NIOCore
import Prometheus
import TanhuiPostgres
import TanhuiService

/// Prometheus metrics: HTTP requests and latencies by route and status (Hummingbird's
/// MetricsMiddleware), events by verdict and code, and connection-pool usage.
public final class TanhuiMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    /// Routes swift-metrics (and so Hummingbird's request metrics) into this registry.
    /// Once per process: `serve` calls it; tests that build routers do not.
    public func bootstrapProcessMetrics() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// Counts one verdict.
    func record(_ verdict: Verdict) {
        registry.makeCounter(name: "tanhui_events_total", labels: [("status", verdict.status.rawValue), ("code", verdict.code ?? "none")]).increment()
    }

    /// The text exposition, with pool gauges read at scrape time.
    func render(pool: PostgresPool) -> ByteBuffer {
        let usage = pool.usage
        registry.makeGauge(name: "tanhui_db_pool_connections", labels: [("state", "open")]).set(Double(usage.open))
        registry.makeGauge(name: "tanhui_db_pool_connections", labels: [("state", "in_use")]).set(Double(usage.inUse))
        registry.makeGauge(name: "tanhui_db_pool_waiters", labels: []).set(Double(usage.waiting))
        registry.makeGauge(name: "tanhui_db_pool_maximum", labels: []).set(Double(usage.maximum))
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return ByteBuffer(bytes: bytes)
    }
}
