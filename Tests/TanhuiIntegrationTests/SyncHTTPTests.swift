import Foundation
import NIOFoundationEssentialsCompat
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// The sync API through a real `tanhui serve` on loopback, with Hummingbird's TestClient as the client.
@Suite("Sync API over HTTP", .needsDatabase)
struct SyncHTTPTests {
    typealias F = LedgerFixtures

    /// A running server on a fresh ledger database, and a token for one citizen's device.
    struct Harness {
        let server: ServerProcess
        let url: String
        let citizen: UUID
        let token: String

        func push(_ events: [[String: Any]], sentAt: Date? = Date(), token: String? = nil, headers: [String: String] = [:]) async throws -> HTTPReply
        {
            var body: [String: Any] = ["events": events]
            if let sentAt { body["sent_at"] = F.iso(sentAt) }
            return try await post("/v1/sync/push", body: try JSONSerialization.data(withJSONObject: body), token: token, headers: headers)
        }

        func post(_ path: String, body: Data, token: String? = nil, headers: [String: String] = [:]) async throws -> HTTPReply {
            var all = ["Content-Type": "application/json", "Authorization": "Bearer \(token ?? self.token)"]
            for (key, value) in headers { all[key] = value }
            return try await HTTPClient.request("POST", server.baseURL + path, headers: all, body: body)
        }

        func pull(cursor: String?, limit: Int = 200, token: String? = nil) async throws -> [String: Any] {
            var query = "?limit=\(limit)"
            if let cursor { query += "&cursor=\(cursor)" }
            let reply = try await HTTPClient.request(
                "GET", server.baseURL + "/v1/sync/pull" + query, headers: ["Authorization": "Bearer \(token ?? self.token)"])
            #expect(reply.status == 200, "\(reply.body)")
            return try SyncHTTPTests.json(reply.body)
        }
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func results(_ reply: HTTPReply) throws -> [[String: Any]] {
        try #require(try json(reply.body)["results"] as? [[String: Any]], "\(reply.status) \(reply.body)")
    }

    static func withServer(_ body: (Harness) async throws -> Void) async throws {
        try await F.withLedger { _, url in
            let server = try await ServerProcess.start(databaseURL: url)
            let citizen = UUID()
            let token = try await TestDatabase.tokens().issue(citizen: citizen, device: "phone-1", ttl: 3600)
            do {
                try await body(Harness(server: server, url: url, citizen: citizen, token: token))
            } catch {
                await server.stop()
                throw error
            }
            await server.stop()
        }
    }

    static func event(
        _ id: UUID = UUID(), kind: String = "transit_trip", start: Date, minutes: Double = 30,
        data: [String: Any] = ["mode": "metro", "distance_m": 12_400], evidence: String? = nil
    ) -> [String: Any] {
        var object: [String: Any] = ["id": id.uuidString, "kind": kind, "province": "CN-GD", "occurred_at": F.iso(start), "data": data]
        if kind == "transit_trip" || kind == "bike_ride" { object["ended_at"] = F.iso(start.addingTimeInterval(minutes * 60)) }
        if let evidence { object["evidence"] = ["source": "sz_metro_card", "ref": evidence] }
        return object
    }

