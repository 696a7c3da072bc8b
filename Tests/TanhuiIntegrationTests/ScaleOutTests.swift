import Foundation
import HTTPTypes
import TanhuiPostgres
import TanhuiService
import Testing

/// API nodes are stateless: two `tanhui serve` processes on one database behave as one.
@Suite("Two API nodes on one database", .needsDatabase)
struct ScaleOutTests {
    typealias F = LedgerFixtures

    @Test("the same batches raced against two servers: each event judged once, one award each")
    func twoNodesRace() async throws {
        try await F.withLedger { _, url in
            let first = try await ServerProcess.start(databaseURL: url)
            let second = try await ServerProcess.start(databaseURL: url)
            let citizens = (0..<4).map { _ in UUID() }
            var batches: [(String, Data)] = []
            for (index, citizen) in citizens.enumerated() {
                let token = try await TestDatabase.tokens().issue(citizen: citizen, device: "phone", ttl: 3600)
                let events = (0..<10).map { slot in
                    SyncHTTPTests.event(
                        start: Date().addingTimeInterval(Double(-(index * 10 + slot + 1) * 3600)), evidence: "TXN-\(slot)-\(index % 2)")
                }
                batches.append((token, try JSONSerialization.data(withJSONObject: ["events": events, "sent_at": F.iso(Date())])))
            }
            // Every batch goes to both nodes at once, twice over.
            let replies = try await withThrowingTaskGroup(of: HTTPReply.self) { group in
                for (token, body) in batches {
                    for server in [first, second, second, first] {
                        group.addTask {
                            try await HTTPClient.request(
                                "POST", server.baseURL + "/v1/sync/push",
                                headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"], body: body)
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(replies.allSatisfy { $0.status == 200 })
            // Citizens 0/2 and 1/3 share evidence refs: each ref credited once, by whoever won.
            #expect(try await F.count(url, "SELECT count(*) FROM events") == 40)
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_transactions") == 20)
            #expect(try await F.count(url, "SELECT count(*) FROM events WHERE status = 'conflict' AND code = 'evidence_claimed'") == 20)
            #expect(
                try await F.count(url, "SELECT count(*) FROM (SELECT event_id FROM ledger_transactions GROUP BY event_id HAVING count(*) > 1) x") == 0
            )
            await first.stop()
            await second.stop()
            let audit = try await CommandRunner.tanhui(["audit"], databaseURL: url)
            #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)")
        }
    }
}
