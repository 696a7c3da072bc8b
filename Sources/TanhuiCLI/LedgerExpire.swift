import ArgumentParser
import Foundation
import TanhuiCore
import TanhuiService

extension Ledger {
    /// `tanhui ledger expire`: what `serve` does continuously, on demand.
    struct Expire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Void every redemption hold whose TTL has passed (each void dated at its hold's TTL), then expire every lot due (each dated at its expires_at); `serve` does both continuously."
        )
        @Option(help: "Void holds whose TTL passed, and expire lots due, by this instant (RFC 3339 with offset, not in the future); default: now.")
        var asOf: String?
        @Option(help: "Only this province.") var province: String?

        func run() async throws {
            var instant = Date()
            if let asOf {
                guard let parsed = Timestamp.parse(asOf) else { throw ValidationError("--as-of must be an RFC 3339 timestamp with a UTC offset") }
                // Holds void at their TTL, never early: a future instant would take live holds.
                guard parsed <= Date() else { throw ValidationError("--as-of must not be in the future") }
                instant = parsed
            }
            let services = try CommandEnvironment.services(label: "tanhui.ledger")
            try await CommandEnvironment.run(services) {
                var total = 0
                while true {
                    let voided = try await services.redemptions.expireHolds(asOf: instant, province: province)
                    total += voided
                    if voided == 0 { break }
                }
                printLine("voided \(total) expired hold\(total == 1 ? "" : "s")")
                // Then lots due by the instant (one expiry transaction per lot with points left).
                var lots = 0
                var waiting = 0
                while true {
                    let round = try await services.redemptions.expireLots(asOf: instant, province: province)
                    lots += round.expired
                    waiting = round.waiting
                    if round.expired == 0 { break }
                }
                printLine(
                    "expired \(lots) lot\(lots == 1 ? "" : "s")\(waiting > 0 ? "; \(waiting) citizen\(waiting == 1 ? "" : "s") with an open hold wait" : "")"
                )
            }
        }
    }
}