    @Test("every per-event outcome, in request order, one bad event never blocking the rest")
    func outcomes() async throws {
        try await Self.withServer { h in
            let now = Date()
            let trip = Self.event(start: now.addingTimeInterval(-7200), evidence: "TXN-1")
            let first = try await h.push([trip])
            #expect(first.status == 200, "\(first.body)")
            let accepted = try Self.results(first)[0]
            #expect(accepted["status"] as? String == "accepted")
            let award = try #require(accepted["award"] as? [String: Any])
            #expect(award["grams_co2e"] as? Int == 579)
            #expect(award["points"] as? Int == 57)
            #expect((award["ruleset"] as? [String: Any])?["version"] as? Int == 1)
            #expect(award["capped"] as? Bool == false)
            #expect(try Self.json(first.body)["server_time"] is String)
            // No cursor in a push response (it could skip other devices' entries); balances instead.
            #expect(try Self.json(first.body)["cursor"] == nil)
            let balances = try #require(try Self.json(first.body)["balances"] as? [[String: Any]])
            #expect(balances.count == 1 && balances[0]["province"] as? String == "CN-GD" && balances[0]["points"] as? Int == 57)

            var reused = trip
            reused["data"] = ["mode": "metro", "distance_m": 99_000]
            let invalidID = UUID()
            let batch: [[String: Any]] = [
                trip,  // 1 duplicate
                reused,  // 2 id_reused
                Self.event(start: now.addingTimeInterval(-3 * 3600), evidence: "TXN-1"),  // 3 evidence_claimed
                Self.event(kind: "bike_ride", start: now.addingTimeInterval(-7000), data: ["distance_m": 3000]),  // 4 overlap
                Self.event(kind: "waste_sorting", start: now.addingTimeInterval(3 * 3600), data: [:]),  // 5 clock_skew
                Self.event(kind: "waste_sorting", start: now.addingTimeInterval(-40 * 86_400), data: [:]),  // 6 too_old
                Self.event(kind: "teleport", start: now.addingTimeInterval(-600), data: [:]),  // 7 kind_not_covered
                Self.event(start: now.addingTimeInterval(-20_000), data: ["mode": "metro", "distance_m": 100]),  // 7 below_minimum
                [
                    "id": invalidID.uuidString, "kind": "transit_trip", "province": "CN-GD", "occurred_at": "2027-03-01T07:31:00",
                    "data": ["distance_m": -5],
                ],  // 8 invalid
                Self.event(kind: "waste_sorting", start: now.addingTimeInterval(-300), data: [:]),  // accepted after all that
            ]
            let reply = try await h.push(batch)
            #expect(reply.status == 200, "\(reply.body)")
            let results = try Self.results(reply)
            #expect(results.count == batch.count)
            #expect(results.map { $0["id"] as? String } == batch.map { $0["id"] as? String })
            let statuses = results.map { "\($0["status"] as? String ?? "?")/\($0["code"] as? String ?? "-")" }
            #expect(
                statuses == [
                    "duplicate/-", "conflict/id_reused", "conflict/evidence_claimed", "conflict/overlap", "rejected/clock_skew",
                    "rejected/too_old", "rejected/kind_not_covered", "rejected/below_minimum", "rejected/invalid", "accepted/-",
                ])
            #expect(results[0]["original_status"] as? String == "accepted")
            #expect((results[0]["award"] as? [String: Any])?["points"] as? Int == 57)
            let invalidErrors = try #require(results[8]["errors"] as? [[String: Any]])
            #expect(Set(invalidErrors.compactMap { $0["path"] as? String }).contains("occurred_at"))

            // Final verdicts are stable: resending the whole batch changes nothing. Device-clock
            // and malformed verdicts are not stored, so they are answered the same way again.
            let again = try Self.results(try await h.push(batch))
            #expect(
                again.map { $0["status"] as? String } == [
                    "duplicate", "conflict", "duplicate", "duplicate", "rejected", "duplicate", "duplicate", "duplicate", "rejected", "duplicate",
                ])
            #expect(again[4]["code"] as? String == "clock_skew")
            #expect(again[2]["original_status"] as? String == "conflict" && again[2]["code"] as? String == "evidence_claimed")
            // The malformed item was not stored, so the fixed event can use the same id.
            let fixed = Self.event(invalidID, start: now.addingTimeInterval(-50_000))
            #expect(try Self.results(try await h.push([fixed]))[0]["status"] as? String == "accepted")
            #expect(try await F.count(h.url, "SELECT count(*) FROM ledger_transactions") == 3)

