import Foundation
import Hummingbird
import HummingbirdTesting
import NIOFoundationEssentialsCompat
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService
import Testing

/// Hostile and broken input: each gets its documented 4xx (or per-event verdict) and the
/// tables change by nothing more than the verdicts the contract says are stored.
@Suite("Hostile and broken input", .needsDatabase)
struct HostileInputTests {
    typealias F = LedgerFixtures

    static func counts(_ url: String) async throws -> [Int] {
        var values: [Int] = []
        for table: PostgresQuery in [
            "SELECT count(*) FROM events", "SELECT count(*) FROM ledger_transactions", "SELECT count(*) FROM ledger_entries",
            "SELECT count(*) FROM rule_sets", "SELECT count(*) FROM citizen_accounts",
        ] {
            values.append(try await F.count(url, table))
        }
        return values
    }

    @Test("malformed, truncated, nested, huge and non-finite bodies: 4xx problem documents, nothing recorded")
    func batchLevelGarbage() async throws {
        try await F.withLedger { services, url in
            let tokens = await TestDatabase.tokens()
            let token = try await tokens.issue(citizen: UUID(), device: "hostile", ttl: 3600)
            let app = TanhuiApplication.build(services: services, tokens: tokens, host: "127.0.0.1", port: 0)
            let before = try await Self.counts(url)
            let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
            let bodies: [(String, [UInt8], HTTPResponse.Status)] = [
                ("truncated", Array(#"{"events": [{"id": "0192"#.utf8), .badRequest),
                ("not an object", Array("[1,2,3]".utf8), .badRequest),
                ("invalid UTF-8", [0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d], .badRequest),
                ("deeply nested", Array(("{\"events\": " + deep + "}").utf8), .badRequest),
                (
                    "NaN",
                    Array(
                        #"{"events": [{"id": "0192a000-0000-7000-8000-000000000001", "kind": "waste_sorting", "province": "CN-GD", "occurred_at": "2026-11-18T00:00:00Z", "data": {"count": NaN}}]}"#
                            .utf8), .badRequest
                ),
                ("events not an array", Array(#"{"events": {"id": 1}}"#.utf8), .badRequest),
                (
                    "10 000 events", Array(("{\"events\": [" + Array(repeating: "{}", count: 10_000).joined(separator: ",") + "]}").utf8),
                    .contentTooLarge
                ),
                ("oversized", Array(("{\"events\": [], \"padding\": \"" + String(repeating: "x", count: 5 << 20) + "\"}").utf8), .contentTooLarge),
            ]
            try await app.test(.router) { client in
                for (name, body, status) in bodies {
                    try await client.execute(
                        uri: "/v1/sync/push", method: .post,
                        headers: [.authorization: "Bearer \(token)", .contentType: "application/json"],
                        body: ByteBuffer(bytes: body)
                    ) { response in
                        #expect(response.status == status, "\(name): \(String(buffer: response.body).prefix(200))")
                        #expect(response.headers[.contentType] == "application/problem+json", "\(name)")
                    }
                }
            }
            #expect(try await Self.counts(url) == before)
        }
    }

    @Test("per-event garbage: invalid items are reported with paths and not stored; SQL metacharacters stored verbatim")
    func eventLevelGarbage() async throws {
        try await F.withLedger { services, url in
            let tokens = await TestDatabase.tokens()
            let citizen = UUID()
            let device = "dev'ice\"; DROP TABLE events; --"
            let token = try await tokens.issue(citizen: citizen, device: device, ttl: 3600)
            let app = TanhuiApplication.build(services: services, tokens: tokens, host: "127.0.0.1", port: 0)
            let now = Date()
            let sql = "x'); DELETE FROM ledger_entries; --\\\"\u{7f}"
            let items: [(String, String)] = [
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a1", "kind": "transit_trip", "province": "CN-GD", "occurred_at": "2026-11-18T07:31:00", "data": {"mode": "metro", "distance_m": 12400}}"#,
                    "occurred_at"
                ),
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a2", "kind": "transit_trip", "province": "CN-GD", "occurred_at": "99999-01-01T00:00:00Z", "data": {"mode": "metro", "distance_m": 12400}}"#,
                    "occurred_at"
                ),
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a3", "kind": "recycling", "province": "CN-GD", "occurred_at": "\#(F.iso(now.addingTimeInterval(-60)))", "data": {"material": "pet", "weight_g": -500}}"#,
                    "data.weight_g"
                ),
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a4", "kind": "recycling", "province": "CN-GD", "occurred_at": "\#(F.iso(now.addingTimeInterval(-60)))", "data": {"material": "pet", "weight_g": 0}}"#,
                    "data.weight_g"
                ),
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a5", "kind": "recycling", "province": "CN-GD", "occurred_at": "\#(F.iso(now.addingTimeInterval(-60)))", "data": {"material": "pet", "weight_g": 123456789012345678901234567890}}"#,
                    "data.weight_g"
                ),
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a6", "kind": "recycling", "province": "CN-GD", "occurred_at": "\#(F.iso(now.addingTimeInterval(-60)))", "data": {"material": "pet", "weight_g": 12.5}}"#,
                    "data.weight_g"
                ),
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a7", "kind": "waste_sorting", "province": "CN-GD", "occurred_at": "\#(F.iso(now.addingTimeInterval(-60)))", "colour": "green"}"#,
                    "colour"
                ),
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a8", "kind": "waste_sorting", "province": "CN-GD", "occurred_at": "\#(F.iso(now.addingTimeInterval(-60)))", "data": {"count": true}}"#,
                    "data.count"
                ),
                (#"{"id": 42, "kind": "waste_sorting"}"#, "id"),
                // Found by schemathesis: an unknown province used to reach the database and 500.
                (
                    #"{"id": "0192a000-0000-7000-8000-0000000000a9", "kind": "0", "province": "0", "occurred_at": "\#(F.iso(now.addingTimeInterval(-60)))", "data": null}"#,
                    "province"
                ),
            ]
            let metachar = try JSONSerialization.data(withJSONObject: [
                "id": "0192a000-0000-7000-8000-0000000000b1", "kind": sql, "province": "CN-GD", "occurred_at": F.iso(now.addingTimeInterval(-60)),
                "data": ["mode": sql, "material": sql], "evidence": ["source": sql, "ref": sql],
            ])
            let body = "{\"events\": [" + items.map(\.0).joined(separator: ",") + "," + String(decoding: metachar, as: UTF8.self) + "]}"
            let before = try await Self.counts(url)
            try await app.test(.router) { client in
                try await client.execute(
                    uri: "/v1/sync/push", method: .post, headers: [.authorization: "Bearer \(token)", .contentType: "application/json"],
                    body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .ok)
                    let results =
                        try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])["results"]
                        as? [[String: Any]]
                    let all = try #require(results)
                    #expect(all.count == items.count + 1)
                    for (result, item) in zip(all, items) {
                        #expect(result["code"] as? String == "invalid", "\(item.1): \(result)")
                        let paths = (result["errors"] as? [[String: Any]])?.compactMap { $0["path"] as? String } ?? []
                        #expect(paths.contains(item.1), "\(item.1) not in \(paths)")
                    }
                    #expect(all.last?["code"] as? String == "kind_not_covered")
                }
            }
            let after = try await Self.counts(url)
            #expect(after[0] == before[0] + 1)  // only the judged metacharacter event
            #expect(after[1] == before[1] && after[2] == before[2])
            #expect(
                try await F.count(url, "SELECT count(*) FROM events WHERE kind = \(sql) AND evidence_ref = \(sql) AND device_id = \(device)") == 1)
        }
    }

    @Test("hostile rule-set YAML over the operator API: alias bombs and huge documents refused, nothing stored")
    func hostileYAML() async throws {
        try await F.withLedger { services, url in
            let (_, key) = try await services.operators.create(name: "gd", provinces: ["CN-GD"])
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            let bomb = """
                a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
                b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
                c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
                d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
                province: CN-GD
                """
            let huge = "province: CN-GD\n" + String(repeating: "# filler line to make the document large\n", count: 7000)
            let before = try await Self.counts(url)
            try await app.test(.router) { client in
                // Found by schemathesis: a version beyond 32 bits used to reach the database and 500.
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets/-3087415329879", method: .get, headers: [.authorization: "Bearer \(key)"])
                { response in
                    #expect(response.status == .notFound)
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets/99999999999", method: .get, headers: [.authorization: "Bearer \(key)"]) {
                    response in
                    #expect(response.status == .notFound)
                }
                for (name, document, status) in [("alias bomb", bomb, HTTPResponse.Status.unprocessableContent), ("huge", huge, .contentTooLarge)] {
                    try await client.execute(
                        uri: "/v1/provinces/CN-GD/rulesets", method: .post,
                        headers: [.authorization: "Bearer \(key)", .contentType: "application/yaml"], body: ByteBuffer(string: document)
                    ) { response in
                        #expect(response.status == status, "\(name): \(String(buffer: response.body).prefix(300))")
                    }
                }
            }
            #expect(try await Self.counts(url) == before)
        }
    }
}
