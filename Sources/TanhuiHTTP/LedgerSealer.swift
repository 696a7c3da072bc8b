package import Logging
import ServiceLifecycle
import TanhuiPostgres
package import TanhuiService

/// Seals committed ledger transactions into the province hash chains every `interval`, so
/// the unsealed backlog stays bounded without any award waiting on a chain lock.
package struct LedgerSealer: Service {
    let ledger: LedgerService
    let interval: Duration
    let logger: Logger

    package init(ledger: LedgerService, interval: Duration, logger: Logger) {
        self.ledger = ledger
        self.interval = interval
        self.logger = logger
    }

    /// Listed before the HTTP server in the service group, so on SIGTERM the server drains
    /// first; the sealer's wait ends at graceful shutdown, and one last round seals what the
    /// drained requests committed.
    package func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if await sealRound() { continue }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
        _ = await sealRound()
    }

    /// One round; true when a full round means more is waiting.
    private func sealRound() async -> Bool {
        do {
            let sealed = try await ledger.seal()
            let total = sealed.values.reduce(0, +)
            if total > 0 { logger.debug("sealed ledger transactions", metadata: ["ledger.sealed": "\(total)"]) }
            return sealed.values.contains(where: { $0 >= LedgerChain.maximumPerSeal })
        } catch let error as PostgresError where error.isUnavailable {
            logger.warning("sealer: database unavailable; retrying")
        } catch {
            logger.error("sealer failed", metadata: ["error": "\(error)"])
        }
        return false
    }
}