            // Status reconciles without payloads; others' and unknown ids read as unknown.
            let ids = [trip["id"] as! String, UUID().uuidString, invalidID.uuidString]
            let status = try await h.post("/v1/sync/status", body: try JSONSerialization.data(withJSONObject: ["ids": ids]))
            let statusResults = try Self.results(status)
            #expect(statusResults.map { $0["status"] as? String } == ["accepted", "unknown", "accepted"])
        }
    }

    @Test("two devices of one citizen racing the same ride: exactly one award")
    func twoDevicesRace() async throws {
        try await Self.withServer { h in
            let other = try await TestDatabase.tokens().issue(citizen: h.citizen, device: "watch-2", ttl: 3600)
            let start = Date().addingTimeInterval(-5000)
            // Same ride recorded independently by each device: different ids, same interval.
            let replies = try await withThrowingTaskGroup(of: HTTPReply.self) { group in
                for (index, token) in [h.token, other, h.token, other].enumerated() {
                    group.addTask {
                        try await h.push(
                            [Self.event(kind: "bike_ride", start: start.addingTimeInterval(Double(index)), data: ["distance_m": 4000])], token: token)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let statuses = try replies.flatMap { try Self.results($0) }.map { $0["status"] as? String }
            #expect(statuses.filter { $0 == "accepted" }.count == 1)
            #expect(statuses.filter { $0 == "conflict" }.count == 3)
            #expect(try await F.count(h.url, "SELECT count(*) FROM ledger_transactions") == 1)
        }
    }

    @Test("batch-level errors are problem documents and record nothing; gzip bodies accepted")
    func batchErrors() async throws {
        try await Self.withServer { h in
            let event = Self.event(kind: "waste_sorting", start: Date().addingTimeInterval(-60), data: [:])
            func expectProblem(_ reply: HTTPReply, _ status: Int, _ code: String) {
                #expect(reply.status == status, "\(reply.body)")
                #expect(reply.headers["content-type"] == "application/problem+json")
                #expect(reply.body.contains("problems/\(code)"), "\(reply.body)")
            }
            expectProblem(try await h.post("/v1/sync/push", body: Data("{\"events\": [".utf8)), 400, "malformed_json")
            expectProblem(try await h.post("/v1/sync/push", body: Data([0xff, 0xfe, 0x00])), 400, "malformed_json")
            expectProblem(
                try await h.post("/v1/sync/push", body: Data("{}".utf8), headers: ["Content-Type": "text/plain"]), 415, "unsupported_media_type")
            expectProblem(
                try await HTTPClient.request(
                    "POST", h.server.baseURL + "/v1/sync/push", headers: ["Content-Type": "application/json"], body: Data("{}".utf8)), 401,
                "unauthorized")

            // Forged, expired, foreign-key and alg:none tokens.
            let expired = try await TestDatabase.tokens().issue(citizen: h.citizen, device: "d", ttl: 60, now: Date().addingTimeInterval(-3600))
            let foreign = try await DeviceTokens(secret: Array(repeating: 9, count: 32)).issue(citizen: h.citizen, device: "d", ttl: 3600)
            let parts = h.token.split(separator: ".")
            let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
            let tampered = parts[0] + "." + parts[1].dropLast(2) + "AA." + parts[2]
            // A device named like a partner's records (`partner:<id>`) would be judged as a device but
            // audited as a partner: such a token never verifies, whoever signed it.
            let posing = try await TestDatabase.tokens().issue(citizen: h.citizen, device: "Partner:" + UUID().uuidString, ttl: 3600)
            for token in [expired, foreign, none, String(tampered), "garbage", posing] {
                expectProblem(try await h.push([event], token: token), 401, "unauthorized")
            }

            // Too many events: 413 with the limits so the client can split.
            let tooMany = try await h.push(Array(repeating: event, count: LedgerService.maximumBatchSize + 1))
            expectProblem(tooMany, 413, "too_many_events")
            #expect((try Self.json(tooMany.body)["limits"] as? [String: Any])?["max_events_per_push"] as? Int == LedgerService.maximumBatchSize)

            // gzip: a compressed batch is accepted; a gzip bomb is refused by its decompressed size.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gz-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let plain = directory.appendingPathComponent("batch.json")
            try JSONSerialization.data(withJSONObject: ["events": [event], "sent_at": F.iso(Date())]).write(to: plain)
            let gzipped = try await CommandRunner.run("/bin/bash", ["-c", "gzip -c \(plain.path) > \(plain.path).gz"])
            #expect(gzipped.exitCode == 0)
            let compressed = try await h.post(
                "/v1/sync/push", body: try Data(contentsOf: URL(fileURLWithPath: plain.path + ".gz")), headers: ["Content-Encoding": "gzip"])
            #expect(try Self.results(compressed)[0]["status"] as? String == "accepted")
            let bomb = directory.appendingPathComponent("bomb.gz").path
            _ = try await CommandRunner.run("/bin/bash", ["-c", "head -c 50000000 /dev/zero | gzip -c > \(bomb)"])
            expectProblem(
                try await h.post("/v1/sync/push", body: try Data(contentsOf: URL(fileURLWithPath: bomb)), headers: ["Content-Encoding": "gzip"]), 413,
                "body_too_large")
            expectProblem(
                try await h.post("/v1/sync/push", body: Data("not gzip".utf8), headers: ["Content-Encoding": "gzip"]), 400, "malformed_request")
            try? FileManager.default.removeItem(at: directory)
            #expect(try await F.count(h.url, "SELECT count(*) FROM events") == 1)
        }
    }

    @Test("pull pages through the ledger; a reader polling while 4 writers commit never misses or repeats an entry")
    func pullUnderConcurrentWriters() async throws {
        try await Self.withServer { h in
            let tokens = try await (0..<4).asyncMap { index in
                try await TestDatabase.tokens().issue(citizen: h.citizen, device: "writer-\(index)", ttl: 3600)
            }
            let base = Date().addingTimeInterval(-20 * 86_400)
            // Writers push waste check-ins (no overlap rules) concurrently; the reader polls meanwhile.
            let writers = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (writer, token) in tokens.enumerated() {
                        group.addTask {
                            for round in 0..<6 {
                                let events = (0..<5).map { slot in
                                    Self.event(
                                        kind: "waste_sorting", start: base.addingTimeInterval(Double(((writer * 6 + round) * 5 + slot) * 600)),
                                        data: [:])
                                }
                                let reply = try await h.push(events, token: token)
                                #expect(reply.status == 200)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            var seen: [String] = []
            var cursor: String?
            var rounds = 0
            while rounds < 400 {
                rounds += 1
                let page = try await h.pull(cursor: cursor, limit: 7)
                let entries = try #require(page["entries"] as? [[String: Any]])
                seen += entries.map { "\($0["province"] as! String)#\($0["seq"] as! Int)" }
                cursor = page["next_cursor"] as? String
                #expect(page["reset"] as? Bool == false)
                if page["has_more"] as? Bool == false {
                    if writers.isCancelled { break }
                    if await Self.isDone(writers) {
                        let last = try await h.pull(cursor: cursor, limit: 7)
                        let lastEntries = try #require(last["entries"] as? [[String: Any]])
                        seen += lastEntries.map { "\($0["province"] as! String)#\($0["seq"] as! Int)" }
                        if lastEntries.isEmpty { break }
                        cursor = last["next_cursor"] as? String
                    }
                }
            }
            try await writers.value
            let total = try await F.count(h.url, "SELECT count(*) FROM ledger_transactions WHERE citizen_id = \(h.citizen)")
            try #require(total == 120)
            #expect(seen.count == total, "saw \(seen.count) of \(total)")
            #expect(Set(seen).count == seen.count)
            #expect(seen == (1...total).map { "CN-GD#\($0)" })
            // Balances come with every page; an unknown cursor gets an explicit reset.
            let reset = try await h.pull(cursor: "v1.forged.cursor")
            #expect(reset["reset"] as? Bool == true)
            #expect(((reset["balances"] as? [[String: Any]])?.first?["points"] as? Int) == 120)
            let badLimit = try await HTTPClient.request(
                "GET", h.server.baseURL + "/v1/sync/pull?limit=0", headers: ["Authorization": "Bearer \(h.token)"])
            #expect(badLimit.status == 400)
        }
    }

    static func isDone(_ task: Task<Void, any Error>) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = try? await task.value
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(50))
                return false
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
    }

    @Test("/metrics exposes requests by route and status, events by verdict and code, and pool usage")
    func metrics() async throws {
        try await Self.withServer { h in
            _ = try await h.push([
                Self.event(kind: "waste_sorting", start: Date().addingTimeInterval(-60), data: [:]),
                Self.event(kind: "teleport", start: Date().addingTimeInterval(-60), data: [:]),
            ])
            let reply = try await HTTPClient.request("GET", h.server.baseURL + "/metrics")
            #expect(reply.status == 200)
            #expect(reply.headers["content-type"]?.hasPrefix("text/plain") == true)
            #expect(reply.body.contains(#"tanhui_events_total{status="accepted",code="none"} 1"#), "\(reply.body)")
            #expect(reply.body.contains(#"tanhui_events_total{status="rejected",code="kind_not_covered"} 1"#))
            #expect(reply.body.contains(#"http_route="/v1/sync/push""#))
            #expect(reply.body.contains(#"tanhui_db_pool_connections_count{state="maximum"}"#))
            #expect(reply.body.contains("http_server_request_duration"))
        }
    }

    @Test("`tanhui token issue` mints a token the server accepts")
    func tokenCLI() async throws {
        try await Self.withServer { h in
            let citizen = UUID()
            let issued = try await CommandRunner.tanhui(
                ["token", "issue", "--citizen", citizen.uuidString, "--device", "cli-phone", "--ttl", "10m"], databaseURL: nil,
                environment: ["TANHUI_TOKEN_SECRET": TestDatabase.tokenSecretBase64])
            #expect(issued.exitCode == 0, "\(issued.stderr)")
            let token = issued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let reply = try await h.push([Self.event(kind: "waste_sorting", start: Date().addingTimeInterval(-60), data: [:])], token: token)
            #expect(try Self.results(reply)[0]["status"] as? String == "accepted")
            #expect(try await F.count(h.url, "SELECT count(*) FROM events WHERE citizen_id = \(citizen) AND device_id = 'cli-phone'") == 1)
            let bad = try await CommandRunner.tanhui(
                ["token", "issue", "--citizen", "nope", "--device", "x"], databaseURL: nil,
                environment: ["TANHUI_TOKEN_SECRET": TestDatabase.tokenSecretBase64])
            #expect(bad.exitCode != 0)
            let reserved = try await CommandRunner.tanhui(
                ["token", "issue", "--citizen", citizen.uuidString, "--device", "partner:x"], databaseURL: nil,
                environment: ["TANHUI_TOKEN_SECRET": TestDatabase.tokenSecretBase64])
            #expect(reserved.exitCode != 0 && reserved.stderr.contains("reserved") && reserved.stdout.isEmpty, "\(reserved.stderr)")
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var values: [T] = []
        for element in self { values.append(try await transform(element)) }
        return values
    }
}
