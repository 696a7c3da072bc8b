package import Logging
import Prometheus
import ServiceLifecycle
import TanhuiPostgres
package import TanhuiService

/// Folds the sealed chains into the report rollup every `interval` (a background task of
/// `serve`, beside the sealer; never part of a push), and publishes the rolled-up grams per
/// province and kind as `tanhui_grams_co2e_total`.
package struct ReportRoller: Service {
    let reports: ReportService
    let metrics: TanhuiMetrics
    let interval: Duration
    let logger: Logger

    package init(reports: ReportService, metrics: TanhuiMetrics, interval: Duration, logger: Logger) {
        self.reports = reports
        self.metrics = metrics
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await round()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    private func round() async {
        do {
            // Without waiting: another server advancing a province is doing the same work.
            let folded = try await reports.advanceAll(wait: false)
            for province in folded.keys.sorted() {
                for (kind, grams) in try await reports.gramsByKind(province: province) {
                    metrics.setGramsCO2e(province: province, kind: kind, grams: grams)
                }
            }
        } catch let error as PostgresError where error.isUnavailable {
            logger.warning("report rollup: database unavailable; retrying")
        } catch {
            logger.error("report rollup failed", metadata: ["error": "\(error)"])
        }
    }
}

extension TanhuiMetrics {
    static var gramsCO2e: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "tanhui", metricName: "grams_co2e", unitName: "total",
            helpText: "Net grams CO2e credited (awards less reversals) per province and kind, from the report rollup of the sealed chain")
    }

    /// A gauge, not a counter: reversals lower it, and every server reports the shared rollup.
    func setGramsCO2e(province: String, kind: String, grams: Int64) {
        registry.makeGauge(descriptor: Self.gramsCO2e, labels: [("province", province), ("kind", kind)]).set(Double(grams))
    }
}
