import Crypto
package import Foundation
package import TanhuiPostgres

/// The per-province hash chain over every stored record a verdict or a balance depends on
/// (v2: transactions, events, rule-set publications; v1 links: transactions only), and
/// signed checkpoints of its head.
///
/// Sealing is asynchronous (a background task in `serve`, and before every checkpoint): it
/// appends links in seal-id order up to a watermark below which every record is final
/// (`watermark`), so no award waits on a chain lock and nothing is skipped.
package enum LedgerChain {
    /// The link before the first: 64 zeros.
    package static let genesisHash = String(repeating: "0", count: 64)
    /// Most records sealed per round; the rest wait for the next round.
    package static let maximumPerSeal = 20_000

    /// Canonical bytes of a transaction and its entries: length-prefixed fields in a fixed order.
    package static func canonical(_ row: SealedRow) -> String {
        let fields: [String] = [
            "tanhui-tx-v1", row.province, String(row.transactionID), row.kind, row.citizenID.canonicalText,
            String(row.citizenSeq), row.eventID.canonicalText, String(row.points), String(row.gramsCO2e),
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

    /// The SELECT list that produces a v1 `SealedRow` (the audit verifies v1 links with it; an
    /// instant outside years 1000…9999 decodes as `Int64.min`, which no sealed link matches).
    package static let rowColumns: SQLFragment = """
        t.province, t.transaction_id, t.kind, t.citizen_id, t.citizen_seq, t.event_id, t.points, t.grams_co2e,
        t.rule_set_version, t.methodology, t.reverses_id,
        CASE WHEN t.created_at BETWEEN '1000-01-01' AND '9999-12-31' THEN (extract(epoch FROM t.created_at) * 1000000)::bigint END,
        (SELECT coalesce(string_agg(e.account || '=' || e.points, ',' ORDER BY e.account), '')
           FROM ledger_entries e WHERE e.province = t.province AND e.transaction_id = t.transaction_id)
        /* citus: multi-shard (a fragment: the statements using it fix t.province) */
        """

    /// The `rowColumns` starting at column `c`.
    package static func decodeRow(_ row: PostgresRow, from c: Int = 0) throws -> SealedRow {
        SealedRow(
            province: try row.decode(c), transactionID: try row.decode(c + 1), kind: try row.decode(c + 2), citizenID: try row.decode(c + 3),
            citizenSeq: try row.decode(c + 4), eventID: try row.decode(c + 5), points: try row.decode(c + 6), gramsCO2e: try row.decode(c + 7),
            ruleSetVersion: try row.decode(c + 8), methodology: try row.decode(c + 9), reversesID: try row.decode(c + 10, as: Int64?.self),
            createdAtMicroseconds: try row.decode(c + 11, as: Int64?.self) ?? Int64.min, entries: try row.decode(c + 12)
        )
    }

    /// The highest seal id below which every ledger write and publication of `province` has
    /// committed or rolled back, or nil when a writer outlasts `patience`. Every writer holds
    /// the province's publication lock (shared; publication exclusively) from before it draws
    /// ids until it ends, so once every holder seen after reading the sequence has ended, every
    /// id up to that reading is final. The sealer never queues for the lock: an exclusive
    /// request waiting behind a long round made every new round queue behind it (a convoy
    /// that halved partner ingest).
    static func watermark(province: String, patience: Duration = .seconds(10), on connection: PostgresConnection) throws -> Int64? {
        let drawn = try connection.query("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ledger_transaction_ids").scalar(Int64.self)
        let key = RuleSetService.publicationLockKey(province)
        // An advisory lock on bigint k is tagged (k >> 32, k & 0xFFFFFFFF, 1) in pg_locks.
        var holders: [String] = try connection.query(
            """
            SELECT virtualtransaction FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() AND objsubid = 1
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = ((hashtext(\(key))::bigint >> 32) & 4294967295)::oid AND objid = (hashtext(\(key))::bigint & 4294967295)::oid
            """
        ).rows.map { try $0.decode(0) }
        let deadline = ContinuousClock.now + patience
        while !holders.isEmpty {
            guard ContinuousClock.now < deadline else { return nil }
            Thread.sleep(forTimeInterval: 0.005)
            // A transaction holds the lock on its own virtual id until it ends.
            holders = try connection.query(
                "SELECT virtualxid FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY(\(PostgresArray(holders))::text[])"
            ).rows.map { try $0.decode(0) }
        }
        return drawn
    }

    /// The highest seal id the province chain holds: its head's (the chain follows seal-id order).
    static func sealedThroughQuery(_ province: String) -> PostgresQuery {
        "SELECT coalesce(seal_id, transaction_id) FROM ledger_chain WHERE province = \(province) ORDER BY chain_seq DESC LIMIT 1"
    }

    /// Seals one round for a province up to `watermark`, at most `maximumLinks` records;
    /// returns how many were sealed. The chain follows seal-id order, so each kind's next
    /// records are a range scan by id after the head's seal id (no anti-join).
    static func seal(
        province: String, through watermark: Int64, maximumLinks: Int = maximumPerSeal, on connection: PostgresConnection
    ) throws -> Int {
        precondition(maximumLinks >= 1)
        try connection.query("SELECT pg_advisory_xact_lock(hashtext(\("tanhui.seal." + province)))")
        let head = try connection.query(
            """
            SELECT chain_seq, hash, coalesce(seal_id, transaction_id) FROM ledger_chain WHERE province = \(province) ORDER BY chain_seq DESC LIMIT 1
            """
        ).first
        var seq: Int64 = try head?.decode(0) ?? 0
        var previous: String = try head?.decode(1) ?? genesisHash
        let sealedThrough: Int64 = try head?.decode(2) ?? 0
        // First the ids alone: each kind's first unsealed seal ids, merged; the round's bound is
        // the `maximumLinks`-th of the merge. Then the canonical fields of exactly the records
        // at or below it. Reading every kind's next 20,000 with their fields and keeping 20,000
        // of the merge computed the fields of up to three times the records sealed, and of
        // every pending event (found through a BRIN index, then sorted whole before the LIMIT):
        // 11 % of PostgreSQL's statement time under a partner feed (pg_stat_statements).
        let kinds = Record.allCases
        let idLists = try connection.pipeline(
            kinds.map { pendingIDsQuery($0, province: province, after: sealedThrough, through: watermark, limit: maximumLinks) })
        let idsByKind = try idLists.map { try $0.rows.map { try $0.decode(0, as: Int64.self) } }
        let ids = idsByKind.joined().sorted()
        guard !ids.isEmpty else { return 0 }
        let bound = ids[min(ids.count, maximumLinks) - 1]
        var pending: [RecordV2] = []
        for (record, kindIDs) in zip(kinds, idsByKind) {
            guard let first = kindIDs.first, first <= bound else { continue }
            for row in try connection.query(pendingQueryV2(record, province: province, after: sealedThrough, through: bound, limit: maximumLinks))
                .rows
            {
                pending.append(
                    RecordV2(
                        record: record, sealID: try row.decode(0), key: try row.decode(1),
                        fields: try decodeFields(row, from: 2, count: fieldCount(record))))
            }
        }
        guard !pending.isEmpty else { return 0 }
        pending.sort { $0.sealID < $1.sealID }
        if pending.count > maximumLinks { pending.removeLast(pending.count - maximumLinks) }
        var seqs: [Int64] = []
        var records: [String] = []
        var sealIDs: [Int64] = []
        var transactionIDs: [Int64?] = []
        var eventIDs: [String?] = []
        var versions: [Int?] = []
        var recordKeys: [String?] = []
        var previousHashes: [String] = []
        var hashes: [String] = []
        for record in pending {
            let hash = linkV2(previous: previous, record: record)
            seq += 1
            seqs.append(seq)
            records.append(record.record.rawValue)
            sealIDs.append(record.sealID)
            let keyColumn = record.record.keyColumn
            transactionIDs.append(keyColumn == .transactionID ? record.sealID : nil)
            eventIDs.append(keyColumn == .eventID ? record.key : nil)
            versions.append(keyColumn == .ruleSetVersion ? Int(record.key) : nil)
            recordKeys.append(keyColumn == .recordKey ? record.key : nil)
            previousHashes.append(previous)
            hashes.append(hash)
            previous = hash
        }
        try connection.query(
            """
            INSERT INTO ledger_chain (province, chain_seq, format, record, seal_id, transaction_id, event_id, rule_set_version, record_key, previous_hash, hash)
            SELECT \(province), s, 2, k, i, t, e, v, rk, p, h
            FROM unnest(\(PostgresArray(seqs))::bigint[], \(PostgresArray(records))::text[], \(PostgresArray(sealIDs))::bigint[],
                        \(PostgresArray(transactionIDs))::bigint[], \(PostgresArray(eventIDs))::uuid[], \(PostgresArray(versions))::integer[],
                        \(PostgresArray(recordKeys))::text[], \(PostgresArray(previousHashes))::text[], \(PostgresArray(hashes))::text[])
                 AS r(s, k, i, t, e, v, rk, p, h)
            RETURNING 1
            """)
        return pending.count
    }
}

// MARK: Chain v2

extension LedgerChain {
    /// The kinds of record a v2 link seals.
    package enum Record: String, Sendable, CaseIterable {
        case transaction
        case event
        case ruleSet = "rule_set"
        case rulesetPolicy = "ruleset_policy"
        case rulesetProposal = "ruleset_proposal"
        case rulesetReview = "ruleset_review"
        case rulesetPublication = "ruleset_publication"
        /// A partner link granted or revoked (migration 0007): records' verdicts depend on it.
        case partnerLink = "partner_link"
        /// A record a feed partner uploaded, with its subject, link and verdict (migration 0007).
        case partnerRecord = "partner_record"
        // Redemption details (migration 0006); their ledger moves are transactions.
        case redemption
        case redemptionOutcome = "redemption_outcome"
        case redemptionRefund = "redemption_refund"
        /// A move of points into or out of a lot (migration 0010); expiries are transactions too.
        case lotMovement = "lot_movement"

        /// The `ledger_chain` column naming a sealed record of this kind. Kinds after the
        /// first three use `record_key` (text), so adding one needs no change to that table.
        package enum KeyColumn: Sendable { case transactionID, eventID, ruleSetVersion, recordKey }

        package var keyColumn: KeyColumn {
            switch self {
            case .transaction: return .transactionID
            case .event: return .eventID
            case .ruleSet: return .ruleSetVersion
            case .rulesetPolicy, .rulesetProposal, .rulesetReview, .rulesetPublication: return .recordKey
            case .partnerLink, .partnerRecord: return .recordKey
            case .redemption, .redemptionOutcome, .redemptionRefund: return .recordKey
            case .lotMovement: return .recordKey
            }
        }

        /// The first field of the canonical form.
        package var tag: String {
            switch self {
            case .transaction: return "tanhui-tx-v2"
            case .event: return "tanhui-event-v2"
            case .ruleSet: return "tanhui-rule-set-v2"
            case .rulesetPolicy: return "tanhui-ruleset-policy-v1"
            case .rulesetProposal: return "tanhui-ruleset-proposal-v1"
            case .rulesetReview: return "tanhui-ruleset-review-v1"
            case .rulesetPublication: return "tanhui-ruleset-publication-v1"
            case .partnerLink: return "tanhui-partner-link-v1"
            case .partnerRecord: return "tanhui-partner-record-v1"
            case .redemption: return "tanhui-redemption-v1"
            case .redemptionOutcome: return "tanhui-redemption-outcome-v1"
            case .redemptionRefund: return "tanhui-redemption-refund-v1"
            case .lotMovement: return "tanhui-lot-movement-v1"
            }
        }
    }

    /// A stored record as a v2 link sees it: its seal id and its fields as text, in the order
    /// the README documents (`nil` is SQL NULL).
    package struct RecordV2: Sendable, Equatable {
        package var record: Record
        package var sealID: Int64
        /// The record's key for naming it: transaction id, event id, rule-set version, or the
        /// `record_key` of later kinds.
        package var key: String
        package var fields: [String?]
    }

    /// v2 canonical bytes: the tag, then every field as `<byte length>:<value>;`, NULL as `~;`.
    package static func canonicalV2(_ record: RecordV2) -> String {
        var text = "\(record.record.tag.utf8.count):\(record.record.tag);"
        for field in record.fields {
            if let field { text += "\(field.utf8.count):\(field);" } else { text += "~;" }
        }
        return text
    }

    /// SHA-256 of `previous` then `canonicalV2(record)`, with the canonical bytes written into
    /// one buffer instead of an interpolated String.
    package static func linkV2(previous: String, record: RecordV2) -> String {
        var encoded: [UInt8] = []
        encoded.reserveCapacity(record.fields.count * 24)
        for field in record.fields {
            if var field {
                field.withUTF8 { appendField($0, to: &encoded) }
            } else {
                appendField(nil, to: &encoded)
            }
        }
        return linkV2(previous: previous, tag: record.record.tag, encodedFields: encoded)
    }

    /// SHA-256 of `previous`, the kind's tag field, then fields already in canonical form
    /// (`encodeFields`): what the audit hashes, straight from the result cells.
    package static func linkV2(previous: String, tag: String, encodedFields: [UInt8]) -> String {
        var hasher = SHA256()
        var head: [UInt8] = Array(previous.utf8)
        var tagText = tag
        tagText.withUTF8 { appendField($0, to: &head) }
        hasher.update(data: head)
        hasher.update(data: encodedFields)
        return hasher.finalize().hexString
    }

    /// Appends one v2 field: `<byte length>:<value>;`, or `~;` for NULL.
    static func appendField(_ value: UnsafeBufferPointer<UInt8>?, to bytes: inout [UInt8]) {
        guard let value else {
            bytes.append(UInt8(ascii: "~"))
            bytes.append(UInt8(ascii: ";"))
            return
        }
        var length = value.count
        let first = bytes.count
        repeat {
            bytes.append(UInt8(ascii: "0") + UInt8(length % 10))
            length /= 10
        } while length > 0
        bytes[first...].reverse()
        bytes.append(UInt8(ascii: ":"))
        bytes.append(contentsOf: value)
        bytes.append(UInt8(ascii: ";"))
    }

    /// `count` fields from `column` on, in canonical form, read from the result cells in place
    /// (one String per field was most of the audit's allocations).
    static func encodeFields(_ row: PostgresRow, from column: Int, count: Int) -> [UInt8] {
        var encoded: [UInt8] = []
        encoded.reserveCapacity(count * 24)
        row.forEachCell(in: column..<(column + count)) { appendField($0, to: &encoded) }
        return encoded
    }

    /// The SELECT list of a v2 record's fields, per kind (shared by the sealer and the audit).
    /// Table aliases: `t` transactions, `e` events, `r` rule sets.
    package static func fieldColumns(_ record: Record) -> SQLFragment {
        switch record {
        case .transaction:
            return transactionOwnColumns
                + """
                (SELECT coalesce(string_agg(x.account || '=' || x.points, ',' ORDER BY x.account), '')
                   FROM ledger_entries x WHERE x.province = t.province AND x.transaction_id = t.transaction_id)
                /* citus: multi-shard (a fragment: the statements using it fix t.province) */
                """
        case .event:
            return """
                e.province, e.seal_id::text, e.event_id::text, e.citizen_id::text, e.device_id, e.kind, CASE WHEN isfinite(e.occurred_at) THEN trunc(extract(epoch FROM e.occurred_at) * 1000000)::text ELSE e.occurred_at::text END,
                CASE WHEN isfinite(e.ended_at) THEN trunc(extract(epoch FROM e.ended_at) * 1000000)::text ELSE e.ended_at::text END, e.device_occurred_at, e.device_ended_at, e.clock_offset_ms::text, e.mode, e.material,
                e.distance_m::text, e.weight_g::text, e.unit_count::text, e.consumption_wh::text, e.baseline_wh::text, e.days::text,
                e.evidence_source, e.evidence_ref, e.content_sha256, e.occupies_interval::text, CASE WHEN isfinite(e.received_at) THEN trunc(extract(epoch FROM e.received_at) * 1000000)::text ELSE e.received_at::text END,
                e.status, e.code, e.message
                """
        case .ruleSet:
            return """
                r.province, r.seal_id::text, r.version::text, CASE WHEN isfinite(r.effective_from) THEN trunc(extract(epoch FROM r.effective_from) * 1000000)::text ELSE r.effective_from::text END, r.document_format,
                encode(sha256(convert_to(r.document, 'UTF8')), 'hex'), r.content_sha256, r.methodology,
                CASE WHEN isfinite(r.published_at) THEN trunc(extract(epoch FROM r.published_at) * 1000000)::text ELSE r.published_at::text END, r.published_by
                """
        // Governance records (aliases gp, gq, gr, gu; GovernanceService writes them).
        case .rulesetPolicy:
            return """
                gp.province, gp.seal_id::text, gp.policy_seq::text, gp.required_approvals::text, gp.notice_days::text, gp.approver_may_publish::text,
                gp.direct_publish::text, gp.set_by, CASE WHEN isfinite(gp.set_at) THEN trunc(extract(epoch FROM gp.set_at) * 1000000)::text ELSE gp.set_at::text END
                """
        case .rulesetProposal:
            return """
                gq.province, gq.seal_id::text, gq.proposal_id::text, gq.version::text, CASE WHEN isfinite(gq.effective_from) THEN trunc(extract(epoch FROM gq.effective_from) * 1000000)::text ELSE gq.effective_from::text END, CASE WHEN isfinite(gq.valid_until) THEN trunc(extract(epoch FROM gq.valid_until) * 1000000)::text ELSE gq.valid_until::text END,
                gq.document_format, encode(sha256(convert_to(gq.document, 'UTF8')), 'hex'), gq.content_sha256, gq.valid::text, gq.issues,
                gq.author_id::text, gq.author_name, CASE WHEN isfinite(gq.created_at) THEN trunc(extract(epoch FROM gq.created_at) * 1000000)::text ELSE gq.created_at::text END
                """
        case .rulesetReview:
            return """
                gr.province, gr.seal_id::text, gr.review_id::text, gr.proposal_id::text, gr.reviewer_id::text, gr.reviewer_name, gr.verdict, gr.comment,
                CASE WHEN isfinite(gr.created_at) THEN trunc(extract(epoch FROM gr.created_at) * 1000000)::text ELSE gr.created_at::text END
                """
        case .rulesetPublication:
            return """
                gu.province, gu.seal_id::text, gu.version::text, gu.mode, gu.proposal_id::text, gu.policy_seq::text, array_to_string(gu.approver_ids, ','),
                CASE WHEN isfinite(gu.approved_at) THEN trunc(extract(epoch FROM gu.approved_at) * 1000000)::text ELSE gu.approved_at::text END, gu.publisher_id::text, gu.published_by, CASE WHEN isfinite(gu.created_at) THEN trunc(extract(epoch FROM gu.created_at) * 1000000)::text ELSE gu.created_at::text END
                """
        case .partnerLink, .partnerRecord:
            return partnerFieldColumns(record)
        case .redemption, .redemptionOutcome, .redemptionRefund:
            return RedemptionChain.fieldColumns(record)
        case .lotMovement:
            return RedemptionChain.lotMovementColumns
        }
    }

    /// A transaction's v2 fields but the last (its entries), followed by a comma.
    private static let transactionOwnColumns: SQLFragment = """
        t.province, t.transaction_id::text, t.kind, t.citizen_id::text, t.citizen_seq::text, t.event_id::text, t.points::text,
        t.grams_co2e::text, t.rule_set_version::text, t.methodology, t.points_before_caps::text, t.multiplier, t.campaign,
        CASE WHEN t.caps_applied IS NOT NULL THEN (SELECT coalesce(string_agg(octet_length(x) || ':' || x || ';', '' ORDER BY o), '')
          FROM unnest(t.caps_applied) WITH ORDINALITY AS u(x, o)) END,
        t.reverses_id::text, t.reason, t.actor, CASE WHEN isfinite(t.created_at) THEN trunc(extract(epoch FROM t.created_at) * 1000000)::text ELSE t.created_at::text END,
        """

    /// How many fields `fieldColumns(record)` selects.
    package static func fieldCount(_ record: Record) -> Int {
        switch record {
        case .transaction: return 19
        case .event: return 27
        case .ruleSet: return 10
        case .rulesetPolicy: return 9
        case .rulesetProposal: return 14
        case .rulesetReview: return 9
        case .rulesetPublication: return 11
        case .partnerLink, .partnerRecord: return partnerFieldCount(record)
        case .redemption, .redemptionOutcome, .redemptionRefund: return RedemptionChain.fieldCount(record)
        case .lotMovement: return RedemptionChain.lotMovementFieldCount
        }
    }

    /// The seal id and key columns, then the fields, of each kind's unsealed records (from the
    /// kind's `sealedTable`, the description the audit's chain replay reads too).
    static func pendingQueryV2(
        _ record: Record, province: String, after sealedThrough: Int64, through watermark: Int64, limit: Int = maximumPerSeal
    ) -> PostgresQuery {
        let table = sealedTable(record)
        return """
            SELECT \(table.sealID), \(table.keyText), \(fieldColumns(record)) FROM \(table.from)
            WHERE \(table.province) = \(province) AND \(table.sealID) > \(sealedThrough) AND \(table.sealID) <= \(watermark)
            ORDER BY \(table.sealID) LIMIT \(limit)
            """
    }

    /// The seal ids alone of a kind's first unsealed records (the sealer's first step).
    static func pendingIDsQuery(_ record: Record, province: String, after sealedThrough: Int64, through watermark: Int64, limit: Int) -> PostgresQuery
    {
        let table = sealedTable(record)
        return """
            SELECT \(table.sealID) FROM \(table.from)
            WHERE \(table.province) = \(province) AND \(table.sealID) > \(sealedThrough) AND \(table.sealID) <= \(watermark)
            ORDER BY 1 LIMIT \(limit)
            """
    }

    /// Decodes `count` text fields starting at `column`.
    static func decodeFields(_ row: PostgresRow, from column: Int, count: Int) throws -> [String?] {
        try (column..<(column + count)).map { try row.decode($0, as: String?.self) }
    }
}

// MARK: Sealed records by kind (the audit's chain replay)

extension LedgerChain {
    /// Where a kind's records live: the table (with the alias its `fieldColumns` use), the
    /// seal-id column, and the key column with the cast its text key needs. A new kind adds
    /// one case here, next to its `fieldColumns` (the sealer's `pendingQueryV2` reads it too).
    package struct SealedTable: Sendable {
        let from: SQLFragment
        let province: SQLFragment
        let sealID: SQLFragment
        let key: SQLFragment
        let keyText: SQLFragment
        let keyCast: SQLFragment
    }

    package static func sealedTable(_ record: Record) -> SealedTable {
        switch record {
        case .transaction:
            return SealedTable(
                from: "ledger_transactions t", province: "t.province", sealID: "t.transaction_id", key: "t.transaction_id",
                keyText: "t.transaction_id::text", keyCast: "::bigint")
        case .event:
            return SealedTable(
                from: "events e", province: "e.province", sealID: "e.seal_id", key: "e.event_id", keyText: "e.event_id::text", keyCast: "::uuid")
        case .ruleSet:
            return SealedTable(
                from: "rule_sets r", province: "r.province", sealID: "r.seal_id", key: "r.version", keyText: "r.version::text", keyCast: "::integer")
        case .rulesetPolicy:
            return SealedTable(
                from: "ruleset_policies gp", province: "gp.province", sealID: "gp.seal_id", key: "gp.policy_seq", keyText: "gp.policy_seq::text",
                keyCast: "::integer")
        case .rulesetProposal:
            return SealedTable(
                from: "ruleset_proposals gq", province: "gq.province", sealID: "gq.seal_id", key: "gq.proposal_id", keyText: "gq.proposal_id::text",
                keyCast: "::uuid")
        case .rulesetReview:
            return SealedTable(
                from: "ruleset_reviews gr", province: "gr.province", sealID: "gr.seal_id", key: "gr.review_id", keyText: "gr.review_id::text",
                keyCast: "::uuid")
        case .rulesetPublication:
            return SealedTable(
                from: "ruleset_publications gu", province: "gu.province", sealID: "gu.seal_id", key: "gu.version", keyText: "gu.version::text",
                keyCast: "::integer")
        case .partnerLink:
            return SealedTable(
                from: "partner_link_changes l", province: "l.province", sealID: "l.seal_id", key: "(l.link_id::text || ':' || l.change)",
                keyText: "l.link_id::text || ':' || l.change", keyCast: "")
        case .partnerRecord:
            return SealedTable(
                from: "partner_records pr", province: "pr.province", sealID: "pr.seal_id", key: "(pr.partner_id::text || ':' || pr.record_id)",
                keyText: "pr.partner_id::text || ':' || pr.record_id", keyCast: "")
        case .redemption:
            return SealedTable(
                from: "redemptions rd", province: "rd.province", sealID: "rd.seal_id", key: "(rd.partner_id::text || '/' || rd.redemption_id::text)",
                keyText: "rd.partner_id::text || '/' || rd.redemption_id::text", keyCast: "")
        case .redemptionOutcome:
            return SealedTable(
                from: "redemption_outcomes ro", province: "ro.province", sealID: "ro.seal_id",
                key: "(ro.partner_id::text || '/' || ro.redemption_id::text)", keyText: "ro.partner_id::text || '/' || ro.redemption_id::text",
                keyCast: "")
        case .redemptionRefund:
            return SealedTable(
                from: "redemption_refunds rf", province: "rf.province", sealID: "rf.seal_id",
                key: "(rf.partner_id::text || '/' || rf.refund_id::text)",
                keyText: "rf.partner_id::text || '/' || rf.refund_id::text", keyCast: "")
        case .lotMovement:
            return SealedTable(
                from: "lot_movements lm", province: "lm.province", sealID: "lm.seal_id",
                key: "(lm.transaction_id::text || '/' || lm.award_transaction_id::text)",
                keyText: "lm.transaction_id::text || '/' || lm.award_transaction_id::text", keyCast: "")
        }
    }

    /// Seal id, key and v2 fields of a kind's records with seal ids in (after, through], in
    /// seal-id order (the audit reads each kind in such chunks and merges them with the chain).
    /// `joiningEntries`: a range of transactions takes its entries from one grouped read of the
    /// same id range (merged or hashed), not one index probe per transaction (≈ 60 % of the
    /// chunk's time); only for a session whose planner may not nest that join (see AuditChain).
    static func sealedRecordsQuery(_ record: Record, province: String, after: Int64, through: Int64, joiningEntries: Bool = false) -> PostgresQuery {
        if record == .transaction && joiningEntries {
            return """
                SELECT t.transaction_id, t.transaction_id::text, \(transactionOwnColumns) coalesce(en.entries, '')
                FROM ledger_transactions t
                LEFT JOIN (SELECT x.province, x.transaction_id, string_agg(x.account || '=' || x.points, ',' ORDER BY x.account) AS entries
                           FROM ledger_entries x WHERE x.province = \(province) AND x.transaction_id > \(after) AND x.transaction_id <= \(through)
                           GROUP BY x.province, x.transaction_id) en ON en.province = t.province AND en.transaction_id = t.transaction_id
                WHERE t.province = \(province) AND t.transaction_id > \(after) AND t.transaction_id <= \(through)
                ORDER BY t.transaction_id
                """
        }
        let table = sealedTable(record)
        let fields = fieldColumns(record)
        return """
            SELECT \(table.sealID), \(table.keyText), \(fields) FROM \(table.from)
            WHERE \(table.province) = \(province) AND \(table.sealID) > \(after) AND \(table.sealID) <= \(through)
            ORDER BY \(table.sealID), \(table.key)
            """
    }

    /// One record of a kind by its key (for a link out of seal-id order).
    static func sealedRecordQuery(_ record: Record, province: String, key: String) -> PostgresQuery {
        let table = sealedTable(record)
        let fields = fieldColumns(record)
        return """
            SELECT \(table.sealID), \(table.keyText), \(fields) FROM \(table.from)
            WHERE \(table.province) = \(province) AND \(table.key) = \(key)\(table.keyCast)
            """
    }
}
