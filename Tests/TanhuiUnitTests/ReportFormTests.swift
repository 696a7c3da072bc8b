import Crypto
import Foundation
import TanhuiService
import Testing

@Suite("Report forms: request checks, suppression, CSV, signed note")
struct ReportFormTests {
    static func cell(_ day: String, citizens: Int64, grams: Int64) -> ReportCell {
        ReportCell(
            keys: [.day: day], suppressed: false, accepted: citizens, rejected: 1, rejectedByCode: ["too_short": 1, "cap_reached": 2],
            gramsCO2e: grams, points: grams / 10, reversals: 0, citizens: citizens)
    }

    @Test("periods must be real dates in order and at most 400 days; dimensions must be known")
    func requests() {
        #expect(ReportRequest(province: "CN-GD", from: "2027-02-28", to: "2027-03-01", groupBy: []).problem() == nil)
        #expect(ReportRequest(province: "CN-GD", from: "2028-02-29", to: "2028-02-29", groupBy: []).problem() == nil)
        #expect(ReportRequest(province: "CN-GD", from: "2027-02-29", to: "2027-03-01", groupBy: []).problem() != nil)
        #expect(ReportRequest(province: "CN-GD", from: "2027-03-02", to: "2027-03-01", groupBy: []).problem() == "to is before from")
        #expect(ReportRequest(province: "CN-GD", from: "2026-01-01", to: "2027-02-05", groupBy: []).problem() != nil)
        #expect(ReportRequest(province: "CN-GD", from: "2026-01-01", to: "2027-02-04", groupBy: []).problem() == nil)
        #expect(ReportRequest(province: "CN-GD", from: "27-03-01", to: "2027-03-01", groupBy: []).problem() != nil)
        #expect((try? ReportDimension.parseList("district,day").get()) == [.day, .district])
        #expect((try? ReportDimension.parseList("day,citizen").get()) == nil)
    }

    @Test("a cell under the threshold keeps its keys and loses every figure")
    func suppression() {
        let small = Report.suppress(Self.cell("2027-03-01", citizens: 9, grams: 500), threshold: 10)
        #expect(small.suppressed && small.keys[.day] == "2027-03-01")
        #expect(small.accepted == nil && small.gramsCO2e == nil && small.citizens == nil && small.rejectedByCode == nil)
        let large = Report.suppress(Self.cell("2027-03-01", citizens: 10, grams: 500), threshold: 10)
        #expect(!large.suppressed && large.gramsCO2e == 500)
    }

    @Test("the CSV has one row per cell and a total; the note signs its SHA-256 and verifies with the public key")
    func csvAndNote() throws {
        let request = ReportRequest(province: "CN-GD", from: "2027-03-01", to: "2027-03-02", groupBy: [.day])
        let cells = [
            Self.cell("2027-03-01", citizens: 12, grams: 905), Report.suppress(Self.cell("2027-03-02", citizens: 3, grams: 7), threshold: 10),
        ]
        let report = Report(
            request: request, head: ReportChainHead(chainSeq: 42, hash: String(repeating: "a", count: 64), sealID: 99), threshold: 10,
            cells: cells, total: Self.cell("", citizens: 15, grams: 912))
        #expect(
            report.csv == """
                scope,day,suppressed,accepted,rejected,rejected_by_code,grams_co2e,points,reversals,citizens
                cell,2027-03-01,false,12,1,cap_reached=2 too_short=1,905,90,0,12
                cell,2027-03-02,true,,,,,,,
                total,,false,15,1,cap_reached=2 too_short=1,912,91,0,15

                """)
        let key = Curve25519.Signing.PrivateKey()
        let signed = try SignedReport.sign(report, privateKey: key, at: Date(timeIntervalSince1970: 1_800_000_000))
        let parts = signed.note.components(separatedBy: "signature ")
        #expect(parts.count == 2)
        let signatureText = parts[1].replacingOccurrences(of: "\n", with: "")
        let signature = try #require(Data(base64Encoded: signatureText))
        #expect(key.publicKey.isValidSignature(signature, for: Data(parts[0].utf8)))
        #expect(parts[0].contains("sequence 42\nhead \(String(repeating: "a", count: 64))\nseal 99\n"))
        let digest = SHA256.hash(data: Data(report.csv.utf8)).map { String(format: "%02x", $0) }.joined()
        #expect(parts[0].contains("csv \(digest)\n"))
        #expect(!Curve25519.Signing.PrivateKey().publicKey.isValidSignature(signature, for: Data(parts[0].utf8)))
    }
}
