import Foundation
import Testing
import TanhuiCore
import TanhuiPostgres
import TanhuiService

/// A seeded random workload from concurrent submitters, checked against a model built from
/// the verdicts and against the ledger's own invariants.
@Suite("Ledger under a randomized concurrent workload")
struct LedgerPropertyTests {
    typealias F = LedgerFixtures

    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    }

    @Test("balances equal the sum of entries, every accepted event has one award, the model agrees", arguments: [7 as UInt64, 42])
    func randomizedWorkload(seed: UInt64) async throws {
        try await F.withLedger { services, url in
            var random = Generator(state: seed)
            let citizens = (0..<5).map { _ in UUID() }
            // Batches of 1–8 events; some reuse earlier items (retries) or shared evidence.
            var batches: [(UUID, [SubmissionItem])] = []
            var sent: [SubmissionItem] = []
            for index in 0..<40 {
                let citizen = citizens[random.below(citizens.count)]
                var items: [SubmissionItem] = []
                for slot in 0..<(1 + random.below(8)) {
                    let start = F.base.addingTimeInterval(Double(index * 10 + slot) * 3000 + Double(random.below(600)))
                    switch random.below(5) {
                    case 0 where !sent.isEmpty: items.append(sent[random.below(sent.count)])
                    case 1: items.append(F.metro(at: start, minutes: 40, meters: 2_000 + random.below(60_000), evidence: "TXN-\(random.below(30))"))
                    case 2: items.append(F.bike(at: start, meters: 1_000 + random.below(9_000)))
                    default: items.append(F.waste(at: start))
                    }
                }
                sent += items
                batches.append((citizen, items))
            }
            let receivedAt = F.base.addingTimeInterval(20 * 86_400)
            let results = try await withThrowingTaskGroup(of: [(UUID, Verdict)].self) { group in
                for lane in 0..<4 {
                    let mine = batches.enumerated().filter { $0.offset % 4 == lane }.map(\.element)
                    group.addTask {
                        var out: [(UUID, Verdict)] = []
                        for (citizen, items) in mine {
                            let verdicts = try await services.ledger.submit(items, citizen: citizen, device: "d", receivedAt: receivedAt, sentAt: nil)
                            #expect(verdicts.count == items.count)
                            out += verdicts.map { (citizen, $0) }
                        }
                        return out
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }

            // Model: points per citizen = the sum of the awards of `accepted` verdicts.
            var modelPoints: [UUID: Int64] = [:]
            var acceptedIDs = Set<String>()
            for (citizen, verdict) in results where verdict.status == .accepted {
                modelPoints[citizen, default: 0] += verdict.award!.points
                #expect(acceptedIDs.insert(verdict.id).inserted, "event \(verdict.id) accepted twice")
            }
            for citizen in citizens {
                let stored = try await services.ledger.balance(citizen: citizen, province: "CN-GD").points
                #expect(stored == modelPoints[citizen, default: 0])
            }
            // Invariants straight from the tables.
            #expect(try await F.count(url, """
                SELECT count(*) FROM citizen_accounts a WHERE balance_points <> coalesce((
                    SELECT sum(points) FROM ledger_entries e WHERE e.province = a.province AND e.account = 'citizen:' || a.citizen_id), 0)
                """) == 0)
            #expect(try await F.count(url, "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries GROUP BY 1 HAVING sum(points) <> 0 OR count(*) < 2) x") == 0)
            #expect(try await F.count(url, """
                SELECT count(*) FROM events e WHERE status = 'accepted' AND 1 <> (
                    SELECT count(*) FROM ledger_transactions t WHERE t.province = e.province AND t.event_id = e.event_id AND t.kind = 'award')
                """) == 0)
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_transactions t WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.event_id AND e.status = 'accepted')") == 0)
            #expect(try await F.count(url, "SELECT count(*) FROM cap_usage WHERE (window_key LIKE 'bike_ride/day/%' AND points > 100) OR (window_key LIKE '*/day/%' AND points > 500)") == 0)
            #expect(try await F.count(url, "SELECT count(*) FROM events WHERE status = 'accepted'") == acceptedIDs.count)
            // Per-citizen transaction numbers are gap-free.
            #expect(try await F.count(url, "SELECT count(*) FROM citizen_accounts a WHERE last_seq <> (SELECT count(*) FROM ledger_transactions t WHERE t.province = a.province AND t.citizen_id = a.citizen_id)") == 0)
        }
    }
}
