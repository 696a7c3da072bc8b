import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// `self_reported: {factor_multiplier}` against a real `tanhui serve`: one kind pays less from
/// a device than from a feed partner's signed record, simulate shows either source, and the
/// audit's replay reproduces both awards (and catches one valued under the wrong source).
@Suite("Self-reported terms over HTTP: device vs partner, simulate, audit replay", .needsDatabase)
struct SelfReportedTermsHTTPTests {
    typealias S = ServedLedger
    typealias F = LedgerFixtures
    typealias P = PartnerFeedTests

    /// CN-GD version 2, in force from two hours ago: self-reported transit trips at half the factor.
    static func halvedTransit() throws -> String {
        let document = try F.ruleSetDocument()
            .replacingOccurrences(of: "version: 1\n", with: "version: 2\n")
            .replacingOccurrences(of: "effective_from: 2026-01-01T00:00:00+08:00", with: "effective_from: \(F.iso(Date().addingTimeInterval(-7200)))")
            .replacingOccurrences(
                of: "  - kind: transit_trip\n    method: per_distance\n",
                with: "  - kind: transit_trip\n    method: per_distance\n    self_reported: { factor_multiplier: 0.5 }\n")
        #expect(document.contains("factor_multiplier: 0.5"))
        return document
    }

    static func audit(_ url: String) async throws -> (exit: Int32, checks: [String: [String: Any]]) {
        let result = try await CommandRunner.tanhui(["audit", "--json", "--province", "CN-GD"], databaseURL: url)
        let report = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any]
        #expect(report != nil, "\(result.stdout.prefix(300)) \(result.stderr.prefix(300))")
        let checks = ((report?["checks"] as? [[String: Any]]) ?? []).map { ($0["id"] as? String ?? "", $0) }
        return (result.exitCode, Dictionary(checks, uniquingKeysWith: { a, _ in a }))
    }

    static func tamper(_ url: String, _ statement: PostgresQuery) async throws {
        let pool = TestDatabase.makePool(url: url, size: 1)
        try await pool.withTransaction { connection in
            try TestDatabase.bypassTriggers(connection)
            try connection.query(statement)
        }
        await pool.shutdown()
    }

    @Test(
        "4 km on the metro: 186 g / 18 points from the operator's signed record, 93 g / 9 points from a device; simulate per source; audit replays both"
    )
    func deviceAndPartnerPayDifferently() async throws {
        try await S.with { ledger in
            let partner = try await P.register(ledger)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("self-reported-\(UUID()).yaml").path
            try Self.halvedTransit().write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let published = try await CommandRunner.tanhui(["rules", "publish", file], databaseURL: ledger.url)
            #expect(published.exitCode == 0, "\(published.stderr)")

            // A citizen reports the trip from the phone: 4 km × 23.35 g/km = 93.4 → 93 g → 9 points.
            let start = Date().addingTimeInterval(-1800)
            let trip = S.event(kind: "transit_trip", start: start, minutes: 3, data: ["mode": "metro", "distance_m": 4_000])
            let pushed = try await ledger.push([trip], token: try await S.token(UUID()))
            let device = try #require(try S.results(pushed).first?["award"] as? [String: Any], "\(pushed.body)")
            #expect(device["grams_co2e"] as? Int == 93 && device["points"] as? Int == 9, "\(pushed.body)")

            // The metro operator's signed record of the same kind and distance: 4 km × 46.7 = 186.8 → 186 g → 18 points.
            let linked = UUID()
            _ = try await P.link(ledger, partner, token: try await S.token(linked), subject: "u-1")
            try await Task.sleep(for: .seconds(1.2))
            let body = try JSONSerialization.data(withJSONObject: ["records": [P.record("m-1", subject: "u-1", at: Date(), meters: 4_000)]])
            let uploaded = try await P.partnerPost(ledger, partner, "/records", body: body, signature: try P.sign(body, with: partner.signingKey))
            let record = try #require(try P.byRecord(uploaded)["m-1"]?["award"] as? [String: Any], "\(uploaded.body)")
            #expect(record["grams_co2e"] as? Int == 186 && record["points"] as? Int == 18, "\(uploaded.body)")
            #expect(try await ledger.count("SELECT count(*) FROM ledger_transactions WHERE kind = 'award' AND rule_set_version = 2") == 2)

            // simulate: the operator says whose events they are (device by default).
            let operatorKey = try await ledger.operatorKey()
            func simulate(_ source: String?) async throws -> HTTPReply {
                var object: [String: Any] = ["ruleset_version": 2, "events": [trip]]
                if let source { object["source"] = source }
                return try await ledger.post(
                    "/v1/provinces/CN-GD/rulesets/simulate", body: try JSONSerialization.data(withJSONObject: object), token: operatorKey)
            }
            for (source, grams, points) in [(nil, 93, 9), ("device", 93, 9), ("partner", 186, 18)] as [(String?, Int, Int)] {
                let reply = try await simulate(source)
                #expect(reply.status == 200, "\(reply.body)")
                let json = try S.json(reply.body)
                #expect(json["source"] as? String == source ?? "device")
                let totals = try #require(json["totals"] as? [String: Any])
                #expect(totals["grams_co2e"] as? Int == grams && totals["points"] as? Int == points, "\(source ?? "-"): \(reply.body)")
            }
            S.expectProblem(try await simulate("phone"), 400, "malformed_json")
            let events = FileManager.default.temporaryDirectory.appendingPathComponent("self-reported-\(UUID()).jsonl").path
            try JSONSerialization.data(withJSONObject: trip).write(to: URL(fileURLWithPath: events))
            defer { try? FileManager.default.removeItem(atPath: events) }
            let cliDevice = try await CommandRunner.tanhui(["rules", "simulate", file, "--events", events], databaseURL: nil)
            #expect(cliDevice.stdout.contains("93 g CO2e, 9 points (CN-GD v2)"), "\(cliDevice.stdout) \(cliDevice.stderr)")
            let cliPartner = try await CommandRunner.tanhui(["rules", "simulate", file, "--events", events, "--source", "partner"], databaseURL: nil)
            #expect(cliPartner.stdout.contains("186 g CO2e, 18 points (CN-GD v2, as partner records)"), "\(cliPartner.stdout) \(cliPartner.stderr)")
            let cliBad = try await CommandRunner.tanhui(["rules", "simulate", file, "--events", events, "--source", "phone"], databaseURL: nil)
            #expect(cliBad.exitCode != 0 && cliBad.stderr.contains("--source"), "\(cliBad.stderr)")

            // The audit's replay knows the source: both awards reproduce.
            let clean = try await Self.audit(ledger.url)
            #expect(clean.exit == 0 && clean.checks["replay"]?["status"] as? String == "ok", "\(clean.checks["replay"] ?? [:])")

            // The partner's event relabelled as a device's: replay values it at the self-reported
            // factor (93 g, 9 points), not the stored 186 g / 18 points.
            let partnerDevice = "partner:" + partner.id
            try await Self.tamper(ledger.url, "UPDATE events SET device_id = 'phone' WHERE device_id = \(partnerDevice)")
            let relabelled = try await Self.audit(ledger.url)
            let replay = relabelled.checks["replay"] ?? [:]
            #expect(relabelled.exit == 1 && replay["status"] as? String != "ok", "\(replay)")
            #expect(((replay["first"] as? [String: Any])?["replayed_points"] as? Int) == 9, "\(replay)")
            try await Self.tamper(
                ledger.url,
                "UPDATE events SET device_id = \(partnerDevice) WHERE device_id = 'phone' AND kind = 'transit_trip' AND citizen_id = \(linked)")
            #expect(try await Self.audit(ledger.url).exit == 0)

            // A device's award raised to what a partner's record earns: replay gives 9 points.
            try await Self.tamper(
                ledger.url,
                "UPDATE ledger_transactions SET points = 18, grams_co2e = 186 WHERE kind = 'award' AND citizen_id <> \(linked) AND rule_set_version = 2"
            )
            let raised = try await Self.audit(ledger.url)
            let raisedReplay = raised.checks["replay"] ?? [:]
            #expect(raised.exit == 1 && raisedReplay["status"] as? String != "ok", "\(raisedReplay)")
            #expect(((raisedReplay["first"] as? [String: Any])?["stored_points"] as? Int) == 18, "\(raisedReplay)")
            #expect(((raisedReplay["first"] as? [String: Any])?["replayed_points"] as? Int) == 9, "\(raisedReplay)")
        }
    }
}
