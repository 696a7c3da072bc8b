import Foundation
import Synchronization
import Testing
import TanhuiService

/// Tries to break Tanhui the way production will. The oracle is always the same: every
/// acknowledged event is present once with its verdict, nothing is credited twice, and the
/// audit passes.
@Suite("Reliability: crashes, restarts, shutdown", .serialized)
struct ReliabilityTests {
    typealias F = LedgerFixtures

    /// Acknowledged verdicts collected by client tasks.
    final class Acknowledged: Sendable {
        let verdicts = Mutex<[String: String]>([:])
        func add(_ results: [[String: Any]]) {
            verdicts.withLock { map in
                for result in results {
                    guard let id = result["id"] as? String, let status = result["status"] as? String else { continue }
                    let first = status == "duplicate" ? (result["original_status"] as? String ?? status) : status
                    if map[id.lowercased()] == nil { map[id.lowercased()] = first }
                }
            }
        }
        var all: [String: String] { verdicts.withLock { $0 } }
    }

    /// Pushes `body` until a 200 arrives (bounded); returns the statuses seen on the way.
    static func pushUntilAcknowledged(baseURL: @Sendable () -> String, token: String, body: Data, acknowledged: Acknowledged, attempts: Int = 300) async throws -> [Int] {
        var seen: [Int] = []
        for _ in 0..<attempts {
            let reply = try await HTTPClient.request("POST", baseURL() + "/v1/sync/push",
                                                     headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"], body: body, timeoutSeconds: 10)
            seen.append(reply.status)
            // A 200 whose body was cut by a crash is not an acknowledgement: retry.
            if reply.status == 200, let object = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any],
               let results = object["results"] as? [[String: Any]] {
                acknowledged.add(results)
                return seen
            }
            try await Task.sleep(for: .milliseconds(150))
        }
        Issue.record("batch never acknowledged; statuses: \(Set(seen))")
        return seen
    }

    static func batches(citizenIndex: Int, count: Int) -> [Data] {
        (0..<count).map { batch in
            let events = (0..<5).map { slot in
                SyncHTTPTests.event(kind: slot % 2 == 0 ? "waste_sorting" : "transit_trip",
                                    start: Date().addingTimeInterval(Double(-((citizenIndex * 100 + batch * 5 + slot) * 3600 + 600))),
                                    data: slot % 2 == 0 ? [:] : ["mode": "bus", "distance_m": 5_000 + slot * 100])
            }
            return try! JSONSerialization.data(withJSONObject: ["events": events, "sent_at": F.iso(Date())])
        }
    }

    static func checkOracle(url: String, acknowledged: [String: String]) async throws {
        for (id, status) in acknowledged {
            let stored = try await F.count(url, "SELECT count(*) FROM events WHERE event_id = \(UUID(uuidString: id)!) AND status = \(status)")
            #expect(stored == 1, "acknowledged \(id) as \(status) but stored \(stored) times")
        }
        #expect(try await F.count(url, "SELECT count(*) FROM (SELECT event_id FROM ledger_transactions WHERE kind = 'award' GROUP BY event_id HAVING count(*) > 1) x") == 0)
        #expect(try await F.count(url, "SELECT count(*) FROM events e WHERE status = 'accepted' AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.event_id = e.event_id)") == 0)
        let seal = try await CommandRunner.tanhui(["ledger", "seal"], databaseURL: url)
        #expect(seal.exitCode == 0, "\(seal.stderr)")
        let audit = try await CommandRunner.tanhui(["audit"], databaseURL: url)
        #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)")
    }

