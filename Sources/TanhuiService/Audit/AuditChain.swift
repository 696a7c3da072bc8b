import Foundation
import TanhuiPostgres

// The chain replay's reads. The chain follows seal-id order, so the record each link seals is
// found by merging the links (in chain_seq order) with each kind's records (in seal-id
// order, read in chunks of ids): a few range scans instead of one index look-up per link
// and per joined table. A link whose record is not where the merge expects it (out of
// order, edited seal id, missing) is looked up by its key, so a tampered chain gets exactly
// the verdicts a join would give.

/// One kind's sealed records in seal-id order, a chunk of seal ids at a time; `Value` is
/// what a row decodes to (from column 2 on: columns 0 and 1 are the seal id and the key).
final class SealedRecordStream<Value> {
    let connection: PostgresConnection
    /// Seal ids per fetch (at most that many rows: seal ids are unique per kind).
    let span: Int64
    private let query: (_ after: Int64, _ through: Int64) -> PostgresQuery
    private let lookup: (_ key: String) -> PostgresQuery
    private let decodeValue: (PostgresRow) throws -> Value
    private var buffer: [(sealID: Int64, key: String, value: Value)] = []
    private var index = 0
    private var fetchedThrough: Int64

    init(
        connection: PostgresConnection, span: Int64, after: Int64, query: @escaping (Int64, Int64) -> PostgresQuery,
        lookup: @escaping (String) -> PostgresQuery, decode: @escaping (PostgresRow) throws -> Value
    ) {
        self.connection = connection
        self.span = span
        self.query = query
        self.lookup = lookup
        self.decodeValue = decode
        fetchedThrough = after
    }

    private func read(_ statement: PostgresQuery) throws -> [(sealID: Int64, key: String, value: Value)] {
        try connection.query(statement).rows.map { (try $0.decode(0), try $0.decode(1), try decodeValue($0)) }
    }

    /// The record with this seal id and key; nil when it does not exist.
    func value(sealID: Int64?, key: String?) throws -> Value? {
        guard let key else { return nil }
        if let sealID {
            while index < buffer.count && buffer[index].sealID < sealID { index += 1 }
            if index == buffer.count && sealID > fetchedThrough {
                let after = max(fetchedThrough, sealID - 1)
                let through = after > Int64.max - span ? Int64.max : after + span
                buffer = try read(query(after, through))
                index = 0
                fetchedThrough = through
            }
            var probe = index
            while probe < buffer.count && buffer[probe].sealID == sealID {
                if buffer[probe].key == key {
                    index = probe + 1
                    return buffer[probe].value
                }
                probe += 1
            }
        }
        // Not where seal-id order puts it: looked up by key (a disordered or tampered chain).
        return try read(lookup(key)).first?.value
    }
}

/// Links with chain_seq in (afterSeq, throughSeq]: one worker's share of a province chain.
struct ChainRange: Sendable, Equatable {
    var afterSeq: Int64
    var throughSeq: Int64
}

/// A sealed record as the chain replay needs it: its v2 fields in canonical form, and a
/// transaction's created_at for the chain-order check.
struct SealedFields {
    var encoded: [UInt8]
    var createdAtMicroseconds: Int64?
}

extension ProvinceAudit {
    /// Seal ids per chunk read of each kind.
    static let chainChunkIDs: Int64 = 20_000

    /// `count` ranges splitting the links after `afterSeq` up to `lastSeq` evenly (one range
    /// when that leaves fewer than `minimumLinks` each); the last range has no upper end.
    static func chainRanges(_ count: Int, after afterSeq: Int64, through lastSeq: Int64, minimumLinks: Int64) -> [ChainRange] {
        // Overflow-free for any stored chain_seq (a tampered one near Int64.max included).
        let links = lastSeq > afterSeq ? lastSeq.subtractingReportingOverflow(afterSeq) : (partialValue: 0, overflow: false)
        let parts = Int64(max(1, min(count, 64)))
        guard parts > 1, !links.overflow, links.partialValue / parts >= max(1, minimumLinks) else {
            return [ChainRange(afterSeq: afterSeq, throughSeq: Int64.max)]
        }
        let (share, rest) = links.partialValue.quotientAndRemainder(dividingBy: parts)
        func bound(_ index: Int64) -> Int64 { afterSeq + share * index + rest * index / parts }
        return (0..<parts).map { index in
            ChainRange(afterSeq: bound(index), throughSeq: index == parts - 1 ? Int64.max : bound(index + 1))
        }
    }

