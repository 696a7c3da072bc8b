import Crypto
import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// Partner feeds against a real `tanhui serve`: links by code, signed record uploads through
/// the push path, owned evidence, kinds, revocation, replays and forged signatures.
@Suite("Partner feeds: links, signed records, owned evidence", .needsDatabase)
struct PartnerFeedTests {
    typealias S = ServedLedger
    typealias F = LedgerFixtures

    /// A feed partner registered with the CLI, as an admin would.
    struct Partner {
        var id: String
        var key: String
        var signingKey: Curve25519.Signing.PrivateKey
    }

    static func register(
        _ ledger: ServedLedger, name: String = "Guangzhou Metro", kinds: [String] = ["transit_trip"], sources: [String] = ["gz-metro"]
    ) async throws -> Partner {
        let signing = Curve25519.Signing.PrivateKey()
        let created = try await CommandRunner.tanhui(
            [
                "partner", "create", "--province", "CN-GD", "--name", name, "--scope", "feed", "--signing-key",
                signing.publicKey.rawRepresentation.base64EncodedString(),
            ]
                + kinds.flatMap { ["--kind", $0] } + sources.flatMap { ["--evidence-source", $0] }, databaseURL: ledger.url)
        #expect(created.exitCode == 0, "\(created.stderr)")
        let lines = created.stdout.split(separator: "\n").map(String.init)
        let id = try #require(lines.first?.split(separator: " ").dropFirst().first.map(String.init), "\(created.stdout)")
        let key = try #require(lines.first { $0.hasPrefix("key ") }.map { String($0.dropFirst(4)) }, "\(created.stdout)")
        #expect(lines.contains { $0.hasPrefix("feed signing-key ") && $0.contains("kinds \(kinds.joined(separator: ","))") })
        return Partner(id: id, key: key, signingKey: signing)
    }

    static func partnerPost(
        _ ledger: ServedLedger, _ partner: Partner, _ path: String, body: Data, signature: String? = nil
    ) async throws -> HTTPReply {
        var headers = ["Content-Type": "application/json", "Authorization": "Bearer \(partner.key)"]
        if let signature { headers["Tanhui-Signature"] = signature }
        return try await HTTPClient.request(
            "POST", ledger.server.baseURL + "/v1/provinces/CN-GD/partners/\(partner.id)" + path, headers: headers, body: body)
    }

    static func sign(_ body: Data, with key: Curve25519.Signing.PrivateKey) throws -> String {
        "ed25519=" + (try key.signature(for: body)).base64EncodedString()
    }

    /// A citizen's device requests a code; the partner confirms it for `subject`.
    static func link(_ ledger: ServedLedger, _ partner: Partner, token: String, subject: String) async throws -> String {
        let requested = try await ledger.post(
            "/v1/sync/link-codes", body: try JSONSerialization.data(withJSONObject: ["partner": partner.id, "scene": "metro app"]), token: token)
        #expect(requested.status == 201, "\(requested.body)")
        let code = try #require(try S.json(requested.body)["code"] as? String)
        let confirmed = try await partnerPost(
            ledger, partner, "/links", body: try JSONSerialization.data(withJSONObject: ["link_code": code, "subject": subject]))
        #expect(confirmed.status == 201, "\(confirmed.body)")
        #expect(!confirmed.body.contains("citizen"), "the partner never learns the citizen's id")
        // A code is good once.
        let again = try await partnerPost(
            ledger, partner, "/links", body: try JSONSerialization.data(withJSONObject: ["link_code": code, "subject": subject + "-other"]))
        S.expectProblem(again, 404, "unknown_link_code")
        return try #require(try S.json(confirmed.body)["id"] as? String)
    }

    static func record(
        _ recordID: String, subject: String, at start: Date, kind: String = "transit_trip", meters: Int = 2_000, evidence: String? = nil
    ) -> [String: Any] {
        var object: [String: Any] = ["record_id": recordID, "subject": subject, "kind": kind, "occurred_at": F.iso(start)]
        if kind == "transit_trip" {
            object["ended_at"] = F.iso(start.addingTimeInterval(180))
            object["data"] = ["mode": "metro", "distance_m": meters]
        }
        if let evidence { object["evidence"] = ["source": "gz-metro", "ref": evidence] }
        return object
    }