    @Test("server killed with SIGKILL and restarted 10 times mid-load: nothing acknowledged lost, nothing doubled")
    func serverCrashes() async throws {
        try await F.withLedger { _, url in
            let port = try ServerProcess.freePort()
            let current = Mutex(try await ServerProcess.start(databaseURL: url, port: port))
            let baseURL: @Sendable () -> String = { "http://127.0.0.1:\(port)" }
            let acknowledged = Acknowledged()
            let clients = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<3 {
                        let token = try await TestDatabase.tokens().issue(citizen: UUID(), device: "crash-\(index)", ttl: 3600)
                        group.addTask {
                            for body in Self.batches(citizenIndex: index, count: 12) {
                                _ = try await Self.pushUntilAcknowledged(baseURL: baseURL, token: token, body: body, acknowledged: acknowledged)
                                // A deliberate retry of an acknowledged batch.
                                _ = try await Self.pushUntilAcknowledged(baseURL: baseURL, token: token, body: body, acknowledged: acknowledged)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            for _ in 0..<10 {
                try await Task.sleep(for: .milliseconds(400))
                let server = current.withLock { $0 }
                server.signal(SIGKILL)
                _ = await server.waitForExit(timeout: .seconds(10))
                let restarted = try await ServerProcess.start(databaseURL: url, port: port)
                current.withLock { $0 = restarted }
            }
            try await clients.value
            await current.withLock { $0 }.stop()
            #expect(acknowledged.all.count == 3 * 12 * 5)
            try await Self.checkOracle(url: url, acknowledged: acknowledged.all)
        }
    }

    @Test("SIGTERM during load: in-flight batches finish or roll back whole; the process exits within its bound")
    func gracefulShutdown() async throws {
        try await F.withLedger { _, url in
            let server = try await ServerProcess.start(databaseURL: url, environment: ["TANHUI_SHUTDOWN_TIMEOUT_S": "10"])
            let acknowledged = Acknowledged()
            let base = server.baseURL
            let load = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<4 {
                        let token = try await TestDatabase.tokens().issue(citizen: UUID(), device: "term-\(index)", ttl: 3600)
                        group.addTask {
                            for body in Self.batches(citizenIndex: index, count: 30) {
                                let reply = try await HTTPClient.request("POST", base + "/v1/sync/push", headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"], body: body, timeoutSeconds: 15)
                                if reply.status == 200 { acknowledged.add(try SyncHTTPTests.results(reply)) } else { break }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            try await Task.sleep(for: .milliseconds(700))
            let signalled = ContinuousClock.now
            server.signal(SIGTERM)
            let status = await server.waitForExit(timeout: .seconds(20))
            #expect(status == 0, "stderr: \(server.stderr)")
            #expect(ContinuousClock.now - signalled < .seconds(15))
            try await load.value
            #expect(!acknowledged.all.isEmpty)
            // Batches are all-or-nothing: every stored event belongs to a fully stored batch of 5.
            #expect(try await F.count(url, "SELECT count(*) FROM events") % 5 == 0)
            try await Self.checkOracle(url: url, acknowledged: acknowledged.all)
        }
    }

    @Test("database stopped, started and killed mid-load: 503 with Retry-After meanwhile, never a 500; recovers by itself")
    func databaseRestarts() async throws {
        let cluster = "reliability-db"
        func db(_ command: String) async throws -> CommandResult {
            try await CommandRunner.run("/bin/bash", [CommandRunner.repoRoot + "/Scripts/db.sh", "--name", cluster, command], timeout: .seconds(120))
        }
        _ = try await db("start")
        let adminURL = try await db("url").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let database = "r_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let admin = TestDatabase.makePool(url: adminURL, size: 1)
        try await admin.withConnection { try $0.query("CREATE DATABASE \(identifier: database)") }
        await admin.shutdown()
        var components = URLComponents(string: adminURL)!
        components.path = "/" + database
        let url = components.string!
        #expect(try await CommandRunner.tanhui(["migrate"], databaseURL: url).exitCode == 0)
        #expect(try await CommandRunner.tanhui(["rules", "publish", CommandRunner.repoRoot + "/Schema/rulesets/CN-GD.yaml"], databaseURL: url).exitCode == 0)

        let server = try await ServerProcess.start(databaseURL: url, environment: ["TANHUI_DB_CONNECT_TIMEOUT_S": "2", "TANHUI_DB_ACQUIRE_TIMEOUT_MS": "2000"])
        let acknowledged = Acknowledged()
        let statuses = Mutex<[Int]>([])
        let base = server.baseURL
        let token = try await TestDatabase.tokens().issue(citizen: UUID(), device: "db-restart", ttl: 3600)
        let load = Task {
            for body in Self.batches(citizenIndex: 0, count: 40) {
                let seen = try await Self.pushUntilAcknowledged(baseURL: { base }, token: token, body: body, acknowledged: acknowledged)
                statuses.withLock { $0 += seen }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        _ = try await db("stop")
        // While it is down: a problem document with Retry-After, quickly.
        let started = ContinuousClock.now
        let down = try await HTTPClient.request("POST", base + "/v1/sync/push", headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"],
                                                body: Self.batches(citizenIndex: 9, count: 1)[0], timeoutSeconds: 20)
        #expect(down.status == 503, "\(down.body)")
        #expect(down.headers["retry-after"] != nil)
        #expect(ContinuousClock.now - started < .seconds(10))
        let ready = try await HTTPClient.request("GET", base + "/readyz")
        #expect(ready.status == 503)
        try await Task.sleep(for: .seconds(1))
        _ = try await db("start")
        try await Task.sleep(for: .milliseconds(800))
        // Once more, with a crash of the database server itself.
        _ = try await db("kill")
        try await Task.sleep(for: .seconds(1))
        var restarted = false
        for _ in 0..<10 where !restarted {
            restarted = try await db("start").exitCode == 0
            if !restarted { try await Task.sleep(for: .seconds(1)) }
        }
        #expect(restarted)
        try await load.value
        let recovered = try await HTTPClient.request("GET", base + "/readyz")
        #expect(recovered.status == 200)
        let seen = statuses.withLock { $0 }
        #expect(!seen.contains(500), "statuses seen: \(Set(seen))")
        #expect(Set(seen).isSubset(of: [200, 503, 0]), "statuses seen: \(Set(seen))")
        await server.stop()
        try await Self.checkOracle(url: url, acknowledged: acknowledged.all)
        _ = try await db("stop")
    }
}
