import Crypto
package import Foundation

/// One numbered SQL file from `Schema/migrations/`.
package struct Migration: Sendable, Equatable {
    /// File name, e.g. `0001_rule_sets.sql`; files apply in name order.
    package let name: String
    package let sql: String

    package init(name: String, sql: String) {
        self.name = name
        self.sql = sql
    }

    /// SHA-256 of the file's bytes, recorded when applied so later edits are caught.
    package var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).hexString
    }
}

/// What `migrate --status` shows, and what `serve` checks before starting.
package struct MigrationStatus: Sendable, Equatable {
    package struct Applied: Sendable, Equatable {
        package let name: String
        package let appliedAt: Date
    }

    package var applied: [Applied]
    package var pending: [String]
    /// Applied files whose content changed since: the database no longer matches the source.
    package var changed: [String]
    /// Applied in the database but unknown to this binary (a newer binary migrated it).
    package var unknown: [String]

    package var isCurrent: Bool { pending.isEmpty && changed.isEmpty }
}

package enum MigrationError: Error, Sendable, CustomStringConvertible {
    case changedAfterApplying([String])

    package var description: String {
        switch self {
        case .changedAfterApplying(let names):
            return
                "refusing to migrate: applied migration(s) changed since they ran: \(names.joined(separator: ", ")). Restore the original files or write a new migration."
        }
    }
}

/// Applies migrations in order, each in its own transaction, under an advisory lock so that
/// two processes migrating at once take turns and the second finds nothing left to do.
package struct Migrator: Sendable {
    /// Arbitrary but fixed: `pg_advisory_lock` key reserved for Tanhui's migrations.
    static let advisoryLockKey: Int64 = 0x7461_6E68_7569  // "tanhui"

    let pool: PostgresPool
    let migrations: [Migration]

    package init(pool: PostgresPool, migrations: [Migration]) {
        self.pool = pool
        self.migrations = migrations.sorted { $0.name < $1.name }
    }

    package func status() async throws -> MigrationStatus {
        let migrations = self.migrations
        return try await pool.withConnection { connection in
            try Self.status(of: migrations, on: connection)
        }
    }

    /// Applies every pending migration; returns the names applied (empty when current).
    @discardableResult
    package func migrate() async throws -> [String] {
        let migrations = self.migrations
        return try await pool.withConnection { connection in
            try connection.query("SELECT pg_advisory_lock(\(Self.advisoryLockKey))")
            defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))") }
            try Self.ensureTable(on: connection)
            let status = try Self.status(of: migrations, on: connection)
            guard status.changed.isEmpty else { throw MigrationError.changedAfterApplying(status.changed) }
            var appliedNow: [String] = []
            for migration in migrations where status.pending.contains(migration.name) {
                try connection.query("BEGIN")
                do {
                    try connection.executeTrustedScript(migration.sql)
                    try connection.query(
                        """
                        INSERT INTO tanhui_schema_migrations (name, checksum) VALUES (\(migration.name), \(migration.checksum))
                        """)
                    try connection.query("COMMIT")
                } catch {
                    _ = try? connection.query("ROLLBACK")
                    throw error
                }
                appliedNow.append(migration.name)
            }
            return appliedNow
        }
    }

    private static func ensureTable(on connection: PostgresConnection) throws {
        try connection.query(
            """
            CREATE TABLE IF NOT EXISTS tanhui_schema_migrations (
                name text PRIMARY KEY,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
    }

    private static func status(of migrations: [Migration], on connection: PostgresConnection) throws -> MigrationStatus {
        let exists = try connection.query("SELECT to_regclass('tanhui_schema_migrations') IS NOT NULL").scalar(Bool.self)
        var recorded: [(name: String, checksum: String, appliedAt: Date)] = []
        if exists {
            for row in try connection.query("SELECT name, checksum, applied_at FROM tanhui_schema_migrations ORDER BY name").rows {
                recorded.append((try row.decode(0), try row.decode(1), try row.decode(2)))
            }
        }
        let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.name, $0) })
        let recordedNames = Set(recorded.map(\.name))
        return MigrationStatus(
            applied: recorded.map { .init(name: $0.name, appliedAt: $0.appliedAt) },
            pending: migrations.map(\.name).filter { !recordedNames.contains($0) },
            changed: recorded.compactMap { record in
                guard let migration = known[record.name], migration.checksum != record.checksum else { return nil }
                return record.name
            },
            unknown: recorded.map(\.name).filter { known[$0] == nil }
        )
    }
}
