import Crypto
import Foundation
import TanhuiPostgres
import Testing

/// Partner feeds on the distributed cluster: the link tables, partner records and the receipt
/// query all route by province, and the audit's partner checks run on the coordinator.
extension CitusClusterTests {
    @Test("partner feeds on the coordinator: a link, a signed upload credited to the linked citizen, a signed receipt, the audit clean")
    func partnerFeedsOnCluster() async throws {
        try Self.requireCluster()
        typealias P = PartnerFeedTests
        typealias S = ServedLedger
        let checkpointKey = Curve25519.Signing.PrivateKey()
        let environment = ["TANHUI_CHECKPOINT_KEY": checkpointKey.rawRepresentation.base64EncodedString()]
        try await Self.withTwoProvinces(events: 1) { _, url in
            let server = try await ServerProcess.start(databaseURL: url, environment: environment)
            let ledger = ServedLedger(server: server, url: url)
            do {
                let partner = try await P.register(ledger)
                let citizen = UUID()
                let token = try await S.token(citizen)
                _ = try await P.link(ledger, partner, token: token, subject: "u-1")
                try await Task.sleep(for: .seconds(1.2))
                let body = try JSONSerialization.data(withJSONObject: [
                    "records": [
                        P.record("c-1", subject: "u-1", at: Date(), meters: 4_000, evidence: "TXN-1"), P.record("c-2", subject: "nobody", at: Date()),
                    ]
                ])
                let signature = try P.sign(body, with: partner.signingKey)
                let uploaded = try await P.partnerPost(ledger, partner, "/records", body: body, signature: signature)
                #expect(uploaded.status == 200, "\(uploaded.body)")
                let results = try P.byRecord(uploaded)
                let award = try #require(results["c-1"]?["award"] as? [String: Any], "\(uploaded.body)")
                // 4 km on the metro at 46.7 g/km: 186.8 → 186 g → 18 points.
                #expect(award["grams_co2e"] as? Int == 186 && award["points"] as? Int == 18, "\(uploaded.body)")
                #expect(results["c-2"]?["code"] as? String == "unlinked")
                // The linked citizen sees the award; the rows sit in CN-GD's shards.
                let pulled = try await ledger.pull(token: token)
                #expect((pulled["entries"] as? [[String: Any]])?.count == 1, "\(pulled)")
                #expect(try await ledger.count("SELECT count(*) FROM partner_records WHERE province = 'CN-GD'") == 2)
                #expect(try await ledger.count("SELECT count(*) FROM partner_link_changes WHERE province = 'CN-GD'") == 1)
                // The same signed request again: all duplicates, nothing new.
                let replay = try await P.partnerPost(ledger, partner, "/records", body: body, signature: signature)
                #expect(try S.results(replay).allSatisfy { $0["status"] as? String == "duplicate" }, "\(replay.body)")
                #expect(try await ledger.count("SELECT count(*) FROM partner_records") == 2)

                // The day's receipt, signed with the checkpoint key, verified with its public half.
                var calendar = Calendar(identifier: .gregorian)
                calendar.timeZone = TimeZone(identifier: "UTC")!
                let parts = calendar.dateComponents([.year, .month, .day], from: Date())
                let date = String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
                let reply = try await HTTPClient.request(
                    "GET", server.baseURL + "/v1/provinces/CN-GD/partners/\(partner.id)/receipts?date=\(date)",
                    headers: ["Authorization": "Bearer \(partner.key)"])
                #expect(reply.status == 200, "\(reply.body)")
                let receipt = try S.json(reply.body)
                #expect(receipt["records"] as? Int == 2 && receipt["accepted"] as? Int == 1 && receipt["points"] as? Int == 18, "\(reply.body)")
                // One line per record sorted by record id: `<bytes of record_id>:<record_id>;<status>[/<code>];<points>\n`.
                let lines = [("c-1", "accepted", 18), ("c-2", "rejected/unlinked", 0)].map { "\($0.0.utf8.count):\($0.0);\($0.1);\($0.2)\n" }.joined()
                let digest = SHA256.hash(data: Data(lines.utf8)).map { String(format: "%02x", $0) }.joined()
                #expect(receipt["digest"] as? String == digest, "\(reply.body)")
                let note = try #require(receipt["note"] as? String)
                let signatureLine = try #require(note.range(of: "signature "))
                let signed = Data(note[..<signatureLine.lowerBound].utf8)
                let noteSignature = try #require(Data(base64Encoded: note[signatureLine.upperBound...].trimmingCharacters(in: .newlines)))
                #expect(checkpointKey.publicKey.isValidSignature(noteSignature, for: signed))

                // Sealed (links and records too) and audited clean on the coordinator, per province and all.
                let sealed = try await CommandRunner.tanhui(["ledger", "seal"], databaseURL: url, environment: environment)
                #expect(sealed.exitCode == 0, "\(sealed.stdout)\(sealed.stderr)")
                #expect(
                    try await ledger.count(
                        "SELECT count(*) FROM ledger_chain WHERE province = 'CN-GD' AND record IN ('partner_link', 'partner_record')") == 3)
                for arguments in [["audit", "--province", "CN-GD"], ["audit"]] {
                    let audit = try await CommandRunner.tanhui(arguments, databaseURL: url)
                    #expect(audit.exitCode == 0, "\(arguments): \(audit.stdout)\(audit.stderr)")
                }
            } catch {
                await server.stop()
                throw error
            }
            await server.stop()
        }
    }
}