    /// The state before a range's first link: the checkpoint's (or genesis) for the first
    /// range; otherwise taken from the preceding link, and the latest created_at from the
    /// transactions with lower ids. That is exact for a chain in order; the coordinator
    /// compares it with the state the preceding range left and replays again if they differ.
    func enteringState(_ range: ChainRange) throws -> ChainState {
        var state = ChainState(after: sinceSeq, head: sinceHead, sealedThrough: sinceID)
        guard range.afterSeq > sinceSeq,
            let previous = try connection.query(
                """
                SELECT chain_seq, hash, coalesce(seal_id, transaction_id), format FROM ledger_chain
                WHERE province = \(province) AND chain_seq > \(sinceSeq) AND chain_seq <= \(range.afterSeq) ORDER BY chain_seq DESC LIMIT 1
                """
            ).first
        else { return state }
        state.expectedSeq = try previous.decode(0, as: Int64.self) &+ 1
        state.head = try previous.decode(1)
        if let id = try previous.decode(2, as: Int64?.self) { state.lastOrderID = max(state.lastOrderID ?? id, id) }
        if try previous.decode(3, as: Int.self) == 2 { state.sawV2 = true }
        if let bound = state.lastOrderID,
            let latest = try connection.query(
                """
                SELECT micros, transaction_id FROM (
                    SELECT transaction_id, CASE WHEN created_at BETWEEN '1000-01-01' AND '9999-12-31' THEN trunc(extract(epoch FROM created_at) * 1000000)::bigint END AS micros
                    FROM ledger_transactions WHERE province = \(province) AND transaction_id > \(sinceID) AND transaction_id <= \(bound)) x
                WHERE micros IS NOT NULL ORDER BY micros DESC, transaction_id LIMIT 1
                """
            ).first
        {
            state.latestCreatedAtMicroseconds = try latest.decode(0)
            state.latestCreatedAtTransactionID = try latest.decode(1)
        }
        return state
    }

