import Crypto
package import Foundation
package import TanhuiPostgres

/// The per-province hash chain over ledger transactions, and signed checkpoints of its head.
///
/// Sealing is asynchronous (a background task in `serve`, and before every checkpoint): it
/// appends links in transaction-id order up to a watermark below which every transaction
/// is final (`watermark`), so no award waits on a chain lock and nothing is skipped.
package enum LedgerChain {
    /// The link before the first: 64 zeros.
    package static let genesisHash = String(repeating: "0", count: 64)
    /// Most transactions sealed per round; the rest wait for the next round.
    package static let maximumPerSeal = 20_000

    /// Canonical bytes of a transaction and its entries: length-prefixed fields in a fixed order.
    package static func canonical(_ row: SealedRow) -> String {
        let fields: [String] = [
            "tanhui-tx-v1", row.province, String(row.transactionID), row.kind, row.citizenID.uuidString.lowercased(),
            String(row.citizenSeq), row.eventID.uuidString.lowercased(), String(row.points), String(row.gramsCO2e),
            String(row.ruleSetVersion), row.methodology, row.reversesID.map(String.init) ?? "-",
            String(row.createdAtMicroseconds), row.entries,
        ]
        return fields.map { "\($0.utf8.count):\($0);" }.joined()
    }

    package static func link(previous: String, row: SealedRow) -> String {
        var hasher = SHA256()
        hasher.update(data: Data(previous.utf8))
        hasher.update(data: Data(canonical(row).utf8))
        return hasher.finalize().hexString
    }

    /// A transaction as the chain sees it.
    package struct SealedRow: Sendable {
        package var province: String
        package var transactionID: Int64
        package var kind: String
        package var citizenID: UUID
        package var citizenSeq: Int64
        package var eventID: UUID
        package var points: Int64
        package var gramsCO2e: Int64
        package var ruleSetVersion: Int
        package var methodology: String
        package var reversesID: Int64?
        package var createdAtMicroseconds: Int64
        /// `account=points` pairs sorted by account, comma-separated.
        package var entries: String
    }

    /// The SELECT list that produces a `SealedRow` (shared by the sealer and the audit).
    package static let rowColumns: SQLFragment = """
        t.province, t.transaction_id, t.kind, t.citizen_id, t.citizen_seq, t.event_id, t.points, t.grams_co2e,
        t.rule_set_version, t.methodology, t.reverses_id, (extract(epoch FROM t.created_at) * 1000000)::bigint,
        (SELECT coalesce(string_agg(e.account || '=' || e.points, ',' ORDER BY e.account), '')
           FROM ledger_entries e WHERE e.province = t.province AND e.transaction_id = t.transaction_id)
        /* citus: multi-shard (a fragment: the statements using it fix t.province) */
        """

    package static func decodeRow(_ row: PostgresRow) throws -> SealedRow {
        SealedRow(
            province: try row.decode(0), transactionID: try row.decode(1), kind: try row.decode(2), citizenID: try row.decode(3),
            citizenSeq: try row.decode(4), eventID: try row.decode(5), points: try row.decode(6), gramsCO2e: try row.decode(7),
            ruleSetVersion: try row.decode(8), methodology: try row.decode(9), reversesID: try row.decode(10, as: Int64?.self),
            createdAtMicroseconds: try row.decode(11), entries: try row.decode(12)
        )
    }

    /// The highest transaction id below which every ledger write of `province` has committed
    /// or rolled back. Every ledger write holds the province's publication lock in shared mode
    /// from before it draws transaction ids until it commits; holding it exclusively for an
    /// instant therefore means none is in flight, and every id drawn so far is final.
    static func watermark(province: String, on connection: PostgresConnection) throws -> Int64 {
        try connection.query("SELECT pg_advisory_xact_lock(hashtext(\(RuleSetService.publicationLockKey(province))))")
        return try connection.query("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ledger_transaction_ids").scalar(Int64.self)
    }

    static func sealedThroughQuery(_ province: String) -> PostgresQuery {
        "SELECT coalesce(max(transaction_id), 0) FROM ledger_chain WHERE province = \(province)"
    }

    static func pendingQuery(_ province: String, after sealedThrough: Int64, through watermark: Int64) -> PostgresQuery {
        """
        SELECT \(rowColumns) FROM ledger_transactions t
        WHERE t.province = \(province) AND t.transaction_id > \(sealedThrough) AND t.transaction_id <= \(watermark)
        ORDER BY t.transaction_id LIMIT \(maximumPerSeal)
        """
    }

    /// Seals one round for a province up to `watermark`; returns how many were sealed.
    /// The chain follows transaction-id order, so the next links start after the highest id
    /// sealed (a range scan of the primary key, no anti-join).
    static func seal(province: String, through watermark: Int64, on connection: PostgresConnection) throws -> Int {
        try connection.query("SELECT pg_advisory_xact_lock(hashtext(\("tanhui.seal." + province)))")
        let head = try connection.query("""
            SELECT chain_seq, hash FROM ledger_chain WHERE province = \(province) ORDER BY chain_seq DESC LIMIT 1
            """).first
        var seq: Int64 = try head?.decode(0) ?? 0
        var previous: String = try head?.decode(1) ?? genesisHash
        let sealedThrough = try connection.query(sealedThroughQuery(province)).scalar(Int64.self)
        let pending = try connection.query(pendingQuery(province, after: sealedThrough, through: watermark))
        guard !pending.rows.isEmpty else { return 0 }
        var seqs: [Int64] = [], ids: [Int64] = [], previousHashes: [String] = [], hashes: [String] = []
        for row in pending.rows {
            let sealed = try decodeRow(row)
            let hash = link(previous: previous, row: sealed)
            seq += 1
            seqs.append(seq)
            ids.append(sealed.transactionID)
            previousHashes.append(previous)
            hashes.append(hash)
            previous = hash
        }
        try connection.query("""
            INSERT INTO ledger_chain (province, chain_seq, transaction_id, previous_hash, hash)
            SELECT \(province), s, t, p, h FROM unnest(\(PostgresArray(seqs))::bigint[], \(PostgresArray(ids))::bigint[],
                                                   \(PostgresArray(previousHashes))::text[], \(PostgresArray(hashes))::text[]) AS r(s, t, p, h)
            RETURNING 1
            """)
        return pending.rows.count
    }
}