    static func byRecord(_ reply: HTTPReply) throws -> [String: [String: Any]] {
        Dictionary(uniqueKeysWithValues: try S.results(reply).map { ($0["record_id"] as? String ?? "", $0) })
    }

    @Test(
        "link flow, signed records credited to the linked citizen, unlinked kept, replay all duplicates, forged or altered signatures 401 with nothing stored"
    )
    func linkedRecords() async throws {
        try await S.with { ledger in
            let partner = try await Self.register(ledger)
            let citizen = UUID()
            let token = try await S.token(citizen)
            // A record before any link, then the link.
            let beforeLink = Date().addingTimeInterval(-3600)
            let linkID = try await Self.link(ledger, partner, token: token, subject: "u-1")
            let afterLink = Date().addingTimeInterval(1)

            let body = try JSONSerialization.data(withJSONObject: [
                "records": [
                    Self.record("r-1", subject: "u-1", at: afterLink, evidence: "TXN-1"),
                    Self.record("r-2", subject: "u-1", at: beforeLink),
                    Self.record("r-3", subject: "nobody", at: afterLink),
                    Self.record("r-4", subject: "u-1", at: afterLink, kind: "waste_sorting"),
                    ["record_id": "r-5", "subject": "u-1", "kind": "transit_trip"] as [String: Any],
                ]
            ])
            try await Task.sleep(for: .seconds(1.2))
            let signature = try Self.sign(body, with: partner.signingKey)
            let first = try await Self.partnerPost(ledger, partner, "/records", body: body, signature: signature)
            #expect(first.status == 200, "\(first.body)")
            let results = try Self.byRecord(first)
            #expect(results["r-1"]?["status"] as? String == "accepted", "\(first.body)")
            #expect(((results["r-1"]?["award"] as? [String: Any])?["points"] as? Int ?? 0) > 0)
            #expect(results["r-2"]?["code"] as? String == "unlinked", "a later link does not credit the past")
            #expect(results["r-3"]?["code"] as? String == "unlinked")
            #expect(results["r-4"]?["code"] as? String == "kind_not_in_scope")
            #expect(results["r-5"]?["code"] as? String == "invalid")

            // The award is the linked citizen's, stored as a partner's event.
            let pulled = try await ledger.pull(token: token)
            #expect((pulled["entries"] as? [[String: Any]])?.count == 1)
            #expect(try await ledger.count("SELECT count(*) FROM events WHERE device_id = \("partner:" + partner.id)") == 1)
            // The partner is not recorded as one of the citizen's devices.
            #expect(try await ledger.count("SELECT count(*) FROM citizen_devices WHERE citizen_id = \(citizen)") == 0)
            #expect(try await ledger.count("SELECT count(*) FROM partner_records") == 4)
            #expect(try await ledger.count("SELECT count(*) FROM partner_records WHERE code = 'unlinked' AND citizen_id IS NULL") == 2)

            // Replay of the same signed request: every stored record is a duplicate; nothing new.
            let replay = try await Self.partnerPost(ledger, partner, "/records", body: body, signature: signature)
            #expect(replay.status == 200, "\(replay.body)")
            let replayed = try Self.byRecord(replay)
            for id in ["r-1", "r-2", "r-3", "r-4"] {
                #expect(replayed[id]?["status"] as? String == "duplicate", "\(id): \(replay.body)")
            }
            #expect(replayed["r-1"]?["original_status"] as? String == "accepted")
            #expect(replayed["r-2"]?["code"] as? String == "unlinked")
            #expect(try await ledger.count("SELECT count(*) FROM partner_records") == 4)
            #expect(try await ledger.count("SELECT count(*) FROM ledger_transactions") == 1)

            // Forged (another key), altered (one byte changed after signing), missing or
            // malformed signatures: 401 and nothing stored.
            let fresh = try JSONSerialization.data(withJSONObject: ["records": [Self.record("r-9", subject: "u-1", at: afterLink)]])
            var altered = fresh
            altered[altered.firstIndex(of: UInt8(ascii: "9"))!] = UInt8(ascii: "8")
            for (bytes, signature) in [
                (fresh, try Self.sign(fresh, with: Curve25519.Signing.PrivateKey())), (altered, try Self.sign(fresh, with: partner.signingKey)),
                (fresh, nil), (fresh, "ed25519=AAAA"), (fresh, "hmac=" + Data(repeating: 1, count: 32).base64EncodedString()),
            ] as [(Data, String?)] {
                let reply = try await Self.partnerPost(ledger, partner, "/records", body: bytes, signature: signature)
                S.expectProblem(reply, 401, "bad_signature")
            }
            #expect(try await ledger.count("SELECT count(*) FROM partner_records") == 4)
            #expect(try await ledger.count("SELECT count(*) FROM events") == 1)

            // Revocation from the device: records after it are unlinked; the list shows it.
            let revoked = try await HTTPClient.request(
                "DELETE", ledger.server.baseURL + "/v1/sync/links/\(linkID)", headers: ["Authorization": "Bearer \(token)"])
            #expect(revoked.status == 200, "\(revoked.body)")
            #expect(try S.json(revoked.body)["revoked_at"] is String)
            let listed = try await HTTPClient.request("GET", ledger.server.baseURL + "/v1/sync/links", headers: ["Authorization": "Bearer \(token)"])
            let links = try #require(try S.json(listed.body)["links"] as? [[String: Any]])
            #expect(links.count == 1 && links.first?["id"] as? String == linkID && links.first?["revoked_at"] is String)
            // Another citizen cannot revoke (or see) it.
            let stranger = try await HTTPClient.request(
                "DELETE", ledger.server.baseURL + "/v1/sync/links/\(linkID)", headers: ["Authorization": "Bearer \(try await S.token(UUID()))"])
            S.expectProblem(stranger, 404, "no_link")
            try await Task.sleep(for: .seconds(1.2))
            let late = try JSONSerialization.data(withJSONObject: ["records": [Self.record("r-10", subject: "u-1", at: Date())]])
            let afterRevocation = try await Self.partnerPost(
                ledger, partner, "/records", body: late, signature: try Self.sign(late, with: partner.signingKey))
            #expect(try Self.byRecord(afterRevocation)["r-10"]?["code"] as? String == "unlinked", "\(afterRevocation.body)")

            // A key acts for its own partner id only.
            var other = partner
            other.id = UUID().uuidString.lowercased()
            S.expectProblem(try await Self.partnerPost(ledger, other, "/records", body: late, signature: nil), 403, "forbidden")

            // Sealed and audited clean, links and partner records included.
            let sealed = try await CommandRunner.tanhui(["ledger", "seal"], databaseURL: ledger.url)
            #expect(sealed.exitCode == 0, "\(sealed.stderr)")
            let audit = try await CommandRunner.tanhui(["audit", "--province", "CN-GD"], databaseURL: ledger.url)
            #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)")
        }
    }

