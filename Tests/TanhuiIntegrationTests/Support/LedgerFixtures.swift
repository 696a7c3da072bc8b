import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService

/// Builds events and a ledger-ready database for ledger and sync tests.
enum LedgerFixtures {
    static let base = Date(timeIntervalSince1970: 1_795_000_000)  // 2026-11-18T11:06:40Z

    static func ruleSetDocument(_ province: String = "CN-GD") throws -> String {
        try String(contentsOfFile: CommandRunner.repoRoot + "/Schema/rulesets/\(province).yaml", encoding: .utf8)
    }

    /// Services on a fresh, migrated database with the sample Guangdong rule set published.
    static func withLedger<Result: Sendable>(_ body: (_ services: TanhuiServices, _ url: String) async throws -> Result) async throws -> Result {
        try await TestDatabase.withFresh { url in
            let services = try TestDatabase.makeServices(url: url, environment: ["TANHUI_DB_POOL_SIZE": "12"])
            _ = try await services.ruleSets.publish(document: try ruleSetDocument(), publishedBy: "test")
            do {
                let result = try await body(services, url)
                await services.shutdown()
                return result
            } catch {
                await services.shutdown()
                throw error
            }
        }
    }

    static func wire(_ object: [String: Any]) -> EventWire {
        switch EventWire.decode(object) {
        case .success(let wire): return wire
        case .failure(let invalid): fatalError("fixture event invalid: \(invalid.issues)")
        }
    }

    static func event(_ wire: EventWire) -> SubmissionItem { .event(wire) }

    static func iso(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    static func metro(
        id: UUID = UUID(), at start: Date, minutes: Double = 30, meters: Int = 12_400, evidence: String? = nil, province: String = "CN-GD"
    ) -> SubmissionItem {
        var object: [String: Any] = [
            "id": id.uuidString, "kind": "transit_trip", "province": province,
            "occurred_at": iso(start), "ended_at": iso(start.addingTimeInterval(minutes * 60)),
            "data": ["mode": "metro", "distance_m": meters],
        ]
        if let evidence { object["evidence"] = ["source": "sz_metro_card", "ref": evidence] }
        return .event(wire(object))
    }

    static func bike(id: UUID = UUID(), at start: Date, meters: Int = 10_000, minutes: Double = 40) -> SubmissionItem {
        .event(
            wire([
                "id": id.uuidString, "kind": "bike_ride", "province": "CN-GD",
                "occurred_at": iso(start), "ended_at": iso(start.addingTimeInterval(minutes * 60)),
                "data": ["distance_m": meters],
            ]))
    }

    static func waste(id: UUID = UUID(), at start: Date) -> SubmissionItem {
        .event(wire(["id": id.uuidString, "kind": "waste_sorting", "province": "CN-GD", "occurred_at": iso(start)]))
    }

    static func count(_ url: String, _ sql: PostgresQuery) async throws -> Int {
        let pool = TestDatabase.makePool(url: url, size: 1)
        let value = try await pool.withConnection { try $0.query(sql).scalar(Int.self) }
        await pool.shutdown()
        return value
    }
}
