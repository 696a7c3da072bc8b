import Foundation
import Testing

@testable import TanhuiPostgres

/// Migration 0012 respelled hot CHECK constraints without bounded repetition (much cheaper in
/// PostgreSQL's regex engine); each must accept exactly the strings the old regex accepted.
@Suite("CHECK constraints without bounded repetition accept what the old regexes accepted", .needsDatabase)
struct SchemaCheckTests {
    static func literal(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }

    static let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    static let hex = String(repeating: "0123456789abcdef", count: 4)

    /// (constraint, column, the regex it had before 0012 — the account's `IN ('issuance', 'expired')` as
    /// alternatives — candidate values).
    static let cases: [(constraint: String, column: String, old: String, values: [String])] = [
        (
            "events_content_sha256_check", "content_sha256", "^[0-9a-f]{64}$",
            [
                hex, hex.uppercased(), String(hex.dropLast()), hex + "0", hex.dropLast() + "\n", String(hex.dropLast(2)) + "é", "",
                String(hex.dropLast()) + "g", " " + String(hex.dropLast()),
            ]
        ),
        ("events_district_check", "district", "^[0-9]{6}$", ["440305", "44030", "4403055", "44030a", "４４０３０５", "44030\n", "", "-44030"]),
        (
            "ledger_entries_account_check", "account", "^(citizen|held|partner):[0-9a-f-]{36}$|^issuance$|^expired$",
            [
                "citizen:" + uuid, "held:" + uuid, "partner:" + uuid, "citizen:" + uuid + "0", "citizen:" + uuid.dropLast(),
                "citizen:" + uuid.uppercased(), "citizen::" + uuid.dropLast(), "Citizen:" + uuid, "citizenx:" + uuid,
                "citizen:" + String(repeating: "-", count: 36), "citizen:" + uuid + "\n", "citizen:" + uuid.dropLast() + ":", "held:",
                "issuance", "expired", "issuance ", "citizen:" + uuid.dropLast() + "é",
            ]
        ),
        ("ledger_chain_previous_hash_check", "previous_hash", "^[0-9a-f]{64}$", [hex, hex.uppercased(), String(hex.dropLast()), hex + "a", ""]),
        ("ledger_chain_hash_check", "hash", "^[0-9a-f]{64}$", [hex, String(hex.dropLast()) + "\n", String(hex.dropLast()) + "G"]),
        (
            "ledger_chain_record_kind", "record", "^[a-z][a-z_]{0,39}$",
            [
                "event", "a", String(repeating: "a", count: 40), String(repeating: "a", count: 41), "_a", "A", "event\n", "ev-ent",
                "", "partner_link", "rule_set", "é", "a_",
            ]
        ),
    ]

    @Test("each rewritten constraint's own expression agrees with the old regex on every candidate (a NULL result passes, as in a CHECK)")
    func rewrittenChecksAgree() async throws {
        try await TestDatabase.withFresh { url in
            let pool = TestDatabase.makePool(url: url, size: 1)
            defer { Task { await pool.shutdown() } }
            try await pool.withConnection { connection in
                for item in Self.cases {
                    let expression: String = try connection.query(
                        "SELECT pg_get_expr(conbin, conrelid) FROM pg_constraint WHERE conname = \(item.constraint)"
                    ).scalar(String.self)
                    #expect(!expression.contains("{"), "\(item.constraint) still uses bounded repetition: \(expression)")
                    for value in item.values {
                        // The installed expression over one value named like its column (test
                        // constants as SQL literals: the expression is catalog text, not a value).
                        let row = try connection.query(
                            PostgresQuery(
                                stringLiteral:
                                    "SELECT coalesce((\(expression)), true), coalesce(\(Self.literal(value)) ~ \(Self.literal(item.old)), true) FROM (SELECT \(Self.literal(value))::text AS \(item.column)) v"
                            )
                        ).rows[0]
                        let now: Bool = try row.decode(0)
                        let before: Bool = try row.decode(1)
                        #expect(now == before, "\(item.constraint) on \(value.debugDescription): now \(now), before \(before)")
                    }
                }
            }
        }
    }
}
