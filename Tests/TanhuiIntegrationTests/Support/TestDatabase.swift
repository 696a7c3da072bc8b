import Foundation
import Logging
import TanhuiPostgres
import TanhuiService
import Testing

extension Trait where Self == ConditionTrait {
    /// On every suite of this target: without a test cluster (a plain `swift test`), the
    /// database tests are skipped with this message and the database-free targets still run.
    static var needsDatabase: Self {
        .enabled(
            if: TestDatabase.isConfigured,
            "TANHUI_TEST_DATABASE_URL is not set: database tests skipped; run Scripts/test.sh to start a test cluster and run them"
        )
    }
}

/// Gives each test its own fresh database on the test cluster started by Scripts/test.sh, so
/// tests run in parallel and never see each other's rows or depend on order.
///
/// With TANHUI_CITUS_DATABASE_URL set (the cluster suite of Scripts/test.sh), the cluster is
/// the Citus coordinator started by Scripts/citus.sh, and each fresh database is made by that
/// script on every node: citus extension, workers added, `tanhui migrate`, and
/// Schema/citus/distribute.sql — the same steps as the cluster's own database.
enum TestDatabase {
    static var citusURL: String? {
        guard let url = ProcessInfo.processInfo.environment["TANHUI_CITUS_DATABASE_URL"], !url.isEmpty else { return nil }
        return url
    }

    /// The Scripts/citus.sh cluster name behind TANHUI_CITUS_DATABASE_URL.
    static var citusName: String { ProcessInfo.processInfo.environment["TANHUI_CITUS_NAME"] ?? "dev" }

    static var isConfigured: Bool {
        !(ProcessInfo.processInfo.environment["TANHUI_TEST_DATABASE_URL"] ?? "").isEmpty
    }

    static var adminURL: String {
        if let citusURL { return citusURL }
        guard let url = ProcessInfo.processInfo.environment["TANHUI_TEST_DATABASE_URL"], !url.isEmpty else {
            fatalError("TANHUI_TEST_DATABASE_URL is not set: run the suite through Scripts/test.sh")
        }
        return url
    }

    static let logger: Logger = {
        var logger = Logger(label: "tanhui.tests")
        logger.logLevel = .warning
        return logger
    }()

    /// One small pool for CREATE/DROP DATABASE, shared by all tests of the process. Creating
    /// databases is slow on a loaded 2-core machine, so callers queue here without a statement
    /// timeout rather than fail; the suite's own bounds come from the tests' other timeouts.
    static let admin = PostgresPool(
        configuration: .init(connection: .init(url: adminURL, statementTimeoutMilliseconds: 0), maximumConnections: 2, acquireTimeout: .seconds(900)),
        logger: logger
    )

    /// The URL of database `name` on the test cluster.
    static func url(forDatabase name: String) -> String {
        var components = URLComponents(string: adminURL)!
        components.path = "/" + name
        return components.string!
    }

    /// Creates a database, optionally applies the schema, runs `body`, then drops it.
    static func withFresh<Result: Sendable>(
        migrated: Bool = true,
        _ body: (_ url: String) async throws -> Result
    ) async throws -> Result {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        if citusURL != nil {
            try await citusScript(["create-database", name] + (migrated ? [] : ["bare"]))
        } else {
            try await admin.withConnection { connection in
                try connection.query("CREATE DATABASE \(identifier: name)")
            }
        }
        let url = url(forDatabase: name)
        do {
            if migrated && citusURL == nil {
                let pool = makePool(url: url, size: 1)
                defer { Task { await pool.shutdown() } }
                try await SchemaMigrations.migrator(pool: pool).migrate()
                await pool.shutdown()
            }
            let result = try await body(url)
            try await drop(name)
            return result
        } catch {
            try? await drop(name)
            throw error
        }
    }

    private static func drop(_ name: String) async throws {
        if citusURL != nil { return try await citusScript(["drop-database", name]) }
        try await admin.withConnection { connection in
            try connection.query("DROP DATABASE IF EXISTS \(identifier: name) WITH (FORCE)")
        }
    }

    /// One database set-up at a time (Scripts/citus.sh serialises them per cluster too: two at
    /// once collide on the workers' Citus catalogs); each distributes a schema over three nodes.
    private static let citusGate = AsyncGate(permits: 1)

    private static func citusScript(_ arguments: [String]) async throws {
        try await citusGate.withPermit {
            let result = try await CommandRunner.run(
                "/bin/bash", [CommandRunner.repoRoot + "/Scripts/citus.sh", "--name", citusName] + arguments, timeout: .seconds(300))
            guard result.exitCode == 0 else {
                throw CitusSetupFailed(arguments: arguments, output: result.stdout + result.stderr)
            }
        }
    }

    struct CitusSetupFailed: Error, CustomStringConvertible {
        var arguments: [String]
        var output: String
        var description: String { "Scripts/citus.sh \(arguments.joined(separator: " ")) failed: \(output)" }
    }

    /// As a rogue superuser would: every trigger (the append-only guards, foreign keys) off
    /// for the rest of this transaction — on the workers of a Citus cluster too, which get a
    /// SET LOCAL only when citus.propagate_set_commands asks for it (plain PostgreSQL takes
    /// the citus.* setting as an unused placeholder).
    static func bypassTriggers(_ connection: PostgresConnection) throws {
        try connection.query("SET LOCAL citus.propagate_set_commands = 'local'")
        try connection.query("SET LOCAL session_replication_role = replica")
    }

    /// `statementTimeoutMilliseconds` is raised only by fixtures that bulk-load: on a loaded CI
    /// machine running every suite at once, inserting 100k rows can outlast the 30 s default.
    static func makePool(
        url: String, size: Int = 4, acquireTimeout: Duration = .seconds(10), statementTimeoutMilliseconds: Int = 30_000
    ) -> PostgresPool {
        PostgresPool(
            configuration: .init(
                connection: .init(url: url, connectTimeoutSeconds: 2, statementTimeoutMilliseconds: statementTimeoutMilliseconds),
                maximumConnections: size, acquireTimeout: acquireTimeout),
            logger: logger
        )
    }

    /// The token secret every test server and test token uses (≥ 32 bytes).
    static let tokenSecretBase64 = Data((0..<32).map { UInt8($0 * 7 % 251) }).base64EncodedString()

    static func tokens() async -> DeviceTokens {
        await DeviceTokens(secret: Array(Data(base64Encoded: tokenSecretBase64)!))
    }

    /// Services wired as `tanhui serve` wires them, against `url`.
    static func makeServices(url: String, environment: [String: String] = [:]) throws -> TanhuiServices {
        var variables = environment
        variables["DATABASE_URL"] = url
        variables["TANHUI_TOKEN_SECRET"] = tokenSecretBase64
        variables["TANHUI_DB_POOL_SIZE"] = variables["TANHUI_DB_POOL_SIZE"] ?? "4"
        return TanhuiServices(config: try TanhuiConfig.fromEnvironment(variables), logger: logger)
    }
}

/// A counting semaphore for async callers (FIFO).
actor AsyncGate {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) { available = permits }

    func withPermit<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { available += 1 } else { waiters.removeFirst().resume() }
    }
}
