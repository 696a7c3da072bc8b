import Foundation
package import TanhuiPostgres

/// Start-up configuration, built once from the environment and validated strictly: a bad
/// value stops the process with a message naming the variable, never a silent default.
package struct TanhuiConfig: Sendable {
    /// `DATABASE_URL`: libpq URI or conninfo string.
    package var databaseURL: String
    /// `TANHUI_DB_POOL_SIZE` (1…200, default 16): connections per process.
    package var poolSize: Int
    /// `TANHUI_DB_ACQUIRE_TIMEOUT_MS` (1…60000, default 5000): wait for a free connection.
    package var acquireTimeoutMilliseconds: Int
    /// `TANHUI_DB_CONNECT_TIMEOUT_S` (2…60, default 5).
    package var connectTimeoutSeconds: Int
    /// `TANHUI_DB_STATEMENT_TIMEOUT_MS` (100…600000, default 30000).
    package var statementTimeoutMilliseconds: Int
    /// `TANHUI_SHUTDOWN_TIMEOUT_S` (1…300, default 20): bound on draining in-flight requests.
    package var shutdownTimeoutSeconds: Int
    /// `TANHUI_MAX_BODY_BYTES` (1 KiB…64 MiB, default 4 MiB): request body limit after decompression.
    package var maximumBodyBytes: Int
    /// `TANHUI_TOKEN_SECRET`: device-token signing key, base64, ≥ 32 bytes. Required by `serve`.
    package var tokenSecret: [UInt8]?
    /// `TANHUI_CHECKPOINT_KEY`: Ed25519 private key (32 bytes, base64) for ledger checkpoints.
    package var checkpointKey: [UInt8]?
    /// `TANHUI_SEAL_INTERVAL_MS` (100…60000, default 1000): how often `serve` seals the ledger chains.
    package var sealIntervalMilliseconds: Int
    /// `TANHUI_LOG_LEVEL` (trace|debug|info|notice|warning|error|critical, default info).
    package var logLevel: String
    /// `TANHUI_GROUP_COMMIT_ROUNDS` (1…64, default 4): group-commit rounds (shared push
    /// transactions) running at once; more rounds, more parallel database work, fewer shares.
    package var groupCommitRounds: Int = 4

    package struct Invalid: Error, CustomStringConvertible, Sendable {
        package let variable: String
        package let problem: String
        package var description: String { "configuration error: \(variable) \(problem)" }
    }

    package static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Reads and validates every variable. `requireDatabase`: commands that touch the database.
    package static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment,
        requireDatabase: Bool = true
    ) throws(Invalid) -> TanhuiConfig {
        func integer(_ name: String, default value: Int, in range: ClosedRange<Int>) throws(Invalid) -> Int {
            guard let text = environment[name], !text.isEmpty else { return value }
            guard let parsed = Int(text), range.contains(parsed) else {
                throw Invalid(variable: name, problem: "must be an integer in \(range.lowerBound)…\(range.upperBound), got '\(text.prefix(40))'")
            }
            return parsed
        }
        func base64Key(_ name: String, minimumBytes: Int, exactBytes: Int? = nil) throws(Invalid) -> [UInt8]? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw Invalid(variable: name, problem: "must be base64")
            }
            if let exactBytes, data.count != exactBytes {
                throw Invalid(variable: name, problem: "must decode to exactly \(exactBytes) bytes, got \(data.count)")
            }
            guard data.count >= minimumBytes else {
                throw Invalid(variable: name, problem: "must decode to at least \(minimumBytes) bytes, got \(data.count)")
            }
            return Array(data)
        }

        let databaseURL = environment["DATABASE_URL"] ?? ""
        if requireDatabase && databaseURL.isEmpty {
            throw Invalid(
                variable: "DATABASE_URL",
                problem: "is not set (e.g. postgresql://tanhui@127.0.0.1:PORT/tanhui; Scripts/db.sh url prints this checkout's)")
        }
        let logLevel = (environment["TANHUI_LOG_LEVEL"] ?? "info").lowercased()
        guard logLevels.contains(logLevel) else {
            throw Invalid(variable: "TANHUI_LOG_LEVEL", problem: "must be one of \(logLevels.joined(separator: ", "))")
        }
        return TanhuiConfig(
            databaseURL: databaseURL,
            poolSize: try integer("TANHUI_DB_POOL_SIZE", default: 16, in: 1...200),
            acquireTimeoutMilliseconds: try integer("TANHUI_DB_ACQUIRE_TIMEOUT_MS", default: 5000, in: 1...60_000),
            connectTimeoutSeconds: try integer("TANHUI_DB_CONNECT_TIMEOUT_S", default: 5, in: 2...60),
            statementTimeoutMilliseconds: try integer("TANHUI_DB_STATEMENT_TIMEOUT_MS", default: 30_000, in: 100...600_000),
            shutdownTimeoutSeconds: try integer("TANHUI_SHUTDOWN_TIMEOUT_S", default: 20, in: 1...300),
            maximumBodyBytes: try integer("TANHUI_MAX_BODY_BYTES", default: 4 << 20, in: 1024...(64 << 20)),
            tokenSecret: try base64Key("TANHUI_TOKEN_SECRET", minimumBytes: 32),
            checkpointKey: try base64Key("TANHUI_CHECKPOINT_KEY", minimumBytes: 32, exactBytes: 32),
            sealIntervalMilliseconds: try integer("TANHUI_SEAL_INTERVAL_MS", default: 1000, in: 100...60_000),
            logLevel: logLevel,
            groupCommitRounds: try integer("TANHUI_GROUP_COMMIT_ROUNDS", default: 4, in: 1...64)
        )
    }

    /// The pool configuration derived from these settings.
    package var poolConfiguration: PostgresPool.Configuration {
        PostgresPool.Configuration(
            connection: PostgresConnectionSettings(
                url: databaseURL,
                connectTimeoutSeconds: connectTimeoutSeconds,
                statementTimeoutMilliseconds: statementTimeoutMilliseconds
            ),
            maximumConnections: poolSize,
            acquireTimeout: .milliseconds(acquireTimeoutMilliseconds)
        )
    }
}
