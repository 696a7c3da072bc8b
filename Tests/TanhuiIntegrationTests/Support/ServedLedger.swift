import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// A real `tanhui serve` (as `tanhui_service`) on a fresh ledger database with the Guangdong
/// sample rule set, for tests that talk to it over HTTP only.
struct ServedLedger: Sendable {
    typealias F = LedgerFixtures
    let server: ServerProcess
    let url: String

    static func with(environment: [String: String] = [:], _ body: (ServedLedger) async throws -> Void) async throws {
        try await F.withLedger { _, url in
            let server = try await ServerProcess.start(databaseURL: url, environment: environment)
            do {
                try await body(ServedLedger(server: server, url: url))
            } catch {
                await server.stop()
                throw error
            }
            await server.stop()
        }
    }

    static func token(_ citizen: UUID, device: String = "phone") async throws -> String {
        try await TestDatabase.tokens().issue(citizen: citizen, device: device, ttl: 3600)
    }

    /// An operator key for `provinces`, created with the CLI as the owner would.
    func operatorKey(_ provinces: [String] = ["CN-GD"]) async throws -> String {
        let created = try await CommandRunner.tanhui(
            ["operator", "create", "--name", "test-operator"] + provinces.flatMap { ["--province", $0] }, databaseURL: url)
        #expect(created.exitCode == 0, "\(created.stderr)")
        let line = created.stdout.split(separator: "\n").first { $0.hasPrefix("key ") }
        return try #require(line.map { String($0.dropFirst(4)) }, "no key in: \(created.stdout)")
    }

    static func event(
        _ id: UUID = UUID(), kind: String = "waste_sorting", start: Date, minutes: Double = 30,
        data: [String: Any] = [:], evidence: String? = nil, province: String = "CN-GD"
    ) -> [String: Any] {
        var object: [String: Any] = ["id": id.uuidString, "kind": kind, "province": province, "occurred_at": F.iso(start), "data": data]
        if kind == "transit_trip" || kind == "bike_ride" { object["ended_at"] = F.iso(start.addingTimeInterval(minutes * 60)) }
        if let evidence { object["evidence"] = ["source": "sz_metro_card", "ref": evidence] }
        return object
    }

    func post(_ path: String, body: Data, token: String, headers: [String: String] = [:]) async throws -> HTTPReply {
        var all = ["Content-Type": "application/json", "Authorization": "Bearer \(token)"]
        for (key, value) in headers { all[key] = value }
        return try await HTTPClient.request("POST", server.baseURL + path, headers: all, body: body)
    }

    func push(_ events: [[String: Any]], token: String, sentAt: Date? = Date()) async throws -> HTTPReply {
        var body: [String: Any] = ["events": events]
        if let sentAt { body["sent_at"] = F.iso(sentAt) }
        return try await post("/v1/sync/push", body: try JSONSerialization.data(withJSONObject: body), token: token)
    }

    func status(_ ids: [String], token: String) async throws -> [[String: Any]] {
        let reply = try await post("/v1/sync/status", body: try JSONSerialization.data(withJSONObject: ["ids": ids]), token: token)
        #expect(reply.status == 200, "\(reply.body)")
        return try Self.results(reply)
    }

    func pull(cursor: String? = nil, limit: Int = 200, token: String) async throws -> [String: Any] {
        var query = "?limit=\(limit)"
        if let cursor { query += "&cursor=\(cursor.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? cursor)" }
        let reply = try await HTTPClient.request("GET", server.baseURL + "/v1/sync/pull" + query, headers: ["Authorization": "Bearer \(token)"])
        #expect(reply.status == 200, "\(reply.body)")
        return try Self.json(reply.body)
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text.prefix(300))")
    }

    static func results(_ reply: HTTPReply) throws -> [[String: Any]] {
        try #require(try json(reply.body)["results"] as? [[String: Any]], "\(reply.status) \(reply.body.prefix(300))")
    }

    /// Asserts an RFC 9457 problem document with this status and code.
    static func expectProblem(_ reply: HTTPReply, _ status: Int, _ code: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(reply.status == status, "expected \(status) \(code), got \(reply.status): \(reply.body.prefix(300))", sourceLocation: sourceLocation)
        #expect(reply.headers["content-type"] == "application/problem+json", sourceLocation: sourceLocation)
        let object = (try? JSONSerialization.jsonObject(with: Data(reply.body.utf8))) as? [String: Any]
        #expect(
            (object?["type"] as? String)?.hasSuffix("/problems/\(code)") == true, "problem type is not \(code): \(reply.body.prefix(300))",
            sourceLocation: sourceLocation)
        #expect(object?["status"] as? Int == status, sourceLocation: sourceLocation)
    }

    func count(_ sql: PostgresQuery) async throws -> Int { try await F.count(url, sql) }

    /// Transactions not yet in a hash chain.
    func unsealed() async throws -> Int {
        try await count(
            "SELECT count(*) FROM ledger_transactions t WHERE NOT EXISTS (SELECT 1 FROM ledger_chain c WHERE c.province = t.province AND c.transaction_id = t.transaction_id)"
        )
    }
}
