import Foundation
import TanhuiPostgres
import Testing

@Suite("Reconnect after the server restarts", .needsDatabase)
struct ReconnectTests {
    /// A private cluster, so stopping it cannot disturb tests running in parallel.
    static let clusterName = "reconnect-test"

    static func db(_ command: String) async throws {
        let result = try await CommandRunner.run(
            "/bin/bash", [CommandRunner.repoRoot + "/Scripts/db.sh", "--name", clusterName, command], timeout: .seconds(180))
        #expect(result.exitCode == 0, "db.sh \(command): \(result.stderr)")
    }

    @Test("pooled connections survive `db.sh stop && start`: broken ones are discarded, never reused")
    func reconnectsAfterRestart() async throws {
        try await Self.db("start")
        let url = try await CommandRunner.run("/bin/bash", [CommandRunner.repoRoot + "/Scripts/db.sh", "--name", Self.clusterName, "url"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let pool = TestDatabase.makePool(url: url, size: 3, acquireTimeout: .seconds(5))

        // Warm up several connections so the pool holds idle ones across the restart.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<3 { group.addTask { try await pool.withConnection { try $0.query("SELECT 1 FROM pg_sleep(0.1)").scalar(Int.self) } } }
            for try await value in group { #expect(value == 1) }
        }
        #expect(pool.usage.open == 3)

        // Restart between two uses: the next checkout notices and reconnects transparently.
        try await Self.db("stop")
        try await Self.db("start")
        for _ in 0..<4 {
            let value = try await pool.withConnection { try $0.query("SELECT 2").scalar(Int.self) }
            #expect(value == 2)
        }

        // While the server is down, callers get an "unavailable" error, not a hang.
        try await Self.db("stop")
        do {
            _ = try await pool.withConnection { try $0.query("SELECT 3").scalar(Int.self) }
            Issue.record("expected the database to be unavailable")
        } catch let error as PostgresError {
            #expect(error.isUnavailable, "\(error)")
        }
        #expect(pool.usage.inUse == 0)

        // And once it is back, the same pool works again.
        try await Self.db("start")
        let value = try await pool.withConnection { try $0.query("SELECT 4").scalar(Int.self) }
        #expect(value == 4)
        await pool.shutdown()
        try await Self.db("stop")
    }
}
