import Crypto
import Foundation
import TanhuiPostgres
import Testing

@testable import TanhuiService

@Suite("Chain v2: the hashed bytes are exactly the documented canonical form")
struct ChainCanonicalFormTests {
    static func documentedLink(previous: String, record: LedgerChain.RecordV2) -> String {
        SHA256.hash(data: Data((previous + LedgerChain.canonicalV2(record)).utf8)).hexString
    }

    @Test("linkV2 equals SHA-256(previous ‖ canonicalV2) for NULLs, empty, multi-byte and long fields")
    func linkMatchesCanonicalForm() {
        let record = LedgerChain.RecordV2(
            record: .event, sealID: 42, key: "k",
            fields: ["CN-GD", nil, "", "广州 ✓", String(repeating: "x", count: 1000), "1700000000000000", nil])
        #expect(LedgerChain.canonicalV2(record).hasPrefix("15:tanhui-event-v2;5:CN-GD;~;0:;"))
        #expect(
            LedgerChain.linkV2(previous: LedgerChain.genesisHash, record: record)
                == Self.documentedLink(previous: LedgerChain.genesisHash, record: record))
        for kind in LedgerChain.Record.allCases {
            let other = LedgerChain.RecordV2(record: kind, sealID: 1, key: "1", fields: ["a", "bc", nil])
            #expect(LedgerChain.linkV2(previous: "p", record: other) == Self.documentedLink(previous: "p", record: other))
        }
    }

    @Test("the chain-order instant of a v2 created_at field: exact inside years 1000…9999, Int64.min outside or for infinity")
    func createdAtBounds() {
        #expect(ProvinceAudit.createdAtMicroseconds("1700000000123456") == 1_700_000_000_123_456)
        #expect(ProvinceAudit.createdAtMicroseconds("-30610224000000000") == -30_610_224_000_000_000)
        #expect(ProvinceAudit.createdAtMicroseconds("-30610224000000001") == Int64.min)
        #expect(ProvinceAudit.createdAtMicroseconds("253402214400000000") == 253_402_214_400_000_000)
        #expect(ProvinceAudit.createdAtMicroseconds("253402214400000001") == Int64.min)
        #expect(ProvinceAudit.createdAtMicroseconds("infinity") == Int64.min)
        #expect(ProvinceAudit.createdAtMicroseconds(nil) == Int64.min)
    }

    @Test("citizen ranges cover the uuid space in order, without gaps or overlaps")
    func citizenRanges() {
        for count in [1, 2, 3, 7, 8] {
            let ranges = ProvinceAudit.citizenRanges(count)
            #expect(ranges.count == count)
            #expect(ranges.first?.lower == nil && ranges.last?.upper == nil)
            for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upper != nil && a.upper == b.lower) }
            let bounds = ranges.compactMap(\.lower)
            #expect(bounds == bounds.sorted() && Set(bounds).count == bounds.count)
            #expect(bounds.allSatisfy { UUID(uuidString: $0) != nil })
        }
    }

    @Test("chain ranges join without gaps or overlaps, split only when each gets enough links, and never overflow on a tampered chain_seq")
    func chainRanges() {
        for (count, after, last) in [(2, Int64(0), Int64(10_000)), (3, 500, 7_001), (8, 0, 1_000_003), (64, 7, 640_007)] {
            let ranges = ProvinceAudit.chainRanges(count, after: after, through: last, minimumLinks: 1000)
            #expect(ranges.count == count)
            #expect(ranges.first?.afterSeq == after && ranges.last?.throughSeq == Int64.max)
            for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.throughSeq == b.afterSeq && a.afterSeq < a.throughSeq) }
            #expect(ranges.dropLast().last.map { $0.throughSeq <= last } ?? true)
        }
        #expect(ProvinceAudit.chainRanges(4, after: 0, through: 3_999, minimumLinks: 1000).count == 1)
        #expect(ProvinceAudit.chainRanges(1, after: 0, through: 1_000_000, minimumLinks: 1).count == 1)
        // A chain_seq edited to Int64.max, a huge --chain-range-links: ranges, not a trap.
        let tampered = ProvinceAudit.chainRanges(8, after: 0, through: Int64.max, minimumLinks: 1000)
        #expect(tampered.count == 8)
        for (a, b) in zip(tampered, tampered.dropFirst()) { #expect(a.throughSeq == b.afterSeq) }
        #expect(ProvinceAudit.chainRanges(8, after: 5, through: Int64.max, minimumLinks: Int64.max).count == 1)
        #expect(ProvinceAudit.chainRanges(8, after: 10, through: 3, minimumLinks: 1).count == 1)
    }
}
