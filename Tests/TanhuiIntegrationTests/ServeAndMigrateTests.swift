import Foundation
import HummingbirdTesting
import Testing
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService

@Suite("migrate, serve, health and configuration")
struct ServeAndMigrateTests {
    @Test("the embedded migrations equal the files in Schema/migrations (Scripts/gen-migrations.sh ran)")
    func embeddedMigrationsAreCurrent() throws {
        let directory = CommandRunner.repoRoot + "/Schema/migrations"
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(SchemaMigrations.all.map(\.name) == names)
        for migration in SchemaMigrations.all {
            let text = try String(contentsOfFile: directory + "/" + migration.name, encoding: .utf8)
            #expect(migration.sql == text, "\(migration.name) is stale: run Scripts/gen-migrations.sh")
        }
    }

    @Test("two `tanhui migrate` processes at once: both succeed, each migration applied once")
    func concurrentMigrateIsSafe() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            async let first = CommandRunner.tanhui(["migrate"], databaseURL: url)
            async let second = CommandRunner.tanhui(["migrate"], databaseURL: url)
            let results = try await [first, second]
            for result in results { #expect(result.exitCode == 0, "\(result.stderr)") }
            let applied = results.map(\.stdout).joined().components(separatedBy: "applied  ").count - 1
            #expect(applied == SchemaMigrations.all.count)
            let pool = TestDatabase.makePool(url: url, size: 1)
            let rows = try await pool.withConnection { try $0.query("SELECT count(*) FROM tanhui_schema_migrations").scalar(Int.self) }
            #expect(rows == SchemaMigrations.all.count)
            await pool.shutdown()

            let status = try await CommandRunner.tanhui(["migrate", "--status"], databaseURL: url)
            #expect(status.exitCode == 0)
            #expect(status.stdout.contains("applied  0001_rule_sets.sql"))
        }
    }

    @Test("`tanhui serve` refuses to start while migrations are pending, naming them")
    func serveRefusesPendingMigrations() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let status = try await CommandRunner.tanhui(["migrate", "--status"], databaseURL: url)
            #expect(status.exitCode == 1)
            #expect(status.stdout.contains("pending  0001_rule_sets.sql"))
            let result = try await CommandRunner.tanhui(["serve", "--port", "0"], databaseURL: url, timeout: .seconds(30))
            #expect(result.exitCode == 2)
            #expect(result.stderr.contains("migrations pending: 0001_rule_sets.sql"))
        }
    }

    @Test("a bad setting stops the process with a message naming the variable")
    func badConfigurationNamesVariable() async throws {
        let result = try await CommandRunner.tanhui(["migrate"], databaseURL: "postgresql://x@127.0.0.1:1/x", environment: ["TANHUI_DB_POOL_SIZE": "lots"])
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("TANHUI_DB_POOL_SIZE must be an integer"))
        let missing = try await CommandRunner.tanhui(["migrate"], databaseURL: nil, environment: ["DATABASE_URL": ""])
        #expect(missing.exitCode == 2)
        #expect(missing.stderr.contains("DATABASE_URL is not set"))
        #expect(throws: TanhuiConfig.Invalid.self) {
            try TanhuiConfig.fromEnvironment(["DATABASE_URL": "x", "TANHUI_TOKEN_SECRET": "c2hvcnQ="])
        }
        #expect(throws: TanhuiConfig.Invalid.self) {
            try TanhuiConfig.fromEnvironment(["DATABASE_URL": "x", "TANHUI_LOG_LEVEL": "loud"])
        }
    }

    @Test("an unreachable database makes `migrate` exit 2 with a clear message")
    func unreachableDatabase() async throws {
        let result = try await CommandRunner.tanhui(["migrate"], databaseURL: "postgresql://tanhui@127.0.0.1:1/tanhui")
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("connect"))
    }

    @Test("/readyz is 503 with pending migrations and 200 once migrated; /healthz always 200")
    func readiness() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let services = try TestDatabase.makeServices(url: url)
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            try await app.test(.router) { client in
                try await client.execute(uri: "/healthz", method: .get) { response in
                    #expect(response.status == .ok)
                }
                try await client.execute(uri: "/readyz", method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.contentType] == "application/problem+json")
                    #expect(response.headers[.retryAfter] == "2")
                    #expect(String(buffer: response.body).contains("migrations pending"))
                }
                try await services.migrator.migrate()
                try await client.execute(uri: "/readyz", method: .get) { response in
                    #expect(response.status == .ok)
                }
            }
            await services.shutdown()
        }
    }

    @Test("a real `tanhui serve` answers /readyz over loopback and exits cleanly on SIGTERM")
    func realServerLifecycle() async throws {
        try await TestDatabase.withFresh { url in
            let server = try await ServerProcess.start(databaseURL: url)
            let ready = try await HTTPClient.request("GET", server.baseURL + "/readyz")
            #expect(ready.status == 200)
            #expect(ready.body.contains("ready"))
            let missing = try await HTTPClient.request("GET", server.baseURL + "/no/such/route")
            #expect(missing.status == 404)
            #expect(missing.headers["content-type"] == "application/problem+json")
            server.signal(SIGTERM)
            let exit = await server.waitForExit(timeout: .seconds(15))
            #expect(exit == 0, "stderr: \(server.stderr)")
        }
    }
}
