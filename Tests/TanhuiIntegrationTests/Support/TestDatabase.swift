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
enum TestDatabase {
    static var isConfigured: Bool {
        !(ProcessInfo.processInfo.environment["TANHUI_TEST_DATABASE_URL"] ?? "").isEmpty
    }

    static var adminURL: String {
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
        try await admin.withConnection { connection in
            try connection.query("CREATE DATABASE \(identifier: name)")
        }
        let url = url(forDatabase: name)
        do {
            if migrated {
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
        try await admin.withConnection { connection in
            try connection.query("DROP DATABASE IF EXISTS \(identifier: name) WITH (FORCE)")
        }
    }

    static func makePool(url: String, size: Int = 4, acquireTimeout: Duration = .seconds(10)) -> PostgresPool {
        PostgresPool(
            configuration: .init(connection: .init(url: url, connectTimeoutSeconds: 2), maximumConnections: size, acquireTimeout: acquireTimeout),
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
