import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOFoundationEssentialsCompat
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService
import Testing

@Suite("Operator HTTP API for rule sets", .needsDatabase)
struct OperatorHTTPTests {
    static let gdDocument = (try? String(contentsOfFile: CommandRunner.repoRoot + "/Schema/rulesets/CN-GD.yaml", encoding: .utf8)) ?? ""

    static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: buffer)) as? [String: Any])
    }

    @Test("a listed path with a method it does not answer is 405 with Allow, before authentication; unknown paths stay 404")
    func methodNotAllowed() async throws {
        try await TestDatabase.withFresh { url in
            let services = try TestDatabase.makeServices(url: url)
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            try await app.test(.router) { client in
                let cases: [(String, HTTPRequest.Method, String)] = [
                    ("/healthz", .init("TRACE")!, "GET"),
                    ("/metrics", .post, "GET"),
                    ("/v1/sync/push", .get, "POST"),
                    ("/v1/provinces/CN-GD/rulesets", .delete, "GET, POST"),
                    ("/v1/provinces/CN-GD/events/0b9e4a52-6f0e-4c57-9d61-3f7f2a8c1d10/reversal", .put, "POST"),
                ]
                for (path, method, allow) in cases {
                    try await client.execute(uri: path, method: method) { response in
                        #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                        #expect(response.headers[.allow] == allow, "\(method) \(path)")
                        let body = try Self.json(response.body)
                        #expect(body["type"] as? String == "https://tanhui.invalid/problems/method_not_allowed")
                    }
                }
                try await client.execute(uri: "/v1/nowhere", method: .get) { response in
                    #expect(response.status == .notFound)
                    #expect(response.headers[.allow] == nil)
                }
            }
        }
    }

    @Test("publish, list, show, validate, simulate; 401 without a key, 403 across provinces, invalid uploads change nothing")
    func operatorFlow() async throws {
        try await TestDatabase.withFresh { url in
            let services = try TestDatabase.makeServices(url: url)
            let (_, gdKey) = try await services.operators.create(name: "gd", provinces: ["CN-GD"])
            // POST …/rulesets publishes at once only under a direct-publish policy (issue 17).
            _ = try await services.governance.setPolicy(province: "CN-GD", directPublish: true, setBy: "test")
            let (revokedOperator, revokedKey) = try await services.operators.create(name: "old", provinces: ["CN-GD"])
            _ = try await services.operators.revoke(id: revokedOperator.id)
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            let yaml: HTTPFields = [.authorization: "Bearer \(gdKey)", .contentType: "application/yaml"]

            try await app.test(.router) { client in
                // Authentication and scope.
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .get) { response in
                    #expect(response.status == .unauthorized)
                    #expect(response.headers[.contentType] == "application/problem+json")
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .get, headers: [.authorization: "Bearer \(revokedKey)"]) {
                    response in
                    #expect(response.status == .unauthorized)
                }
                try await client.execute(uri: "/v1/provinces/CN-BJ/rulesets", method: .get, headers: yaml) { response in
                    #expect(response.status == .forbidden)
                }
                let bjDocument = try String(contentsOfFile: CommandRunner.repoRoot + "/Schema/rulesets/CN-BJ.yaml", encoding: .utf8)
                try await client.execute(uri: "/v1/provinces/CN-BJ/rulesets", method: .post, headers: yaml, body: ByteBuffer(string: bjDocument)) {
                    response in
                    #expect(response.status == .forbidden)
                }
                // A CN-BJ document sent to the CN-GD route is refused too.
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: yaml, body: ByteBuffer(string: bjDocument)) {
                    response in
                    #expect(response.status == .unprocessableContent)
                    #expect(String(buffer: response.body).contains("province_mismatch"))
                }

                // An invalid upload: every problem listed with path and line, nothing stored.
                let broken = Self.gdDocument.replacingOccurrences(of: "grams_per_km: 46.7", with: "grams_per_km: -46.7")
                    .replacingOccurrences(of: "methodology:", with: "methodolgy:")
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: yaml, body: ByteBuffer(string: broken)) {
                    response in
                    #expect(response.status == .unprocessableContent)
                    let body = try Self.json(response.body)
                    let errors = try #require(body["errors"] as? [[String: Any]])
                    let paths = Set(errors.compactMap { $0["path"] as? String })
                    #expect(paths.contains("transit_trip") || paths.contains { $0.hasSuffix("modes.metro.grams_per_km") })
                    #expect(paths.contains("methodolgy"))
                    #expect(errors.allSatisfy { $0["line"] is Int })
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets/validate", method: .post, headers: yaml, body: ByteBuffer(string: broken))
                { response in
                    #expect(response.status == .unprocessableContent)
                }
                #expect(try await services.ruleSets.list().isEmpty)

                try await client.execute(
                    uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: [.authorization: "Bearer \(gdKey)", .contentType: "image/png"],
                    body: ByteBuffer(string: Self.gdDocument)
                ) { response in
                    #expect(response.status == .unsupportedMediaType)
                }
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: yaml,
                    body: ByteBuffer(string: String(repeating: "# padding\n", count: 30_000))
                ) { response in
                    #expect(response.status == .contentTooLarge)
                }

                // Validate, then publish.
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/rulesets/validate", method: .post, headers: yaml, body: ByteBuffer(string: Self.gdDocument)
                ) { response in
                    #expect(response.status == .ok)
                    let body = try Self.json(response.body)
                    #expect(body["valid"] as? Bool == true)
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: yaml, body: ByteBuffer(string: Self.gdDocument))
                { response in
                    #expect(response.status == .created)
                    let body = try Self.json(response.body)
                    #expect(body["version"] as? Int == 1)
                    #expect(body["content_sha256"] as? String == RuleSetService.contentHash(of: Self.gdDocument))
                    #expect((body["published_by"] as? String)?.hasPrefix("operator gd") == true)
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: yaml, body: ByteBuffer(string: Self.gdDocument))
                { response in
                    #expect(response.status == .unprocessableContent)
                    #expect(String(buffer: response.body).contains("version_not_increasing"))
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .get, headers: yaml) { response in
                    let list = try #require(try Self.json(response.body)["rule_sets"] as? [[String: Any]])
                    #expect(list.count == 1)
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets/1", method: .get, headers: yaml) { response in
                    #expect(response.status == .ok)
                    let body = try Self.json(response.body)
                    #expect(body["document"] as? String == Self.gdDocument)
                }
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets/7", method: .get, headers: yaml) { response in
                    #expect(response.status == .notFound)
                }

                // Simulate against the published version.
                let simulation = """
                    {"ruleset_version": 1, "events": [
                      {"id":"0192a000-0000-7000-8000-000000000001","kind":"transit_trip","province":"CN-GD","occurred_at":"2027-03-01T07:31:00+08:00","ended_at":"2027-03-01T07:52:00+08:00","data":{"mode":"metro","distance_m":12400}},
                      {"id":"0192a000-0000-7000-8000-000000000002","kind":"transit_trip","province":"CN-GD","occurred_at":"2027-03-01T09:31:00+08:00","ended_at":"2027-03-01T09:32:00+08:00","data":{"mode":"metro","distance_m":100}},
                      {"id":"0192a000-0000-7000-8000-000000000003","kind":"transit_trip","province":"CN-GD","occurred_at":"2027-03-01T10:31:00+08:00","data":{"mode":"metro","distance_m":-5}}
                    ]}
                    """
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/rulesets/simulate", method: .post,
                    headers: [.authorization: "Bearer \(gdKey)", .contentType: "application/json"], body: ByteBuffer(string: simulation)
                ) { response in
                    #expect(response.status == .ok)
                    let body = try Self.json(response.body)
                    let results = try #require(body["results"] as? [[String: Any]])
                    #expect(results.count == 3)
                    #expect((results[0]["award"] as? [String: Any])?["points"] as? Int == 57)
                    #expect(results[1]["code"] as? String == "below_minimum")
                    #expect(results[2]["code"] as? String == "invalid")
                    #expect((body["totals"] as? [String: Any])?["grams_co2e"] as? Int == 579)
                }
            }
            #expect(try await services.ruleSets.list().count == 1)
            await services.shutdown()
        }
    }

    @Test("an operator reverses an award of their province once; other provinces' keys are refused")
    func operatorReversal() async throws {
        try await LedgerFixtures.withLedger { services, url in
            let (_, gdKey) = try await services.operators.create(name: "gd", provinces: ["CN-GD"])
            let (_, bjKey) = try await services.operators.create(name: "bj", provinces: ["CN-BJ"])
            let eventID = UUID()
            _ = try await services.ledger.submit(
                [LedgerFixtures.metro(id: eventID, at: LedgerFixtures.base)], citizen: UUID(), device: "d",
                receivedAt: LedgerFixtures.base.addingTimeInterval(3600), sentAt: nil)
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            let body = ByteBuffer(string: #"{"reason": "card reported stolen"}"#)
            try await app.test(.router) { client in
                // A CN-BJ key asking about a CN-GD event in its own province learns nothing:
                // the event is looked up in CN-BJ only (it used to answer 403 naming CN-GD).
                try await client.execute(
                    uri: "/v1/provinces/CN-BJ/events/\(eventID.uuidString)/reversal", method: .post, headers: [.authorization: "Bearer \(bjKey)"],
                    body: body
                ) { response in
                    #expect(response.status == .notFound)
                    let text = String(buffer: response.body)
                    #expect(text.contains("no_award") && !text.contains("CN-GD"), "\(text)")
                }
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/events/\(eventID.uuidString)/reversal", method: .post, headers: [.authorization: "Bearer \(bjKey)"],
                    body: body
                ) { response in
                    #expect(response.status == .forbidden)
                }
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/events/\(eventID.uuidString)/reversal", method: .post, headers: [.authorization: "Bearer \(gdKey)"],
                    body: body
                ) { response in
                    #expect(response.status == .created)
                    let json = try Self.json(response.body)
                    #expect(json["points"] as? Int == -57)
                }
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/events/\(eventID.uuidString)/reversal", method: .post, headers: [.authorization: "Bearer \(gdKey)"],
                    body: body
                ) { response in
                    #expect(response.status == .conflict)
                }
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/events/\(UUID().uuidString)/reversal", method: .post, headers: [.authorization: "Bearer \(gdKey)"],
                    body: body
                ) { response in
                    #expect(response.status == .notFound)
                }
            }
            #expect(
                try await LedgerFixtures.count(url, "SELECT count(*) FROM ledger_transactions WHERE kind = 'reversal' AND actor LIKE 'operator gd%'")
                    == 1)
        }
    }
}
