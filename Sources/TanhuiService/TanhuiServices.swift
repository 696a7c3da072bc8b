import Logging
import TanhuiPostgres

/// The services of one process, shared by the HTTP and CLI adapters.
public final class TanhuiServices: Sendable {
    public let config: TanhuiConfig
    public let pool: PostgresPool
    public let logger: Logger
    public let ruleSets: RuleSetService
    public let operators: OperatorService
    public let ledger: LedgerService

    public init(config: TanhuiConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        let pool = PostgresPool(configuration: config.poolConfiguration, logger: logger)
        self.pool = pool
        self.ruleSets = RuleSetService(pool: pool)
        self.operators = OperatorService(pool: pool)
        self.ledger = LedgerService(pool: pool, ruleSets: ruleSets, logger: logger, concurrentRounds: config.groupCommitRounds)
    }

    public var migrator: Migrator { SchemaMigrations.migrator(pool: pool) }

    public enum Readiness: Sendable, Equatable {
        case ready
        case notReady(String)
    }

    /// Ready means: the database answers and its schema is exactly this binary's.
    public func readiness() async -> Readiness {
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

    public func shutdown() async {
        await pool.shutdown()
    }
}
