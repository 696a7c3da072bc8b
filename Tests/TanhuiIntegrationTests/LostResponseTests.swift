import Foundation
import NIOFoundationEssentialsCompat
import TanhuiPostgres
import TanhuiService
import Testing

/// "Lost a response? Resend the batch: retries are safe forever." The response is lost for
/// real: the client sends the push over a raw socket, waits until the commit is visible in the
/// database, and resets the connection without reading a byte of the answer.
@Suite("A response lost after commit", .needsDatabase)
struct LostResponseTests {
    typealias F = LedgerFixtures
    typealias S = ServedLedger

    @Test("committed, response lost unread, then a full retry: every event is a duplicate of its stored verdict; nothing credited twice")
    func lostAfterCommit() async throws {
        try await S.with { h in
            let citizen = UUID()
            let token = try await S.token(citizen)
            let now = Date()
            // 18 check-ins (accepted, 10 g = 1 point each), one too old, one of an uncovered kind.
            var events = (0..<18).map { S.event(start: now.addingTimeInterval(Double(-$0) * 3600 - 60)) }
            events.append(S.event(start: now.addingTimeInterval(-40 * 86_400)))
            events.append(S.event(kind: "teleport", start: now.addingTimeInterval(-120)))
            let expected: [(status: String, code: String?, points: Int?)] =
                Array(repeating: ("accepted", nil, 1), count: 18)
                + [("rejected", "too_old", nil), ("rejected", "kind_not_covered", nil)]
            let body = try JSONSerialization.data(withJSONObject: ["events": events, "sent_at": F.iso(now)])

            let abandoned = try AbandonedRequest(
                port: h.server.port, method: "POST", path: "/v1/sync/push",
                headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"], body: body)
            // Committed: all 20 verdicts are stored (the batch is one transaction, so all at once).
            try await Poll.until("the abandoned push committed") {
                try await h.count("SELECT count(*) FROM events WHERE citizen_id = \(citizen)") == 20
            }
            abandoned.abandon()

            let retry = try await h.push(events, token: token)
            #expect(retry.status == 200, "\(retry.body.prefix(300))")
            let results = try S.results(retry)
            #expect(results.count == 20)
            for (result, want) in zip(results, expected) {
                #expect(result["status"] as? String == "duplicate", "\(result)")
                #expect(result["original_status"] as? String == want.status, "\(result)")
                #expect(result["code"] as? String == want.code, "\(result)")
                #expect((result["award"] as? [String: Any])?["points"] as? Int == want.points, "\(result)")
            }
            // Status without payloads says the same; the ledger holds each award once.
            let ids = events.map { $0["id"] as! String }
            let status = try await h.status(ids, token: token)
            #expect(status.map { $0["status"] as? String } == expected.map(\.status))
            #expect(try await h.count("SELECT count(*) FROM ledger_transactions WHERE citizen_id = \(citizen)") == 18)
            #expect(try await h.count("SELECT count(*) FROM (SELECT event_id FROM ledger_transactions GROUP BY event_id HAVING count(*) > 1) x") == 0)
            let balances = try await h.pull(token: token)["balances"] as? [[String: Any]]
            #expect(balances?.first?["points"] as? Int == 18)
        }
    }
}
