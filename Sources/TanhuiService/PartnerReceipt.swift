import Crypto
package import Foundation
import TanhuiPostgres

/// A day's reconciliation between a feed partner and the province, signed with the checkpoint
/// key so either side can show an auditor what was credited.
///
/// The day is a UTC calendar day of `received_at`. The digest is the SHA-256 of one line per
/// record, sorted by record id (byte order): `<bytes of record_id>:<record_id>;<status>[/<code>];<points>\n`.
/// Text form (signed over every line before `signature`, like a checkpoint):
/// ```
/// tanhui-partner-receipt v1
/// province CN-GD
/// partner 7c0e…
/// date 2026-12-02
/// records 3
/// accepted 1
/// conflict 0
/// rejected 2
/// grams 93
/// points 9
/// digest 5e2b…
/// key <base64 Ed25519 public key>
/// signature <base64 Ed25519 signature>
/// ```
package struct PartnerReceipt: Sendable, Equatable {
    package var province: String
    package var partnerID: UUID
    package var date: String
    package var records: Int64
    package var accepted: Int64
    package var conflict: Int64
    package var rejected: Int64
    package var gramsCO2e: Int64
    package var points: Int64
    package var digest: String
    package var publicKey: Data
    package var signature: Data

    package var signedText: String {
        """
        tanhui-partner-receipt v1
        province \(province)
        partner \(partnerID.canonicalText)
        date \(date)
        records \(records)
        accepted \(accepted)
        conflict \(conflict)
        rejected \(rejected)
        grams \(gramsCO2e)
        points \(points)
        digest \(digest)
        key \(publicKey.base64EncodedString())

        """
    }

    package var note: String { signedText + "signature \(signature.base64EncodedString())\n" }

    /// One record's line of the digest.
    package static func digestLine(recordID: String, status: String, code: String?, points: Int64) -> String {
        "\(recordID.utf8.count):\(recordID);\(status)\(code.map { "/" + $0 } ?? "");\(points)\n"
    }

    /// `YYYY-MM-DD` of a real day, or nil.
    package static func parseDate(_ text: String) -> (year: Int, month: Int, day: Int)? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.utf8.count == 10, parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]), (2000...2099).contains(year), (1...12).contains(month)
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let range = calendar.range(of: .day, in: .month, for: calendar.date(from: DateComponents(year: year, month: month, day: 1))!),
            range.contains(day)
        else { return nil }
        return (year, month, day)
    }
}

extension PartnerFeedService {
    /// The signed receipt of the partner's records received on `date` (UTC).
    package func receipt(province: String, partner: UUID, date: String, checkpointKey: [UInt8]) async throws -> PartnerReceipt? {
        guard PartnerReceipt.parseDate(date) != nil else { return nil }
        let privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: checkpointKey)
        let from = date + "T00:00:00Z"
        return try await pool.withConnection { connection in
            var receipt = PartnerReceipt(
                province: province, partnerID: partner, date: date, records: 0, accepted: 0, conflict: 0, rejected: 0, gramsCO2e: 0, points: 0,
                digest: "", publicKey: privateKey.publicKey.rawRepresentation, signature: Data())
            var hasher = SHA256()
            for row in try connection.query(
                """
                SELECT r.record_id, r.status, r.code, coalesce(t.points, 0), coalesce(t.grams_co2e, 0)
                FROM partner_records r
                LEFT JOIN ledger_transactions t ON t.province = r.province AND t.event_id = r.event_id AND t.kind = 'award'
                WHERE r.province = \(province) AND r.partner_id = \(partner)
                  AND r.received_at >= \(from)::timestamptz AND r.received_at < \(from)::timestamptz + interval '1 day'
                ORDER BY r.record_id COLLATE "C"
                """
            ).rows {
                let status: String = try row.decode(1)
                let points: Int64 = try row.decode(3)
                let grams: Int64 = try row.decode(4)
                hasher.update(
                    data: Data(
                        PartnerReceipt.digestLine(
                            recordID: try row.decode(0), status: status, code: try row.decode(2, as: String?.self), points: points
                        ).utf8))
                receipt.records += 1
                switch status {
                case "accepted": receipt.accepted += 1
                case "conflict": receipt.conflict += 1
                default: receipt.rejected += 1
                }
                // Each award's points and grams are bounded by the ledger's checked sums; a day's
                // total saturates rather than trap on an absurd stored value.
                receipt.points = receipt.points.addingReportingOverflow(points).overflow ? .max : receipt.points + points
                receipt.gramsCO2e = receipt.gramsCO2e.addingReportingOverflow(grams).overflow ? .max : receipt.gramsCO2e + grams
            }
            receipt.digest = hasher.finalize().hexString
            receipt.signature = try Checkpoint.signText(receipt.signedText, privateKey: privateKey)
            return receipt
        }
    }
}
