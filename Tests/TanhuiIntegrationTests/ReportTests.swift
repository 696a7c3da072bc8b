import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOFoundationEssentialsCompat
import TanhuiCore
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService
import Testing

@Suite("Reports from the sealed chain", .needsDatabase)
struct ReportTests {
    typealias F = LedgerFixtures
    static let hour: TimeInterval = 3600
    static let day: TimeInterval = 86_400
    static let key = Curve25519.Signing.PrivateKey()
    static var environment: [String: String] { ["TANHUI_CHECKPOINT_KEY": key.rawRepresentation.base64EncodedString(), "TANHUI_DB_POOL_SIZE": "6"] }

    /// An event with a district (the fixtures' events have none).
    static func item(_ kind: String, at start: Date, district: String?, data: [String: Any], minutes: Double = 30) -> SubmissionItem {
        var fields = data
        if let district { fields["district"] = district }
        let id = UUID().uuidString
        var object: [String: Any] = ["id": id, "kind": kind, "province": "CN-GD", "occurred_at": F.iso(start), "data": fields]
        if kind != "waste_sorting" { object["ended_at"] = F.iso(start.addingTimeInterval(minutes * 60)) }
        switch EventWire.decode(object) {
        case .success(let wire): return .event(wire)
        case .failure(let invalid): return .invalid(id: id, issues: invalid.issues)
        }
    }

    /// What was pushed, folded by hand from the verdicts: the expected cell figures.
    struct Expected {
        var accepted = 0
        var rejected = 0
        var grams: Int64 = 0
        var points: Int64 = 0
        var citizens = Set<UUID>()
    }

    struct Pushed {
        var cells: [String: Expected] = [:]  // "day|kind|district"
        var total = Expected()
        var byKind: [String: Expected] = [:]
    }