    /// The hash chain's links in `range`, recomputed with the sealer's own canonical forms
    /// (v1 links: transactions; v2 links: every kind of `LedgerChain.Record`), starting from
    /// `entering`; returns the state after the range's last link.
    mutating func chain(_ range: ChainRange, entering: ChainState, counter: RowCounter) throws -> ChainState {
        let links = try cursor(
            """
            DECLARE audit_chain NO SCROLL CURSOR FOR
            SELECT c.chain_seq, c.format, c.record, c.transaction_id, c.event_id::text, c.rule_set_version, c.seal_id, c.previous_hash, c.hash,
                   c.record_key
            FROM ledger_chain c
            WHERE c.province = \(province) AND c.chain_seq > \(max(sinceSeq, range.afterSeq)) AND c.chain_seq <= \(range.throughSeq)
            ORDER BY c.chain_seq
            """, name: "audit_chain", counter: counter)
        let province = self.province
        // Only where nested loops are off (the full audit): planned as a nested loop, the join
        // rescans the grouped entries per transaction (--since ran one chunk past a minute).
        let joiningEntries = !incremental
        var streams: [LedgerChain.Record: SealedRecordStream<SealedFields>] = [:]
        for record in LedgerChain.Record.allCases {
            let count = LedgerChain.fieldCount(record)
            streams[record] = SealedRecordStream(
                connection: connection, span: Self.chainChunkIDs, after: sinceID,
                query: { LedgerChain.sealedRecordsQuery(record, province: province, after: $0, through: $1, joiningEntries: joiningEntries) },
                lookup: { LedgerChain.sealedRecordQuery(record, province: province, key: $0) },
                decode: { row in
                    SealedFields(
                        encoded: LedgerChain.encodeFields(row, from: 2, count: count),
                        createdAtMicroseconds: record == .transaction
                            ? Self.createdAtMicroseconds(try row.decode(2 + Self.transactionCreatedAtField, as: String?.self)) : nil)
                })
        }
        // v1 links seal transactions in transaction-id order, in the v1 canonical form.
        let v1 = SealedRecordStream<LedgerChain.SealedRow>(
            connection: connection, span: Self.chainChunkIDs, after: 0,
            query: { after, through in
                """
                SELECT t.transaction_id, t.transaction_id::text, \(LedgerChain.rowColumns) FROM ledger_transactions t
                WHERE t.province = \(province) AND t.transaction_id > \(after) AND t.transaction_id <= \(through) ORDER BY t.transaction_id
                """
            },
            lookup: { key in
                """
                SELECT t.transaction_id, t.transaction_id::text, \(LedgerChain.rowColumns) FROM ledger_transactions t
                WHERE t.province = \(province) AND t.transaction_id = \(key)::bigint
                """
            },
            decode: { try LedgerChain.decodeRow($0, from: 2) })
        var replay = ChainReplay(province: province, sealBoundSeconds: options.sealBoundSeconds, state: entering)
        // Rows checked: the links and the records they seal (not the rows read, which for a
        // chain split between workers overlap at the ranges' edges).
        var sealedRecords: Int64 = 0
        while let row = try links.next() {
            var link = ChainLink(
                seq: try row.decode(0), format: try row.decode(1), record: try row.decode(2), transactionID: try row.decode(3, as: Int64?.self),
                eventID: try row.decode(4, as: String?.self), ruleSetVersion: try row.decode(5, as: Int?.self),
                sealID: try row.decode(6, as: Int64?.self),
                previousHash: try row.decode(7), hash: try row.decode(8), recordKey: try row.decode(9, as: String?.self))
            switch (link.format, LedgerChain.Record(rawValue: link.record)) {
            case (1, .transaction?):
                link.v1Row = try v1.value(sealID: link.transactionID, key: link.transactionID.map(String.init))
                link.createdAtMicroseconds = link.v1Row?.createdAtMicroseconds
                if link.v1Row != nil { sealedRecords += 1 }
            case (2, let record?):
                let sealed = try streams[record]!.value(sealID: link.sealID, key: Self.chainKey(record, of: link))
                link.encodedFields = sealed?.encoded
                link.createdAtMicroseconds = sealed?.createdAtMicroseconds
                if sealed != nil { sealedRecords += 1 }
            default:
                break
            }
            replay.link(link, into: &audit)
        }
        try links.close()
        counter.rows += sealedRecords
        progress?(sealedRecords)
        return replay.state
    }

    /// The key a link names its record by: the `ledger_chain` column of the kind's `keyColumn`.
    static func chainKey(_ record: LedgerChain.Record, of link: ChainLink) -> String? {
        switch record.keyColumn {
        case .transactionID: return link.transactionID.map(String.init)
        case .eventID: return link.eventID
        case .ruleSetVersion: return link.ruleSetVersion.map(String.init)
        case .recordKey: return link.recordKey
        }
    }

    /// Position of `created_at` in a transaction's v2 fields.
    static let transactionCreatedAtField = 17

    /// A v2 `created_at` field as the chain-order check compares it: like v1's, an instant
    /// outside years 1000…9999 (or `infinity`) is `Int64.min`, which trails every link.
    static func createdAtMicroseconds(_ field: String?) -> Int64 {
        guard let field, let micros = Int64(field), micros >= -30_610_224_000_000_000, micros <= 253_402_214_400_000_000 else { return Int64.min }
        return micros
    }
}