    @Test("evidence of a partner-owned source: a device claiming it is rejected evidence_partner_owned; the owning partner's record is credited")
    func ownedEvidence() async throws {
        try await S.with { ledger in
            let partner = try await Self.register(ledger)
            let citizen = UUID()
            let token = try await S.token(citizen)
            _ = try await Self.link(ledger, partner, token: token, subject: "u-7")
            let start = Date().addingTimeInterval(-3000)
            // The device guesses the metro transaction number first.
            var guessed = S.event(kind: "transit_trip", start: start, minutes: 3, data: ["mode": "metro", "distance_m": 2_000])
            guessed["evidence"] = ["source": "gz-metro", "ref": "TXN-77"]
            let pushed = try await ledger.push([guessed], token: try await S.token(UUID(), device: "guesser"))
            #expect(try S.results(pushed).first?["code"] as? String == "evidence_partner_owned", "\(pushed.body)")

            // Another partner cannot own or credit the same source.
            let rival = try await CommandRunner.tanhui(
                ["partner", "create", "--province", "CN-GD", "--name", "Rival", "--scope", "feed", "--evidence-source", "gz-metro"],
                databaseURL: ledger.url)
            #expect(rival.exitCode == 1 && rival.stderr.contains("already owned"), "\(rival.stdout) \(rival.stderr)")
            #expect(try await ledger.count("SELECT count(*) FROM partners WHERE name = 'Rival'") == 0)

            try await Task.sleep(for: .seconds(1.2))
            let body = try JSONSerialization.data(withJSONObject: ["records": [Self.record("t-77", subject: "u-7", at: Date(), evidence: "TXN-77")]])
            let uploaded = try await Self.partnerPost(
                ledger, partner, "/records", body: body, signature: try Self.sign(body, with: partner.signingKey))
            #expect(try Self.byRecord(uploaded)["t-77"]?["status"] as? String == "accepted", "\(uploaded.body)")

            // Rotating the signing key: the old key's signatures stop verifying at once.
            let next = Curve25519.Signing.PrivateKey()
            let rotated = try await CommandRunner.tanhui(
                ["partner", "feed", "--province", "CN-GD", partner.id, "--signing-key", next.publicKey.rawRepresentation.base64EncodedString()],
                databaseURL: ledger.url)
            #expect(rotated.exitCode == 0, "\(rotated.stderr)")
            let more = try JSONSerialization.data(withJSONObject: ["records": [Self.record("t-78", subject: "u-7", at: Date(), kind: "transit_trip")]]
            )
            S.expectProblem(
                try await Self.partnerPost(ledger, partner, "/records", body: more, signature: try Self.sign(more, with: partner.signingKey)), 401,
                "bad_signature")
            let accepted = try await Self.partnerPost(ledger, partner, "/records", body: more, signature: try Self.sign(more, with: next))
            #expect(accepted.status == 200, "\(accepted.body)")
        }
    }