    /// Local day (UTC+08:00) of an instant.
    static func localDay(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 8 * 3600)!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }

    /// 12 citizens: a metro trip in Nanshan on day 1, a waste check-in without district on day 1,
    /// a bike ride in Futian on day 2; citizens 0–2 also ride in Futian on day 3 (3 citizens:
    /// suppressed) and push one metro trip too short to credit (rejected). One award is reversed.
    static func push(_ services: TanhuiServices) async throws -> Pushed {
        var pushed = Pushed()
        let receivedAt = F.base.addingTimeInterval(5 * day)
        let start = F.base.addingTimeInterval(-8 * hour)  // 2026-11-18 11:06 local
        var reversible: UUID?
        for index in 0..<12 {
            let citizen = UUID()
            var items: [(SubmissionItem, Date, String, String)] = [
                (
                    item("transit_trip", at: start, district: "440305", data: ["mode": "metro", "distance_m": 8_000 + index * 100]), start,
                    "transit_trip", "440305"
                ),
                (
                    item("waste_sorting", at: start.addingTimeInterval(2 * hour), district: nil, data: [:]), start.addingTimeInterval(2 * hour),
                    "waste_sorting", ""
                ),
                (
                    item("bike_ride", at: start.addingTimeInterval(day), district: "440304", data: ["distance_m": 3_000]),
                    start.addingTimeInterval(day), "bike_ride", "440304"
                ),
            ]
            if index < 3 {
                let at = start.addingTimeInterval(2 * day)
                items.append((item("bike_ride", at: at, district: "440304", data: ["distance_m": 2_000]), at, "bike_ride", "440304"))
                let short = start.addingTimeInterval(3 * hour)
                items.append(
                    (
                        item("transit_trip", at: short, district: "440305", data: ["mode": "metro", "distance_m": 100]), short, "transit_trip",
                        "440305"
                    ))
            }
            let verdicts = try await services.ledger.submit(
                items.map(\.0), citizen: citizen, device: "d\(index)", receivedAt: receivedAt, sentAt: nil)
            for (verdict, (_, at, kind, district)) in zip(verdicts, items) {
                let key = "\(localDay(at))|\(kind)|\(district)"
                func fold(_ e: inout Expected) {
                    e.citizens.insert(citizen)
                    if verdict.status == .accepted {
                        e.accepted += 1
                        e.grams += verdict.award!.gramsCO2e
                        e.points += verdict.award!.points
                    } else {
                        e.rejected += 1
                    }
                }
                fold(&pushed.cells[key, default: Expected()])
                fold(&pushed.total)
                fold(&pushed.byKind[kind, default: Expected()])
            }
            #expect(verdicts.filter { $0.status == .accepted }.count == (index < 3 ? 4 : 3), "\(verdicts.map { "\($0.status) \($0.code ?? "")" })")
            if index == 5, case .event(let wire) = items[0].0 { reversible = wire.event.id }
        }
        // A reversal lands in its award's cell, negative.
        let reversal = try await services.ledger.reverse(event: reversible!, province: "CN-GD", reason: "test", actor: "admin:test")
        let key = "\(localDay(start))|transit_trip|440305"
        pushed.cells[key]!.grams += reversal.gramsCO2e
        pushed.cells[key]!.points += reversal.points
        pushed.total.grams += reversal.gramsCO2e
        pushed.total.points += reversal.points
        pushed.byKind["transit_trip"]!.grams += reversal.gramsCO2e
        pushed.byKind["transit_trip"]!.points += reversal.points
        return pushed
    }

    static func verifyIndependently(note: String, csv: String?, publicKey: Curve25519.Signing.PublicKey) throws -> [String: String] {
        let range = try #require(note.range(of: "signature "))
        let signed = String(note[..<range.lowerBound])
        let signatureText = String(note[range.upperBound...]).replacingOccurrences(of: "\n", with: "")
        let signature = try #require(Data(base64Encoded: signatureText))
        #expect(publicKey.isValidSignature(signature, for: Data(signed.utf8)), "the note's signature verifies with the checkpoint public key")
        var fields: [String: String] = [:]
        for line in signed.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            fields[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        if let csv {
            let digest = SHA256.hash(data: Data(csv.utf8)).map { String(format: "%02x", $0) }.joined()
            #expect(fields["csv"] == digest, "the note signs the CSV form")
        }
        #expect(fields["key"] == publicKey.rawRepresentation.base64EncodedString())
        return fields
    }

    @Test("totals and cells equal a fold of the pushed verdicts; distinct citizens over days; suppression; signature; CSV in Python; audit")
    func reportsReconcile() async throws {
        try await TestDatabase.withFresh { url in
            try await Self.withServices(url) { services in try await Self.reconcile(services, url: url) }
        }
    }

    /// Services with the checkpoint key and the sample Guangdong rules, shut down afterwards.
    static func withServices(_ url: String, _ body: (TanhuiServices) async throws -> Void) async throws {
        let services = try TestDatabase.makeServices(url: url, environment: environment)
        do {
            _ = try await services.ruleSets.publish(document: try F.ruleSetDocument(), publishedBy: "test")
            try await body(services)
            await services.shutdown()
        } catch {
            await services.shutdown()
            throw error
        }
    }

    static func reconcile(_ services: TanhuiServices, url: String) async throws {
        do {
            let pushed = try await Self.push(services)
            let checkpointKey = services.config.checkpointKey

            // Nothing sealed yet: the report covers the genesis and shows nothing.
            let before = try await services.reports.signedReport(
                province: "CN-GD", from: "2026-11-01", to: "2026-11-30", groupBy: "day,kind,district", checkpointKey: checkpointKey,
                waitForAdvance: true)
            #expect(before.report.head.chainSeq == 0)
            #expect(before.report.cells.isEmpty)
            #expect(before.report.total.suppressed)

            try await services.ledger.seal()
            let signed = try await services.reports.signedReport(
                province: "CN-GD", from: "2026-11-01", to: "2026-11-30", groupBy: "day,kind,district", checkpointKey: checkpointKey,
                waitForAdvance: true)
            let report = signed.report
            // The head it covers is the chain's head.
            let head = try await AuditTests.scalar(
                url, "SELECT chain_seq FROM ledger_chain WHERE province = 'CN-GD' ORDER BY chain_seq DESC LIMIT 1", as: Int64.self)
            let headHash = try await AuditTests.scalar(
                url, "SELECT hash FROM ledger_chain WHERE province = 'CN-GD' AND chain_seq = \(head)", as: String.self)
            #expect(report.head.chainSeq == head)
            #expect(report.head.hash == headHash)
            #expect(report.threshold == 10)

            // Cells: every expected cell is there with the folded figures, or suppressed.
            #expect(report.cells.count == pushed.cells.count)
            for cell in report.cells {
                let key = "\(cell.keys[.day]!!)|\(cell.keys[.kind]!!)|\((cell.keys[.district] ?? nil) ?? "")"
                let expected = try #require(pushed.cells[key], "unexpected cell \(key)")
                if expected.citizens.count < 10 {
                    #expect(cell.suppressed, "\(key) has \(expected.citizens.count) citizens")
                    #expect(cell.gramsCO2e == nil && cell.accepted == nil && cell.citizens == nil)
                } else {
                    #expect(!cell.suppressed)
                    #expect(cell.accepted == Int64(expected.accepted), "\(key)")
                    #expect(cell.rejected == Int64(expected.rejected), "\(key)")
                    #expect(cell.gramsCO2e == expected.grams, "\(key)")
                    #expect(cell.points == expected.points, "\(key)")
                    #expect(cell.citizens == Int64(expected.citizens.count), "\(key)")
                }
            }
            #expect(report.cells.contains { $0.suppressed }, "the day-3 rides of 3 citizens are suppressed")
            #expect(report.total.gramsCO2e == pushed.total.grams)
            #expect(report.total.points == pushed.total.points)
            #expect(report.total.accepted == Int64(pushed.total.accepted))
            #expect(report.total.rejected == Int64(pushed.total.rejected))
            #expect(report.total.citizens == 12)
            #expect(report.total.reversals == 1)
            #expect((report.total.rejectedByCode ?? [:]).values.reduce(0, +) == Int64(pushed.total.rejected))

            // Distinct citizens are not summed over days: bike rides on days 2 and 3 are 12 citizens.
            let byKind = try await services.reports.signedReport(
                province: "CN-GD", from: "2026-11-01", to: "2026-11-30", groupBy: "kind", checkpointKey: checkpointKey, waitForAdvance: true)
            let bike = try #require(byKind.report.cells.first { $0.keys[.kind] == "bike_ride" })
            #expect(bike.citizens == 12)
            #expect(bike.accepted == 15)
            #expect(bike.gramsCO2e == pushed.byKind["bike_ride"]!.grams)

            // The signature verifies with the public key alone; the note names the head.
            let fields = try Self.verifyIndependently(note: signed.note, csv: signed.csv, publicKey: Self.key.publicKey)
            #expect(fields["sequence"] == String(head))
            #expect(fields["head"] == headHash)
            #expect(fields["threshold"] == "10")
            var tampered = signed.note
            tampered = tampered.replacingOccurrences(of: "threshold 10", with: "threshold 1")
            let tamperedRange = try #require(tampered.range(of: "signature "))
            let tamperedText = String(tampered[tamperedRange.upperBound...]).replacingOccurrences(of: "\n", with: "")
            let tamperedSignature = try #require(Data(base64Encoded: tamperedText))
            #expect(!Self.key.publicKey.isValidSignature(tamperedSignature, for: Data(tampered[..<tamperedRange.lowerBound].utf8)))

            // The CSV read by Python's csv module gives the same numbers.
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("report-\(UUID()).csv")
            try Data(signed.csv.utf8).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            let python = try await CommandRunner.run(
                "/usr/bin/python3",
                [
                    "-c",
                    """
                    csv, json, sys = __import__('csv'), __import__('json'), __import__('sys')
                    rows = list(csv.DictReader(open(sys.argv[1], newline='')))
                    total = [r for r in rows if r['scope'] == 'total'][0]
                    cells = [r for r in rows if r['scope'] == 'cell']
                    visible = [r for r in cells if r['suppressed'] == 'false']
                    print(json.dumps({'grams': int(total['grams_co2e']), 'points': int(total['points']), 'accepted': int(total['accepted']),
                                      'citizens': int(total['citizens']), 'cells': len(cells), 'suppressed': len(cells) - len(visible),
                                      'visible_grams': sum(int(r['grams_co2e']) for r in visible),
                                      'suppressed_blank': all(r['grams_co2e'] == '' for r in cells if r['suppressed'] == 'true')}))
                    """,
                    file.path,
                ])
            #expect(python.exitCode == 0, "\(python.stderr)")
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(python.stdout.utf8)) as? [String: Any])
            #expect(parsed["grams"] as? Int == Int(pushed.total.grams))
            #expect(parsed["points"] as? Int == Int(pushed.total.points))
            #expect(parsed["accepted"] as? Int == pushed.total.accepted)
            #expect(parsed["citizens"] as? Int == 12)
            #expect(parsed["cells"] as? Int == report.cells.count)
            #expect(parsed["suppressed"] as? Int == report.cells.filter(\.suppressed).count)
            #expect(parsed["visible_grams"] as? Int == Int(report.cells.compactMap(\.gramsCO2e).reduce(0, +)))
            #expect(parsed["suppressed_blank"] as? Bool == true)

            // The audit recomputes the rollup from the ledger; a tampered rollup is caught.
            let clean = try await LedgerAudit(pool: services.pool).run(AuditOptions())
            #expect(clean.check(.reportsMatchLedger).holds, "\(clean.human().joined(separator: "\n"))")
            #expect(clean.check(.reportsMatchLedger).checked > 10)
            try await AuditTests.rogue(url, ["UPDATE report_rollup SET grams_co2e = grams_co2e + 1 WHERE kind = 'bike_ride'"])
            let edited = try await LedgerAudit(pool: services.pool).run(AuditOptions())
            #expect(edited.check(.reportsMatchLedger).count == 4, "both directions of 2 bike cells")
            #expect(edited.check(.reportsMatchLedger).first?.value("table") == .string("report_rollup"))
            try await AuditTests.rogue(
                url,
                [
                    "UPDATE report_rollup SET grams_co2e = grams_co2e - 1 WHERE kind = 'bike_ride'",
                    "DELETE FROM report_citizens WHERE ctid = (SELECT ctid FROM report_citizens LIMIT 1)",
                ])
            let lost = try await LedgerAudit(pool: services.pool).run(AuditOptions())
            #expect(lost.check(.reportsMatchLedger).count == 1)
            #expect(lost.check(.reportsMatchLedger).first?.value("table") == .string("report_citizens"))
        }
    }

    @Test("a district outside the province, or not county-level, is an invalid item; a valid one is stored and in the content hash")
    func districtValidation() async throws {
        try await LedgerFixtures.withLedger { services, url in
            let at = F.base.addingTimeInterval(-8 * Self.hour)
            let items = [
                Self.item("waste_sorting", at: at, district: "310104", data: [:]),  // Shanghai's Xuhui, not Guangdong
                Self.item("waste_sorting", at: at.addingTimeInterval(60), district: "440300", data: [:]),  // Shenzhen city level
                Self.item("waste_sorting", at: at.addingTimeInterval(120), district: "440305", data: [:]),
            ]
            let citizen = UUID()
            let verdicts = try await services.ledger.submit(items, citizen: citizen, device: "d", receivedAt: F.base, sentAt: nil)
            #expect(verdicts.map(\.status) == [.rejected, .rejected, .accepted])
            #expect(verdicts[0].code == "invalid" && verdicts[0].errors.first?.path == "data.district")
            #expect(
                verdicts[0].errors.first?.message.contains("starts with 44") == true
                    || verdicts[0].errors.first?.message.contains("start with 44") == true)
            #expect(verdicts[1].errors.first?.path == "data.district")
            #expect(try await F.count(url, "SELECT count(*) FROM events WHERE district = '440305'") == 1)
            // The same id with another district is not a duplicate.
            guard case .event(let wire) = items[2] else { return }
            let object: [String: Any] = [
                "id": wire.event.id.uuidString, "kind": "waste_sorting", "province": "CN-GD", "occurred_at": wire.occurredAtText,
                "data": ["district": "440304"],
            ]
            let again = try await services.ledger.submit([.event(F.wire(object))], citizen: citizen, device: "d", receivedAt: F.base, sentAt: nil)
            #expect(again.first?.status == .conflict || again.first?.code == VerdictCode.idReused, "\(again)")
        }
    }

    @Test("GET …/reports: JSON and CSV agree with the service, the CSV carries the signed note; bad requests are 400, no key 401")
    func reportsOverHTTP() async throws {
        try await TestDatabase.withFresh { url in
            try await Self.withServices(url) { services in try await Self.overHTTP(services) }
        }
    }

    static func overHTTP(_ services: TanhuiServices) async throws {
        do {
            let pushed = try await Self.push(services)
            try await services.ledger.seal()
            let (_, key) = try await services.operators.create(name: "gd", provinces: ["CN-GD"])
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            let auth: HTTPFields = [.authorization: "Bearer \(key)"]
            try await app.test(.router) { client in
                try await client.execute(uri: "/v1/provinces/CN-GD/reports?from=2026-11-01&to=2026-11-30", method: .get) { response in
                    #expect(response.status == .unauthorized)
                }
                for bad in [
                    "from=2026-11-01", "from=2026-11-31&to=2026-12-01", "from=2026-11-02&to=2026-11-01", "from=2026-01-01&to=2027-12-31",
                    "from=2026-11-01&to=2026-11-30&group_by=day,citizen", "from=2026-11-01&to=2026-11-30&format=xml",
                ] {
                    try await client.execute(uri: "/v1/provinces/CN-GD/reports?\(bad)", method: .get, headers: auth) { response in
                        #expect(response.status == .badRequest, "\(bad)")
                    }
                }
                var jsonTotal: [String: Any] = [:]
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/reports?from=2026-11-01&to=2026-11-30&group_by=kind,day", method: .get, headers: auth
                ) { response in
                    #expect(response.status == .ok)
                    let body = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                    jsonTotal = try #require(body["total"] as? [String: Any])
                    #expect(body["group_by"] as? [String] == ["day", "kind"])
                    #expect(body["suppression_threshold"] as? Int == 10)
                    let head = try #require(body["chain_head"] as? [String: Any])
                    #expect((head["chain_seq"] as? Int ?? 0) > 0)
                    let cells = try #require(body["cells"] as? [[String: Any]])
                    #expect(cells.contains { $0["suppressed"] as? Bool == true && $0["grams_co2e"] is NSNull })
                    let fields = try Self.verifyIndependently(note: try #require(body["note"] as? String), csv: nil, publicKey: Self.key.publicKey)
                    #expect(fields["csv"] == body["csv_sha256"] as? String)
                    #expect(fields["sequence"] == "\(head["chain_seq"] as? Int ?? -1)")
                }
                #expect(jsonTotal["grams_co2e"] as? Int == Int(pushed.total.grams))
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/reports?from=2026-11-01&to=2026-11-30&group_by=kind,day&format=csv", method: .get, headers: auth
                ) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType]?.hasPrefix("text/csv") == true)
                    let csv = String(buffer: response.body)
                    let noteBase64 = try #require(response.headers[HTTPField.Name("Tanhui-Report-Note")!])
                    let note = String(decoding: try #require(Data(base64Encoded: noteBase64)), as: UTF8.self)
                    _ = try Self.verifyIndependently(note: note, csv: csv, publicKey: Self.key.publicKey)
                    #expect(csv.hasPrefix("scope,day,kind,suppressed,accepted,rejected,rejected_by_code,grams_co2e,points,reversals,citizens\n"))
                    #expect(csv.contains("\ntotal,,,false,\(pushed.total.accepted),"))
                }
            }
        }
    }
}
