package import Logging
import ServiceLifecycle
import TanhuiPostgres
package import TanhuiService

/// Voids holds whose TTL has passed, every `interval`, so an uncaptured hold never keeps a
/// citizen's points (each void is dated at the hold's TTL, whenever the round runs); then
/// expires the lots that are due (each expiry dated at its lot's expires_at).
package struct RedemptionExpirer: Service {
    let redemptions: RedemptionService
    let interval: Duration
    let logger: Logger

    package init(redemptions: RedemptionService, interval: Duration, logger: Logger) {
        self.redemptions = redemptions
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let voided = try await redemptions.expireHolds()
                if voided > 0 { logger.info("voided expired holds", metadata: ["redemption.voided": "\(voided)"]) }
                // Then lots (migration 0010): a void may have released lots that waited on it.
                let lots = try await redemptions.expireLots()
                if lots.expired > 0 { logger.info("expired lots", metadata: ["lots.expired": "\(lots.expired)"]) }
            } catch let error as PostgresError where error.isUnavailable {
                logger.warning("hold expiry: database unavailable; retrying")
            } catch {
                logger.error("hold expiry failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
