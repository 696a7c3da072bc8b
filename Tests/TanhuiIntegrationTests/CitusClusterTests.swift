import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// What only a real Citus cluster can show (Scripts/citus.sh: a coordinator and two workers).
/// Run by the cluster suite of Scripts/test.sh, which sets TANHUI_CITUS_DATABASE_URL; the
/// single-node run leaves this suite out by name. Without a cluster every test here fails.
@Suite("Citus cluster: shards, serve and audit on the coordinator", .needsDatabase)
struct CitusClusterTests {
    typealias F = LedgerFixtures

    /// Two sample provinces whose shards Citus places on different workers (with the
    /// cluster's citus.shard_count, see Scripts/citus.sh); the placement test proves it.
    static let provinces = ["CN-GD", "CN-BJ"]

    static func requireCluster() throws {
        guard TestDatabase.citusURL != nil else {
            Issue.record("TANHUI_CITUS_DATABASE_URL is not set: run the cluster suite through Scripts/test.sh")
            throw CancellationError()
        }
    }

    /// A fresh distributed database with both provinces' rule sets and `count` waste-sorting
    /// check-ins per province from distinct citizens, pushed through the service.
    static func withTwoProvinces<Result: Sendable>(
        events count: Int, _ body: (_ services: TanhuiServices, _ url: String) async throws -> Result
    ) async throws -> Result {
        try await TestDatabase.withFresh { url in
            let services = try TestDatabase.makeServices(url: url, environment: ["TANHUI_DB_POOL_SIZE": "8"])
            do {
                for province in provinces {
                    _ = try await services.ruleSets.publish(document: try F.ruleSetDocument(province), publishedBy: "test")
                }
                let now = Date()
                for province in provinces {
                    for index in 0..<count {
                        let event = F.wire([
                            "id": UUID().uuidString, "kind": "waste_sorting", "province": province,
                            "occurred_at": F.iso(now.addingTimeInterval(Double(-(index + 1) * 60))),
                        ])
                        let verdicts = try await services.ledger.submit([.event(event)], citizen: UUID(), device: "d", receivedAt: now, sentAt: nil)
                        #expect(verdicts.map(\.status) == [.accepted], "\(province) #\(index): \(verdicts)")
                    }
                }
                let result = try await body(services, url)
                await services.shutdown()
                return result
            } catch {
                await services.shutdown()
                throw error
            }
        }
    }

    @Test("two provinces' shards sit on different workers, and each province's rows are on its worker")
    func provincesOnDifferentWorkers() async throws {
        try Self.requireCluster()
        try await Self.withTwoProvinces(events: 3) { _, url in
            let pool = TestDatabase.makePool(url: url, size: 1)
            var workerOf: [String: Int] = [:]
            let distributedTables = try await pool.withConnection { connection in
                try connection.query("SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h'").scalar(Int.self)
            }
            for province in Self.provinces {
                // Every colocated table of the province: one shard each, all on one worker.
                let placements = try await pool.withConnection { connection in
                    try connection.query(
                        """
                        SELECT s.table_name::text, s.shardid, s.nodeport
                        FROM citus_shards s
                        WHERE s.citus_table_type = 'distributed'
                          AND s.shardid = get_shard_id_for_distribution_column(s.table_name, \(province)::text)
                        ORDER BY 1
                        """
                    ).rows.map { (try $0.decode(0, as: String.self), try $0.decode(1, as: Int64.self), try $0.decode(2, as: Int.self)) }
                }
                #expect(placements.count == distributedTables, "\(province): \(placements)")
                #expect(Set(placements.map(\.2)).count == 1, "\(province) is split over workers: \(placements)")
                workerOf[province] = placements.first?.2
                // The rows really are in that worker's shard of events, not on the coordinator.
                let eventsShard = try #require(placements.first { $0.0 == "events" }?.1)
                let port = try #require(placements.first?.2)
                var worker = URLComponents(string: url)!
                worker.port = port
                let onWorker = try await F.count(
                    worker.string!, "SELECT count(*) FROM \(identifier: "events_\(eventsShard)") WHERE province = \(province)")
                #expect(onWorker == 3, "\(province): \(onWorker) rows in events_\(eventsShard) on worker \(port)")
            }
            #expect(workerOf.count == 2)
            #expect(
                workerOf[Self.provinces[0]] != workerOf[Self.provinces[1]],
                "provinces share a worker: \(workerOf); pick other sample provinces or another citus.shard_count")
            await pool.shutdown()
        }
    }

    @Test("`tanhui serve` on the coordinator: /readyz 200, `migrate --status` current, a push lands in its province's shard")
    func serveOnCoordinator() async throws {
        try Self.requireCluster()
        try await Self.withTwoProvinces(events: 1) { _, url in
            let status = try await CommandRunner.tanhui(["migrate", "--status"], databaseURL: url)
            #expect(status.exitCode == 0, "\(status.stdout)\(status.stderr)")
            #expect(status.stdout.contains("applied") && !status.stdout.contains("pending"), "\(status.stdout)")
            let server = try await ServerProcess.start(databaseURL: url)
            let ready = try await HTTPClient.request("GET", server.baseURL + "/readyz")
            #expect(ready.status == 200, "\(ready.body)")
            let token = try await TestDatabase.tokens().issue(citizen: UUID(), device: "phone", ttl: 3600)
            let event: [String: Any] = [
                "id": UUID().uuidString, "kind": "waste_sorting", "province": "CN-BJ", "occurred_at": F.iso(Date().addingTimeInterval(-600)),
            ]
            let reply = try await HTTPClient.request(
                "POST", server.baseURL + "/v1/sync/push",
                headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"],
                body: try JSONSerialization.data(withJSONObject: ["events": [event], "sent_at": F.iso(Date())]))
            #expect(reply.status == 200, "\(reply.body)")
            #expect(reply.body.contains("\"accepted\""), "\(reply.body)")
            server.signal(SIGTERM)
            #expect(await server.waitForExit(timeout: .seconds(15)) == 0, "stderr: \(server.stderr)")
            #expect(try await F.count(url, "SELECT count(*) FROM events WHERE province = 'CN-BJ'") == 2)
        }
    }

    @Test("sealed and checkpointed on the coordinator, `tanhui audit --province P` is clean for each province")
    func auditPerProvince() async throws {
        try Self.requireCluster()
        try await Self.withTwoProvinces(events: 4) { services, url in
            let sealed = try await services.ledger.seal()
            // The same four check-ins in each province: the same number of chain records each.
            #expect(sealed.keys.sorted() == ["CN-BJ", "CN-GD"] && Set(sealed.values).count == 1 && (sealed["CN-GD"] ?? 0) >= 4, "\(sealed)")
            for province in Self.provinces {
                let audit = try await CommandRunner.tanhui(["audit", "--province", province], databaseURL: url)
                #expect(audit.exitCode == 0, "\(province): \(audit.stdout)\(audit.stderr)")
            }
            let both = try await CommandRunner.tanhui(["audit"], databaseURL: url)
            #expect(both.exitCode == 0, "\(both.stdout)\(both.stderr)")
        }
    }
}
