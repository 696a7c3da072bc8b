import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// What one citizen's device can see of another's, and the documented error codes, through a
/// real server.
@Suite("Citizen isolation and documented error codes over HTTP", .needsDatabase)
struct IsolationAndErrorCodeTests {
    typealias S = ServedLedger

    @Test("pull and status never show another citizen's entries, balances or verdicts; a foreign id is not a duplicate")
    func citizensAreIsolated() async throws {
        try await S.with { h in
            let alice = UUID()
            let bob = UUID()
            let aliceToken = try await S.token(alice)
            let bobToken = try await S.token(bob)
            let now = Date()
            let aliceEvents = (0..<3).map { S.event(start: now.addingTimeInterval(Double(-$0) * 3600 - 60)) }
            let bobEvents = (0..<2).map { S.event(start: now.addingTimeInterval(Double(-$0) * 3600 - 90)) }
            #expect(try S.results(try await h.push(aliceEvents, token: aliceToken)).allSatisfy { $0["status"] as? String == "accepted" })
            #expect(try S.results(try await h.push(bobEvents, token: bobToken)).allSatisfy { $0["status"] as? String == "accepted" })
            let aliceIDs = aliceEvents.map { ($0["id"] as! String).lowercased() }
            let bobIDs = bobEvents.map { ($0["id"] as! String).lowercased() }

            func entryIDs(_ page: [String: Any]) -> [String] {
                ((page["entries"] as? [[String: Any]]) ?? []).compactMap { ($0["event_id"] as? String)?.lowercased() }
            }
            func points(_ page: [String: Any]) -> [Int] {
                ((page["balances"] as? [[String: Any]]) ?? []).compactMap { $0["points"] as? Int }
            }
            let alicePage = try await h.pull(token: aliceToken)
            let bobPage = try await h.pull(token: bobToken)
            #expect(Set(entryIDs(alicePage)) == Set(aliceIDs))
            #expect(Set(entryIDs(bobPage)) == Set(bobIDs))
            #expect(points(alicePage) == [3])
            #expect(points(bobPage) == [2])

            // Status: the other citizen's ids read as unknown, one's own as stored.
            let aliceAsksAll = try await h.status(aliceIDs + bobIDs, token: aliceToken)
            #expect(aliceAsksAll.map { $0["status"] as? String } == ["accepted", "accepted", "accepted", "unknown", "unknown"])
            #expect(aliceAsksAll.suffix(2).allSatisfy { $0["award"] == nil })
            let bobAsksAlice = try await h.status(aliceIDs, token: bobToken)
            #expect(bobAsksAlice.allSatisfy { $0["status"] as? String == "unknown" && $0["award"] == nil })

            // Bob resending Alice's event verbatim: not a duplicate (that would leak her verdict
            // and award), an id reused by another citizen; nothing changes for either.
            let stolen = try S.results(try await h.push([aliceEvents[0]], token: bobToken))[0]
            #expect(stolen["status"] as? String == "conflict")
            #expect(stolen["code"] as? String == "id_reused")
            #expect(stolen["award"] == nil && stolen["original_status"] == nil)
            #expect(points(try await h.pull(token: bobToken)) == [2])

            // Alice's cursor in Bob's hands never shows him her entries or balances.
            let aliceCursor = try #require(alicePage["next_cursor"] as? String)
            let borrowed = try await h.pull(cursor: aliceCursor, token: bobToken)
            #expect(Set(entryIDs(borrowed)).isDisjoint(with: aliceIDs))
            #expect(points(borrowed) == [2])
        }
    }

