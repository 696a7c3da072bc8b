import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService
import Testing

@Suite("migrate, serve, health and configuration", .needsDatabase)
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
        let result = try await CommandRunner.tanhui(
            ["migrate"], databaseURL: "postgresql://x@127.0.0.1:1/x", environment: ["TANHUI_DB_POOL_SIZE": "lots"])
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

    /// Sessions of `role` on `url`'s database (seen from the owner).
    static func sessions(_ url: String, role: String) async throws -> Int {
        try await LedgerFixtures.count(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = \(role)")
    }

    @Test("a server running as tanhui_service does its whole job: push, pull, status, operator publish and reversal, sealing")
    func serviceRoleDoesItsJob() async throws {
        try await ServedLedger.with { h in
            // The server's sessions are the service role's (the owner only migrated).
            try await Poll.until("the server holds a tanhui_service session") { try await Self.sessions(h.url, role: "tanhui_service") >= 1 }
            let citizen = UUID()
            let token = try await ServedLedger.token(citizen)
            let trip = UUID()
            let events = [
                ServedLedger.event(
                    trip, kind: "transit_trip", start: Date().addingTimeInterval(-7200), data: ["mode": "metro", "distance_m": 12_400],
                    evidence: "TXN-SVC"),
                ServedLedger.event(start: Date().addingTimeInterval(-600)),
                ServedLedger.event(kind: "teleport", start: Date().addingTimeInterval(-600)),
            ]
            // Appends events, awards, entries, cap usage and the citizen's account.
            let pushed = try await h.push(events, token: token)
            #expect(pushed.status == 200, "\(pushed.body.prefix(300))")
            #expect(try ServedLedger.results(pushed).map { $0["status"] as? String } == ["accepted", "accepted", "rejected"])
            #expect(try await h.count("SELECT count(*) FROM events WHERE citizen_id = \(citizen)") == 3)
            #expect(try await h.count("SELECT count(*) FROM ledger_entries") == 4)
            #expect(try await h.count("SELECT count(*) FROM cap_usage WHERE citizen_id = \(citizen)") >= 1)
            // Reads: pull and status.
            let page = try await h.pull(token: token)
            #expect((page["entries"] as? [[String: Any]])?.count == 2)
            #expect(try await h.status([trip.uuidString], token: token).first?["status"] as? String == "accepted")
            // Operator writes: publish a rule set (INSERT rule_sets) and reverse an award.
            let key = try await h.operatorKey()
            // POST …/rulesets publishes at once only under a direct-publish policy (issue 17).
            let policy = try await CommandRunner.tanhui(["rules", "policy", "--province", "CN-GD", "--direct-publish"], databaseURL: h.url)
            #expect(policy.exitCode == 0, "\(policy.stderr)")
            var document = try LedgerFixtures.ruleSetDocument()
            document = document.replacingOccurrences(of: "version: 1", with: "version: 2")
                .replacingOccurrences(of: "effective_from: 2026-01-01T00:00:00+08:00", with: "effective_from: 2099-01-01T00:00:00+08:00")
            let published = try await HTTPClient.request(
                "POST", h.server.baseURL + "/v1/provinces/CN-GD/rulesets",
                headers: ["Content-Type": "application/yaml", "Authorization": "Bearer \(key)"], body: Data(document.utf8))
            #expect(published.status == 201, "\(published.body.prefix(300))")
            let reversed = try await HTTPClient.request(
                "POST", h.server.baseURL + "/v1/provinces/CN-GD/events/\(trip.uuidString)/reversal",
                headers: ["Content-Type": "application/json", "Authorization": "Bearer \(key)"],
                body: Data(#"{"reason": "card reported stolen"}"#.utf8))
            #expect(reversed.status == 201, "\(reversed.body.prefix(300))")
            // The background sealer appends to the chain as the service role.
            try await Poll.until("the sealer seals every transaction") { try await h.unsealed() == 0 }
            #expect(try await h.count("SELECT count(*) FROM ledger_chain WHERE record = 'transaction'") == 3)
            let audit = try await CommandRunner.tanhui(["audit"], databaseURL: h.url)
            #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)")
        }
    }

    @Test("mutation: with one grant of the service role revoked, a push fails with a problem document and stores nothing")
    func missingGrantIsDetected() async throws {
        try await ServedLedger.with { h in
            let pool = TestDatabase.makePool(url: h.url, size: 1)
            try await pool.withConnection { try $0.query("REVOKE INSERT ON ledger_entries FROM tanhui_service") }
            await pool.shutdown()
            let token = try await ServedLedger.token(UUID())
            let reply = try await h.push([ServedLedger.event(start: Date().addingTimeInterval(-600))], token: token)
            #expect(reply.status >= 500, "a push without INSERT on ledger_entries answered \(reply.status)")
            #expect(reply.headers["content-type"] == "application/problem+json")
            #expect(try await h.count("SELECT count(*) FROM events") == 0)
        }
    }

    @Test("the background sealer of `serve` seals every commit, late ones in a later round, without any hand sealing")
    func backgroundSealer() async throws {
        try await ServedLedger.with(environment: ["TANHUI_SEAL_INTERVAL_MS": "200"]) { h in
            let tokens = [try await ServedLedger.token(UUID()), try await ServedLedger.token(UUID())]
            for round in 0..<3 {
                for (index, token) in tokens.enumerated() {
                    let events = (0..<4).map { slot in
                        ServedLedger.event(start: Date().addingTimeInterval(-Double((round * 8 + index * 4 + slot) * 600 + 60)))
                    }
                    #expect(try await h.push(events, token: token).status == 200)
                }
                let transactions = (round + 1) * 8
                // Transactions and events are linked separately: wait until both are (once, in CI,
                // a poll on transactions alone saw an event link still missing).
                try await Poll.until("round \(round): every transaction and event sealed") {
                    let total = try await h.count("SELECT count(*) FROM ledger_transactions")
                    let unsealed = try await h.unsealed()
                    let eventLinks = try await h.count("SELECT count(*) FROM ledger_chain WHERE record = 'event'")
                    return total == transactions && unsealed == 0 && eventLinks >= transactions
                }
                #expect(try await h.count("SELECT count(*) FROM ledger_chain WHERE record = 'transaction'") == transactions)
                #expect(
                    try await h.count("SELECT count(*) FROM ledger_chain WHERE record = 'event'") == transactions, "chain v2 seals every event too")
            }
            // The chain the sealer built is contiguous and replays: the audit checks it with no
            // tolerance for an unsealed backlog.
            // 24 transactions, 24 events, the rule sets and their publication records, numbered 1…n.
            #expect(
                try await h.count(
                    "SELECT count(*) FROM ledger_chain WHERE chain_seq NOT BETWEEN 1 AND 48 + (SELECT count(*) FROM rule_sets) + (SELECT count(*) FROM ruleset_publications)"
                ) == 0)
            let audit = try await CommandRunner.tanhui(["audit", "--seal-bound", "0"], databaseURL: h.url)
            #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)")
        }
    }
}