    @Test("receipts: the day's counts, grams, points and digest, signed with the checkpoint key, verified independently; the CLI prints the same")
    func receipts() async throws {
        let checkpointKey = Curve25519.Signing.PrivateKey()
        let environment = ["TANHUI_CHECKPOINT_KEY": checkpointKey.rawRepresentation.base64EncodedString()]
        try await S.with(environment: environment) { ledger in
            let partner = try await Self.register(ledger)
            let token = try await S.token(UUID())
            _ = try await Self.link(ledger, partner, token: token, subject: "u-1")
            try await Task.sleep(for: .seconds(1.2))
            let body = try JSONSerialization.data(withJSONObject: [
                "records": [
                    Self.record("b", subject: "u-1", at: Date()), Self.record("a", subject: "nobody", at: Date()),
                    Self.record("c", subject: "u-1", at: Date(), kind: "waste_sorting"),
                ]
            ])
            let uploaded = try await Self.partnerPost(
                ledger, partner, "/records", body: body, signature: try Self.sign(body, with: partner.signingKey))
            let results = try Self.byRecord(uploaded)
            let points = ((results["b"]?["award"] as? [String: Any])?["points"] as? Int) ?? -1
            let grams = ((results["b"]?["award"] as? [String: Any])?["grams_co2e"] as? Int) ?? -1
            #expect(points > 0, "\(uploaded.body)")

            var day = Calendar(identifier: .gregorian)
            day.timeZone = TimeZone(identifier: "UTC")!
            let parts = day.dateComponents([.year, .month, .day], from: Date())
            let date = String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
            let reply = try await HTTPClient.request(
                "GET", ledger.server.baseURL + "/v1/provinces/CN-GD/partners/\(partner.id)/receipts?date=\(date)",
                headers: ["Authorization": "Bearer \(partner.key)"])
            #expect(reply.status == 200, "\(reply.body)")
            let receipt = try S.json(reply.body)
            #expect(receipt["records"] as? Int == 3 && receipt["accepted"] as? Int == 1 && receipt["rejected"] as? Int == 2)
            #expect(receipt["points"] as? Int == points && receipt["grams_co2e"] as? Int == grams)

            // Independently: the digest from the verdicts the partner received, sorted by record id,
            // and the signature over the note's text with the checkpoint key's public half.
            let lines = [("a", "rejected/unlinked", 0), ("b", "accepted", points), ("c", "rejected/kind_not_in_scope", 0)]
                .map { "\($0.0.utf8.count):\($0.0);\($0.1);\($0.2)\n" }.joined()
            let digest = SHA256.hash(data: Data(lines.utf8)).map { String(format: "%02x", $0) }.joined()
            #expect(receipt["digest"] as? String == digest)
            let note = try #require(receipt["note"] as? String)
            let signatureLine = try #require(note.range(of: "signature "))
            let signedText = String(note[..<signatureLine.lowerBound])
            let signature = try #require(Data(base64Encoded: note[signatureLine.upperBound...].trimmingCharacters(in: .newlines)))
            #expect(checkpointKey.publicKey.isValidSignature(signature, for: Data(signedText.utf8)))
            #expect(signedText.contains("digest \(digest)\n") && signedText.contains("points \(points)\n"))
            let forged = signedText.replacingOccurrences(of: "points \(points)", with: "points \(points + 1)")
            #expect(!checkpointKey.publicKey.isValidSignature(signature, for: Data(forged.utf8)))

            let printed = try await CommandRunner.tanhui(
                ["partner", "receipt", "--province", "CN-GD", "--date", date, partner.id], databaseURL: ledger.url, environment: environment)
            #expect(printed.exitCode == 0, "\(printed.stderr)")
            #expect(printed.stdout.hasPrefix(signedText))
            let badDate = try await HTTPClient.request(
                "GET", ledger.server.baseURL + "/v1/provinces/CN-GD/partners/\(partner.id)/receipts?date=2026-02-30",
                headers: ["Authorization": "Bearer \(partner.key)"])
            S.expectProblem(badDate, 400, "bad_date")
        }
    }

