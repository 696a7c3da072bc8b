package import Logging
package import TanhuiPostgres

/// The services of one process, shared by the HTTP and CLI adapters.
package final class TanhuiServices: Sendable {
    package let config: TanhuiConfig
    package let pool: PostgresPool
    package let logger: Logger
    package let ruleSets: RuleSetService
    package let operators: OperatorService
    package let partners: PartnerService
    package let ledger: LedgerService
    package let reports: ReportService
    package let governance: GovernanceService
    package let partnerFeeds: PartnerFeedService
    package let redemptions: RedemptionService
    package let offers: OfferService

    package init(config: TanhuiConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        let pool = PostgresPool(configuration: config.poolConfiguration, logger: logger)
        self.pool = pool
        self.ruleSets = RuleSetService(pool: pool)
        self.operators = OperatorService(pool: pool)
        self.partners = PartnerService(pool: pool)
        self.governance = GovernanceService(pool: pool, ruleSets: ruleSets)
        let ledger = LedgerService(pool: pool, ruleSets: ruleSets, logger: logger, concurrentRounds: config.groupCommitRounds)
        self.ledger = ledger
        self.partnerFeeds = PartnerFeedService(pool: pool, ledger: ledger)
        self.reports = ReportService(pool: pool)
        self.redemptions = RedemptionService(pool: pool)
        self.offers = OfferService(pool: pool)
    }

    package var migrator: Migrator { SchemaMigrations.migrator(pool: pool) }

    package enum Readiness: Sendable, Equatable {
        case ready
        case notReady(String)
    }

    /// Ready means: the database answers and its schema is exactly this binary's.
    package func readiness() async -> Readiness {
        do {
            let status = try await migrator.status()
            if !status.pending.isEmpty { return .notReady("migrations pending: \(status.pending.joined(separator: ", "))") }
            if !status.changed.isEmpty { return .notReady("applied migrations changed: \(status.changed.joined(separator: ", "))") }
            return .ready
        } catch let error as PostgresError where error.isUnavailable {
            return .notReady("database unavailable")
        } catch {
            logger.error("readiness check failed", metadata: ["error": "\(error)"])
            return .notReady("database check failed")
        }
    }

    package func shutdown() async {
        await pool.shutdown()
    }
}
