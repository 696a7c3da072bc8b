import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// Spending points against a real `tanhui serve`: redeem tokens, partner holds, capture,
/// void, refunds, hold expiry, offers, and the audit over all of it.
@Suite("Redemption over HTTP", .needsDatabase)
struct RedemptionHTTPTests {
    typealias F = LedgerFixtures
    typealias S = ServedLedger

    /// A citizen with points, a device token, and redeem partners created with the CLI.
    struct Scene {
        let ledger: ServedLedger
        let citizen: UUID
        let deviceToken: String
        let partnerKeys: [String]
        let partnerIDs: [String]
        let points: Int64

        func redeemToken(offer: String? = nil) async throws -> String {
            var body: [String: Any] = ["province": "CN-GD"]
            if let offer { body["offer_id"] = offer }
            let reply = try await ledger.post("/v1/sync/redeem-tokens", body: try JSONSerialization.data(withJSONObject: body), token: deviceToken)
            #expect(reply.status == 201, "\(reply.body)")
            let object = try S.json(reply.body)
            return try #require(object["token"] as? String)
        }

        func partner(_ path: String, _ body: [String: Any] = [:], partner: Int = 0) async throws -> HTTPReply {
            try await ledger.post(
                "/v1/provinces/CN-GD/redemptions" + path, body: try JSONSerialization.data(withJSONObject: body), token: partnerKeys[partner])
        }

        func hold(
            id: UUID = UUID(), token: String, points: Int64? = nil, offer: String? = nil, holdSeconds: Int? = nil, partner: Int = 0
        )
            async throws -> HTTPReply
        {
            var body: [String: Any] = ["id": id.uuidString, "redeem_token": token, "partner_ref": "till-7"]
            if let points { body["points"] = points }
            if let offer { body["offer_id"] = offer }
            if let holdSeconds { body["hold_seconds"] = holdSeconds }
            return try await self.partner("", body, partner: partner)
        }

        func balances() async throws -> [String: Any] {
            let page = try await ledger.pull(token: deviceToken)
            return try #require((page["balances"] as? [[String: Any]])?.first { $0["province"] as? String == "CN-GD" })
        }
    }