    @Test(
        "a rule set saying sources: partner_only: a device's trip is rejected self_report_not_accepted, the partner's record is credited; simulate says the same"
    )
    func partnerOnlyKinds() async throws {
        try await S.with { ledger in
            let partner = try await Self.register(ledger)
            let document = try F.ruleSetDocument()
                .replacingOccurrences(of: "version: 1\n", with: "version: 2\n")
                .replacingOccurrences(
                    of: "effective_from: 2026-01-01T00:00:00+08:00", with: "effective_from: \(F.iso(Date().addingTimeInterval(-7200)))"
                )
                .replacingOccurrences(
                    of: "  - kind: transit_trip\n    method: per_distance\n",
                    with: "  - kind: transit_trip\n    method: per_distance\n    sources: partner_only\n")
            #expect(document.contains("sources: partner_only"))
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("partner-only-\(UUID()).yaml").path
            try document.write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let published = try await CommandRunner.tanhui(["rules", "publish", file], databaseURL: ledger.url)
            #expect(published.exitCode == 0, "\(published.stderr)")

            let token = try await S.token(UUID())
            let start = Date().addingTimeInterval(-1800)
            let pushed = try await ledger.push(
                [S.event(kind: "transit_trip", start: start, minutes: 3, data: ["mode": "metro", "distance_m": 2_000]), S.event(start: start)],
                token: token)
            #expect(
                try S.results(pushed).map { $0["code"] as? String ?? $0["status"] as? String } == ["self_report_not_accepted", "accepted"],
                "\(pushed.body)")

            _ = try await Self.link(ledger, partner, token: token, subject: "u-1")
            try await Task.sleep(for: .seconds(1.2))
            let body = try JSONSerialization.data(withJSONObject: ["records": [Self.record("p-1", subject: "u-1", at: Date())]])
            let uploaded = try await Self.partnerPost(
                ledger, partner, "/records", body: body, signature: try Self.sign(body, with: partner.signingKey))
            #expect(try Self.byRecord(uploaded)["p-1"]?["status"] as? String == "accepted", "\(uploaded.body)")

            let events = FileManager.default.temporaryDirectory.appendingPathComponent("partner-only-\(UUID()).jsonl").path
            let line = try JSONSerialization.data(
                withJSONObject: S.event(kind: "transit_trip", start: start, minutes: 3, data: ["mode": "metro", "distance_m": 2_000]))
            try line.write(to: URL(fileURLWithPath: events))
            defer { try? FileManager.default.removeItem(atPath: events) }
            let simulated = try await CommandRunner.tanhui(["rules", "simulate", file, "--events", events], databaseURL: nil)
            #expect(simulated.stdout.contains("self_report_not_accepted"), "\(simulated.stdout) \(simulated.stderr)")
        }
    }
}