    @Test("documented error codes through a real server: each a problem document with its status; nothing recorded")
    func documentedErrorCodes() async throws {
        try await S.with { h in
            let citizen = UUID()
            let token = try await S.token(citizen)
            let event = S.event(start: Date().addingTimeInterval(-60))
            let batch = try JSONSerialization.data(withJSONObject: ["events": [event]])

            // Sync API.
            let tooManyIDs = try await h.post(
                "/v1/sync/status", body: try JSONSerialization.data(withJSONObject: ["ids": (0...500).map { _ in UUID().uuidString }]), token: token)
            S.expectProblem(tooManyIDs, 413, "too_many_ids")
            let limits = try S.json(tooManyIDs.body)["limits"] as? [String: Any]
            #expect(limits?["max_status_ids"] as? Int == 500, "README: status takes ≤ 500 ids")
            #expect(limits?["max_events_per_push"] as? Int == 500, "README: more than 500 events get 413")
            S.expectProblem(
                try await h.post("/v1/sync/push", body: batch, token: token, headers: ["Content-Encoding": "br"]), 415, "unsupported_encoding")
            S.expectProblem(
                try await h.post("/v1/sync/push", body: batch, token: token, headers: ["Content-Type": "text/plain"]), 415, "unsupported_media_type")
            S.expectProblem(try await h.post("/v1/sync/push", body: Data(#"{"events": {}}"#.utf8), token: token), 400, "malformed_request")
            S.expectProblem(
                try await h.post(
                    "/v1/sync/push", body: try JSONSerialization.data(withJSONObject: ["events": [event], "sent_at": "2027-03-01T08:00:05"]),
                    token: token), 400, "malformed_request")
            S.expectProblem(try await h.post("/v1/sync/status", body: Data(#"{"ids": "x"}"#.utf8), token: token), 400, "malformed_request")
            S.expectProblem(try await h.post("/v1/sync/push", body: Data("[1, 2]".utf8), token: token), 400, "malformed_json")
            for limit in ["0", "1000", "ten"] {
                S.expectProblem(
                    try await HTTPClient.request(
                        "GET", h.server.baseURL + "/v1/sync/pull?limit=\(limit)", headers: ["Authorization": "Bearer \(token)"]), 400, "bad_limit")
            }
            S.expectProblem(try await HTTPClient.request("GET", h.server.baseURL + "/v1/sync/pull"), 401, "unauthorized")
            #expect(try await h.count("SELECT count(*) FROM events") == 0)

            // Operator API.
            let key = try await h.operatorKey()
            func op(
                _ method: String, _ path: String, body: Data? = nil, contentType: String = "application/json", key: String? = nil
            ) async throws -> HTTPReply {
                try await HTTPClient.request(
                    method, h.server.baseURL + path, headers: ["Content-Type": contentType, "Authorization": "Bearer \(key ?? "")"], body: body)
            }
            let bearer = key
            S.expectProblem(try await op("GET", "/v1/provinces/CN-GD/rulesets/one", key: bearer), 400, "bad_version")
            S.expectProblem(try await op("GET", "/v1/provinces/CN-GD/rulesets/7", key: bearer), 404, "not_found")
            S.expectProblem(try await op("GET", "/v1/provinces/CN-XX/rulesets", key: bearer), 404, "unknown_province")
            S.expectProblem(try await op("GET", "/v1/provinces/CN-BJ/rulesets", key: bearer), 403, "forbidden")
            S.expectProblem(try await op("GET", "/v1/provinces/CN-GD/rulesets", key: "thk_not_a_key"), 401, "unauthorized")
            S.expectProblem(
                try await op("POST", "/v1/provinces/CN-GD/rulesets", body: Data("x: 1".utf8), contentType: "image/png", key: bearer), 415,
                "unsupported_media_type")
            S.expectProblem(
                try await op(
                    "POST", "/v1/provinces/CN-GD/rulesets", body: Data(repeating: 0x61, count: 256 * 1024 + 1), contentType: "application/yaml",
                    key: bearer), 413, "too_large")
            let beijing = try LedgerFixtures.ruleSetDocument("CN-BJ")
            let mismatch = try await op(
                "POST", "/v1/provinces/CN-GD/rulesets", body: Data(beijing.utf8), contentType: "application/yaml", key: bearer)
            S.expectProblem(mismatch, 422, "invalid_rule_set")
            #expect(mismatch.body.contains("province_mismatch"))
            let unknownEvent = UUID().uuidString
            S.expectProblem(
                try await op("POST", "/v1/provinces/CN-GD/events/\(unknownEvent)/reversal", body: Data(#"{"reason": "test"}"#.utf8), key: bearer),
                404, "no_award")
            S.expectProblem(
                try await op("POST", "/v1/provinces/CN-GD/events/not-a-uuid/reversal", body: Data(#"{"reason": "test"}"#.utf8), key: bearer), 404,
                "not_found")
            S.expectProblem(
                try await op("POST", "/v1/provinces/CN-GD/events/\(unknownEvent)/reversal", body: Data("{}".utf8), key: bearer), 400, "malformed_json"
            )

            // An award, reversed once: a second reversal and an empty reason are refused.
            let award = UUID()
            #expect(
                try S.results(try await h.push([S.event(award, start: Date().addingTimeInterval(-120))], token: token))[0]["status"] as? String
                    == "accepted")
            // Empty, only white space (as the document's `\S` sees it, U+3000 included), or more
            // than 500 code points (here 501 combining marks: far fewer characters).
            for reason in ["", "\r\n\t ", "\u{3000}\u{FEFF}", "a" + String(repeating: "\u{301}", count: 500)] {
                S.expectProblem(
                    try await op(
                        "POST", "/v1/provinces/CN-GD/events/\(award.uuidString)/reversal",
                        body: try JSONSerialization.data(withJSONObject: ["reason": reason]), key: bearer),
                    400, "reason_required")
            }
            #expect(
                try await op(
                    "POST", "/v1/provinces/CN-GD/events/\(award.uuidString)/reversal", body: Data(#"{"reason": "duplicate card"}"#.utf8), key: bearer
                ).status == 201)
            S.expectProblem(
                try await op(
                    "POST", "/v1/provinces/CN-GD/events/\(award.uuidString)/reversal", body: Data(#"{"reason": "again"}"#.utf8), key: bearer), 409,
                "already_reversed")
            #expect(try await h.count("SELECT count(*) FROM ledger_transactions WHERE kind = 'reversal'") == 1)
            #expect(try await h.count("SELECT count(*) FROM rule_sets") == 1)
        }
    }
}