    static func withScene(partners: Int = 1, trips: Int = 2, _ body: (Scene) async throws -> Void) async throws {
        try await S.with { ledger in
            let citizen = UUID()
            let token = try await S.token(citizen)
            let now = Date()
            let pushed = try await ledger.push(
                (0..<trips).map {
                    S.event(
                        kind: "transit_trip", start: now.addingTimeInterval(Double(-3600 * ($0 + 1))), data: ["mode": "metro", "distance_m": 12_400])
                }, token: token)
            #expect(pushed.status == 200, "\(pushed.body)")
            let points = try #require(
                ((try S.json(pushed.body)["balances"] as? [[String: Any]])?.first?["points"] as? NSNumber)?.int64Value)
            #expect(points > 0)
            var keys: [String] = []
            var ids: [String] = []
            for index in 0..<partners {
                let created = try await CommandRunner.tanhui(
                    ["partner", "create", "--province", "CN-GD", "--name", "Shop \(index)", "--scope", "redeem"], databaseURL: ledger.url)
                #expect(created.exitCode == 0, "\(created.stderr)")
                let lines = created.stdout.split(separator: "\n").map(String.init)
                keys.append(try #require(lines.last?.split(separator: " ").last.map(String.init)))
                ids.append(try #require(lines.first?.split(separator: " ").dropFirst().first.map(String.init)))
            }
            try await body(Scene(ledger: ledger, citizen: citizen, deviceToken: token, partnerKeys: keys, partnerIDs: ids, points: points))
        }
    }

    static func number(_ object: [String: Any], _ key: String) -> Int64? { (object[key] as? NSNumber)?.int64Value }

    /// Seals, then runs `tanhui audit --json`; expects it clean.
    static func expectCleanAudit(_ url: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let sealed = try await CommandRunner.tanhui(["ledger", "seal"], databaseURL: url)
        #expect(sealed.exitCode == 0, "\(sealed.stderr)", sourceLocation: sourceLocation)
        let (result, report) = try await AuditTests.audit(url)
        #expect(result.exitCode == 0 && report["ok"] as? Bool == true, "\(result.stdout.prefix(3000))", sourceLocation: sourceLocation)
    }

    @Test("hold, capture, refunds: balances move exactly; replays answer the same; reused ids are 409; a token works once; the audit is clean")
    func wholeFlow() async throws {
        try await Self.withScene { s in
            let token = try await s.redeemToken()
            let id = UUID()
            let spend = s.points / 2
            let held = try await s.hold(id: id, token: token, points: spend)
            #expect(held.status == 201, "\(held.body)")
            let heldBody = try S.json(held.body)
            #expect(heldBody["state"] as? String == "held" && Self.number(heldBody, "points") == spend)
            #expect(heldBody["expires_at"] is String)
            var balances = try await s.balances()
            #expect(Self.number(balances, "available") == s.points - spend && Self.number(balances, "held") == spend)

            // Same id, same request: the same answer (the token is not consumed twice).
            let replay = try await s.hold(id: id, token: token, points: spend)
            let replayState = try S.json(replay.body)["state"] as? String
            #expect(replay.status == 201 && replayState == "held", "\(replay.body)")
            // Same id, another request: refused.
            S.expectProblem(try await s.hold(id: id, token: token, points: spend + 1), 409, "id_reused")
            // The token again, under a new id: used.
            S.expectProblem(try await s.hold(token: token, points: 1), 422, "token_used")
            // More than is available (a fresh token): refused, nothing held.
            S.expectProblem(try await s.hold(token: try await s.redeemToken(), points: s.points), 422, "insufficient_points")

            let captured = try await s.partner("/\(id.uuidString)/capture")
            let capturedState = try S.json(captured.body)["state"] as? String
            #expect(captured.status == 200 && capturedState == "captured", "\(captured.body)")
            #expect((try await s.partner("/\(id.uuidString)/capture")).status == 200)
            S.expectProblem(try await s.partner("/\(id.uuidString)/void"), 409, "already_resolved")
            balances = try await s.balances()
            #expect(Self.number(balances, "available") == s.points - spend && Self.number(balances, "held") == 0)

            let refundID = UUID().uuidString
            let refunded = try await s.partner("/\(id.uuidString)/refunds", ["id": refundID, "points": 1])
            let refundedBody = try S.json(refunded.body)
            #expect(refunded.status == 201 && Self.number(refundedBody, "refunded_points") == 1, "\(refunded.body)")
            #expect((try await s.partner("/\(id.uuidString)/refunds", ["id": refundID, "points": 1])).status == 201)
            S.expectProblem(try await s.partner("/\(id.uuidString)/refunds", ["id": refundID, "points": 2]), 409, "id_reused")
            S.expectProblem(try await s.partner("/\(id.uuidString)/refunds", ["id": UUID().uuidString, "points": spend]), 422, "refund_too_large")
            balances = try await s.balances()
            #expect(Self.number(balances, "available") == s.points - spend + 1)

            // Another partner's key does not see this redemption; bad ids are 404 / 400.
            S.expectProblem(try await s.partner("/\(UUID().uuidString)/capture"), 404, "not_found")
            S.expectProblem(try await s.partner("", ["id": "nope", "redeem_token": token, "points": 1]), 400, "malformed_request")
            S.expectProblem(try await s.hold(token: "thr_forged", points: 1), 422, "token_unknown")
            S.expectProblem(try await s.hold(token: try await s.redeemToken(), points: 1, offer: UUID().uuidString), 400, "malformed_request")
            // null is not "absent": a token or hold with `offer_id: null` is refused, not read as no offer.
            S.expectProblem(
                try await s.ledger.post(
                    "/v1/sync/redeem-tokens", body: try JSONSerialization.data(withJSONObject: ["province": "CN-GD", "offer_id": NSNull()]),
                    token: s.deviceToken), 400, "malformed_request")
            S.expectProblem(try await s.partner("", ["id": UUID().uuidString, "redeem_token": token, "points": NSNull()]), 400, "malformed_request")

            // Pull shows the new kinds in order.
            let page = try await s.ledger.pull(token: s.deviceToken)
            let kinds = (page["entries"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String }.filter { $0 != "award" }
            #expect(kinds == ["hold", "capture", "refund"])
            try await Self.expectCleanAudit(s.ledger.url)
        }
    }

    @Test("an expired token is refused; an uncaptured hold voids itself at its TTL (serve), and capture after it is 409")
    func expiry() async throws {
        try await Self.withScene { s in
            let services = try TestDatabase.makeServices(url: s.ledger.url)
            let stale = try await services.redemptions.issueToken(
                citizen: s.citizen, province: "CN-GD", offer: nil, now: Date().addingTimeInterval(-301))
            S.expectProblem(try await s.hold(token: stale.token, points: 1), 422, "token_expired")
            await services.shutdown()

            let id = UUID()
            let held = try await s.hold(id: id, token: try await s.redeemToken(), points: 3, holdSeconds: 1)
            #expect(held.status == 201, "\(held.body)")
            // Under load the 1 s TTL may pass before a pull: the hold's own answer says held.
            let heldState = try S.json(held.body)["state"] as? String
            #expect(heldState == "held")
            var state = "held"
            for _ in 0..<300 where state == "held" {
                try await Task.sleep(for: .milliseconds(200))
                let reply = try await HTTPClient.request(
                    "GET", s.ledger.server.baseURL + "/v1/provinces/CN-GD/redemptions/\(id.uuidString)",
                    headers: ["Authorization": "Bearer \(s.partnerKeys[0])"])
                state = try S.json(reply.body)["state"] as? String ?? "?"
            }
            #expect(state == "expired")
            let balances = try await s.balances()
            #expect(Self.number(balances, "available") == s.points && Self.number(balances, "held") == 0)
            S.expectProblem(try await s.partner("/\(id.uuidString)/capture"), 409, "already_resolved")
            // The void is dated at the TTL.
            let late = try await s.ledger.count(
                "SELECT count(*) FROM redemption_outcomes o JOIN redemptions r USING (province, partner_id, redemption_id) WHERE o.created_at <> r.expires_at"
            )
            #expect(late == 0)
            try await Self.expectCleanAudit(s.ledger.url)
        }
    }

    @Test("8 connections race capture against void on one hold: exactly one outcome wins, every caller sees it")
    func captureVoidRace() async throws {
        try await Self.withScene { s in
            for _ in 0..<3 {
                let id = UUID()
                #expect((try await s.hold(id: id, token: try await s.redeemToken(), points: 2)).status == 201)
                let replies = try await withThrowingTaskGroup(of: (String, HTTPReply).self) { group in
                    for index in 0..<8 {
                        let action = index % 2 == 0 ? "capture" : "void"
                        group.addTask { (action, try await s.partner("/\(id.uuidString)/\(action)")) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let winners = Set(replies.filter { $0.1.status == 200 }.map(\.0))
                #expect(winners.count == 1, "\(replies.map { "\($0.0) \($0.1.status)" })")
                for (action, reply) in replies where !winners.contains(action) { S.expectProblem(reply, 409, "already_resolved") }
                #expect(
                    try await s.ledger.count(
                        "SELECT count(*) FROM redemption_outcomes WHERE redemption_id = \(id)") == 1)
                #expect(
                    try await s.ledger.count(
                        "SELECT count(*) FROM ledger_transactions WHERE event_id = \(id) AND kind IN ('capture', 'void')") == 1)
            }
            #expect(Self.number(try await s.balances(), "held") == 0)
            try await Self.expectCleanAudit(s.ledger.url)
        }
    }

    @Test("two partners race for the last unit of an offer: one hold, one offer_sold_out; a void gives the unit back; per-citizen limit")
    func offerLimits() async throws {
        try await Self.withScene(partners: 2) { s in
            let operatorKey = try await s.ledger.operatorKey()
            let now = Date()
            let created = try await s.ledger.post(
                "/v1/provinces/CN-GD/offers",
                body: try JSONSerialization.data(withJSONObject: [
                    "name": "Metro ride", "points_cost": 2, "total_limit": 2, "per_citizen_limit": ["count": 2, "period": "day"],
                    "valid_from": F.iso(now.addingTimeInterval(-60)), "valid_to": F.iso(now.addingTimeInterval(3600)),
                ]), token: operatorKey)
            #expect(created.status == 201, "\(created.body)")
            let offer = try #require(try S.json(created.body)["id"] as? String)
            #expect((try await s.hold(token: try await s.redeemToken(offer: offer), offer: offer)).status == 201)
            // Units left: 1. Two partners race for it.
            let tokens = [try await s.redeemToken(offer: offer), try await s.redeemToken(offer: offer)]
            let raced = try await withThrowingTaskGroup(of: (Int, HTTPReply).self) { group in
                for index in 0..<2 { group.addTask { (index, try await s.hold(token: tokens[index], offer: offer, partner: index)) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }.sorted { $0.0 < $1.0 }
            let replies = raced.map(\.1)
            #expect(replies.filter { $0.status == 201 }.count == 1, "\(replies.map(\.body))")
            let loser = try #require(replies.first { $0.status != 201 })
            S.expectProblem(loser, 422, "offer_sold_out")
            // A token bound to the offer cannot buy points instead.
            S.expectProblem(try await s.hold(token: try await s.redeemToken(offer: offer), points: 1), 422, "token_bound_to_offer")
            // Voiding one gives its unit back (but the citizen's own limit of 2 a day is reached).
            let winning = try #require(replies.first { $0.status == 201 })
            let won = try #require(try S.json(winning.body)["id"] as? String)
            let winner = replies.firstIndex { $0.status == 201 }!
            #expect((try await s.partner("/\(won)/void", partner: winner)).status == 200)
            #expect((try await s.hold(token: try await s.redeemToken(offer: offer), offer: offer)).status == 201)
            S.expectProblem(try await s.hold(token: try await s.redeemToken(offer: offer), offer: offer), 422, "offer_sold_out")
            let list = try await HTTPClient.request(
                "GET", s.ledger.server.baseURL + "/v1/provinces/CN-GD/offers", headers: ["Authorization": "Bearer \(operatorKey)"])
            #expect(list.status == 200 && list.body.contains(offer))
            try await Self.expectCleanAudit(s.ledger.url)
        }
    }
}
