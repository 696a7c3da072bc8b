package import Crypto
package import Foundation
package import Logging
import Synchronization
package import TanhuiCore
package import TanhuiPostgres

/// Citizen actions and the carbon-credit ledger: exactly-once awards under caps, reversals,
/// and the sealed per-province hash chain.
///
/// Concurrent batches share one database transaction per round (`GroupCommitter`,
/// `BatchRound`): locks and rule-set versions, reads, the pure `BatchJudge` per batch, writes,
/// COMMIT. The database enforces the guarantees (unique ids,
/// evidence credited once, one award per event, no overlapping trips); a concurrent batch
/// that loses such a race is rerun and then sees the winner's rows.
package final class LedgerService: Sendable {
    let pool: PostgresPool
    let ruleSets: RuleSetService
    let logger: Logger

    /// Most events one submission may carry (HTTP advertises this limit).
    package static let maximumBatchSize = 500

    let committer: GroupCommitter

    /// `concurrentRounds`: group-commit rounds running at once (`TANHUI_GROUP_COMMIT_ROUNDS`).
    package init(pool: PostgresPool, ruleSets: RuleSetService, logger: Logger, concurrentRounds: Int = 4) {
        self.pool = pool
        self.ruleSets = ruleSets
        self.logger = logger
        self.committer = GroupCommitter(pool: pool, ruleSets: ruleSets, logger: logger, concurrentRounds: concurrentRounds)
    }

    /// What a push returns: one verdict per item in order, and the citizen's balances in the
    /// batch's provinces as committed by it.
    package struct Submission: Sendable {
        package var verdicts: [Verdict]
        package var balances: [ProvinceBalance]
    }

    /// Judges and records a batch from one device of one citizen; returns once committed.
    /// Concurrent pushes share transactions (`GroupCommitter`); retries are bounded there.
    package func push(_ items: [SubmissionItem], citizen: UUID, device: String, receivedAt: Date, sentAt: Date?) async throws -> Submission {
        precondition(items.count <= Self.maximumBatchSize, "callers enforce the batch limit")
        let inputs: [BatchJudge.Input] = items.map { item in
            switch item {
            case .event(let wire): return .event(BatchJudge.Item(wire: wire, contentSHA256: BatchPlan.contentHash(wire)))
            case .invalid(let id, let issues): return .invalid(id: id, issues: issues)
            }
        }
        let plan = BatchPlan(
            inputs: inputs, citizen: citizen, device: device, receivedAtMs: Timestamp.milliseconds(of: receivedAt),
            sentAtMs: sentAt.map(Timestamp.milliseconds(of:)))
        let result = try await committer.submit(plan)
        return Submission(verdicts: result.verdicts, balances: result.balances)
    }

    /// How many push rounds lost a race the database decided (a unique or exclusion
    /// violation against another transaction) and were rerun: evidence the constraints, not
    /// application checks, hold the line between processes.
    package var racesLost: Int { committer.racesLost.load(ordering: .relaxed) }

    /// `push` when only the verdicts matter (CLI tools, tests).
    @discardableResult
    package func submit(_ items: [SubmissionItem], citizen: UUID, device: String, receivedAt: Date, sentAt: Date?) async throws -> [Verdict] {
        try await push(items, citizen: citizen, device: device, receivedAt: receivedAt, sentAt: sentAt).verdicts
    }

    // MARK: Queries

    /// The citizen's current balance in one province (0 when they have no account there).
    package func balance(citizen: UUID, province: String) async throws -> (points: Int64, gramsCO2e: Int64) {
        try await pool.withConnection { connection in
            guard
                let row = try connection.query(
                    """
                    SELECT balance_points, balance_grams FROM citizen_accounts WHERE province = \(province) AND citizen_id = \(citizen)
                    """
                ).first
            else { return (0, 0) }
            return (try row.decode(0), try row.decode(1))
        }
    }

    // MARK: Chain

    /// Seals every province's pending records (one round each, at most `maximumLinks` links);
    /// returns counts sealed. A province with a write in flight longer than `sealPatience`
    /// seals nothing this round (its next round catches up; no writer ever waits for the sealer).
    @discardableResult
    package func seal(
        province only: String? = nil, sealPatience: Duration = .seconds(10), maximumLinks: Int = LedgerChain.maximumPerSeal
    ) async throws -> [String: Int] {
        // Every ledger transaction references a rule set of its province, so the small
        // rule_sets table names every province that can have something to seal.
        let provinces = try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT DISTINCT province FROM rule_sets WHERE \(only)::text IS NULL OR province = \(only) ORDER BY province
                """
            ).rows.map { try $0.decode(0, as: String.self) }
        }
        var sealed: [String: Int] = [:]
        for province in provinces {
            guard
                let watermark = try await pool.withConnection({ connection in
                    try LedgerChain.watermark(province: province, patience: sealPatience, on: connection)
                })
            else {
                sealed[province] = 0
                continue
            }
            sealed[province] = try await pool.withTransaction { connection in
                try LedgerChain.seal(province: province, through: watermark, maximumLinks: maximumLinks, on: connection)
            }
        }
        return sealed
    }

    package struct Backlog: Sendable {
        package var province: String
        package var unsealed: Int
        package var oldestSeconds: Int64
    }

    /// Unsealed transactions per province and the age of the oldest: the sealer's backlog.
    ///
    /// Per province, its chain head first, then the transactions above it with the head as a
    /// parameter, which the planner sees: as a subquery the head was unknown to it, and on a
    /// 10M-entry bench ledger, fully sealed, it scanned every transaction, evaluating the head
    /// once per row, past the 30 s statement timeout (`tanhui ledger seal` exited 2 after
    /// sealing). With the value, the count is an index range scan of the unsealed ids.
    package func unsealedBacklog() async throws -> [Backlog] {
        try await pool.withConnection { connection in
            let provinces = try connection.query(
                "SELECT DISTINCT province FROM rule_sets ORDER BY 1 /* citus: multi-shard (every province's backlog) */"
            ).rows.map {
                try $0.decode(0, as: String.self)
            }
            var backlog: [Backlog] = []
            for province in provinces {
                let head =
                    try connection.query(
                        """
                        SELECT coalesce(seal_id, transaction_id) FROM ledger_chain WHERE province = \(province) ORDER BY chain_seq DESC LIMIT 1
                        """
                    ).first?.decode(0, as: Int64.self) ?? 0
                guard
                    let row = try connection.query(
                        """
                        SELECT count(*), extract(epoch FROM now() - min(created_at))::bigint FROM ledger_transactions
                        WHERE province = \(province) AND transaction_id > \(head)
                        """
                    ).first
                else { continue }
                let unsealed: Int = try row.decode(0)
                if unsealed > 0 {
                    backlog.append(Backlog(province: province, unsealed: unsealed, oldestSeconds: try row.decode(1)))
                }
            }
            return backlog
        }
    }

    /// Takes a watermark and the summary of balances and cap usage at it, seals through it,
    /// then signs the chain position of the watermark (v2 checkpoint) and records it.
    ///
    /// The watermark: with the province's publication lock held exclusively (session-level,
    /// for one statement's time) no ledger write of the province is in flight, so a snapshot
    /// taken then holds exactly the writes with ids up to the sequence's last value. The
    /// summary is copied from that snapshot's caches with no lock held.
    package func checkpoint(province: String, privateKey: Curve25519.Signing.PrivateKey, at time: Date = Date()) async throws -> Checkpoint {
        let (watermark, summary, reports) = try await pool.withConnection { connection -> (Int64, String, String?) in
            let key = RuleSetService.publicationLockKey(province)
            try connection.query("SELECT pg_advisory_lock(hashtext(\(key)))")
            let watermark: Int64
            do {
                try connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ")
                watermark = try connection.query("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ledger_transaction_ids").scalar(
                    Int64.self)
                try connection.query("SELECT pg_advisory_unlock(hashtext(\(key)))")
            } catch {
                _ = try? connection.query("ROLLBACK")
                _ = try? connection.query("SELECT pg_advisory_unlock(hashtext(\(key)))")
                throw error
            }
            do {
                try connection.query(
                    """
                    INSERT INTO ledger_checkpoint_states (province, watermark, citizen_id, balance_points, balance_grams, last_seq, caps)
                    SELECT a.province, \(watermark), a.citizen_id, a.balance_points, a.balance_grams, a.last_seq,
                           coalesce((SELECT string_agg(u.window_key || '=' || u.points || '/' || u.events, ',' ORDER BY u.window_key COLLATE "C")
                                     FROM cap_usage u WHERE u.province = a.province AND u.citizen_id = a.citizen_id), '')
                    FROM citizen_accounts a WHERE a.province = \(province)
                    -- In citizen order, the order the digest and --since's look-ups read them in.
                    ORDER BY a.citizen_id
                    ON CONFLICT DO NOTHING
                    """)
                let summary = try Self.summaryDigest(province: province, watermark: watermark, on: connection)
                try Self.copyReports(province: province, watermark: watermark, on: connection)
                let reports = try Self.reportsDigest(province: province, watermark: watermark, on: connection)
                try connection.query("COMMIT")
                return (watermark, summary, reports)
            } catch {
                _ = try? connection.query("ROLLBACK")
                throw error
            }
        }
        // Seal every record up to the watermark (the sealer may seal further meanwhile).
        while true {
            let sealed = try await seal(province: province)
            if (sealed[province] ?? 0) < LedgerChain.maximumPerSeal { break }
        }
        let head: (Int64, String) = try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT chain_seq, hash FROM ledger_chain WHERE province = \(province) AND coalesce(seal_id, transaction_id) <= \(watermark)
                ORDER BY chain_seq DESC LIMIT 1
                """
            ).first.map { (try $0.decode(0, as: Int64.self), try $0.decode(1, as: String.self)) } ?? (0, LedgerChain.genesisHash)
        }
        let checkpoint = try Checkpoint.sign(
            province: province, sequence: head.0, headHash: head.1, time: time, watermark: watermark,
            summarySHA256: summary, reportsSHA256: reports, privateKey: privateKey)
        try await pool.withConnection { connection in
            try connection.query(
                """
                INSERT INTO ledger_checkpoints (province, chain_seq, head_hash, signed_at, note)
                VALUES (\(province), \(checkpoint.sequence), \(checkpoint.headHash), \(checkpoint.time), \(checkpoint.note))
                """)
        }
        return checkpoint
    }

    /// One summary row in canonical form: `citizen|points|grams|last_seq|caps` and a newline.
    package static func summaryLine(citizen: String, points: Int64, grams: Int64, lastSeq: Int64, caps: String) -> String {
        "\(citizen)|\(points)|\(grams)|\(lastSeq)|\(caps)\n"
    }

    /// SHA-256 of the stored summary's lines in citizen order, read through a cursor in pages
    /// (bounded memory; in the caller's transaction).
    package static func summaryDigest(province: String, watermark: Int64, on connection: PostgresConnection) throws -> String {
        var hasher = SHA256()
        // One cursor: paged by `LIMIT` after the last citizen, each page was planned anew as a
        // scan and sort of every checkpoint's states (51 ms a page, 0.93 s for 108k citizens).
        try connection.query(
            """
            DECLARE tanhui_summary NO SCROLL CURSOR FOR
            SELECT citizen_id::text, balance_points, balance_grams, last_seq, caps FROM ledger_checkpoint_states
            WHERE province = \(province) AND watermark = \(watermark) ORDER BY citizen_id
            """)
        while true {
            let rows = try connection.query("FETCH 10000 FROM tanhui_summary").rows
            for row in rows {
                hasher.update(
                    data: Data(
                        summaryLine(
                            citizen: try row.decode(0), points: try row.decode(1), grams: try row.decode(2), lastSeq: try row.decode(3),
                            caps: try row.decode(4)
                        ).utf8))
            }
            if rows.count < 10000 { break }
        }
        try connection.query("CLOSE tanhui_summary")
        return hasher.finalize().hexString
    }

    /// Copies the report cells as this snapshot holds them (with the progress they stand at),
    /// so `tanhui audit --since` checks the rollup against them plus what was folded since.
    /// `report_citizens` is not copied: it grows with the citizens (see migration 0011).
    static func copyReports(province: String, watermark: Int64, on connection: PostgresConnection) throws {
        let copied = try connection.query(
            """
            INSERT INTO ledger_checkpoint_reports (province, watermark, sealed_through)
            SELECT \(province)::text, \(watermark)::bigint, coalesce((SELECT sealed_through FROM report_progress WHERE province = \(province)), 0)
            ON CONFLICT DO NOTHING RETURNING 1
            """
        ).rows
        // A second checkpoint at the same watermark keeps the first copy (the digest is of what is stored).
        guard !copied.isEmpty else { return }
        try connection.query(
            """
            INSERT INTO ledger_checkpoint_rollup (province, watermark, day, kind, variant, district, accepted, rejected, grams_co2e, points, reversals)
            SELECT province, \(watermark)::bigint, day, kind, variant, district, accepted, rejected, grams_co2e, points, reversals
            FROM report_rollup WHERE province = \(province)
            ON CONFLICT DO NOTHING
            """)
        try connection.query(
            """
            INSERT INTO ledger_checkpoint_rejections (province, watermark, day, kind, variant, district, code, events)
            SELECT province, \(watermark)::bigint, day, kind, variant, district, code, events FROM report_rejections WHERE province = \(province)
            ON CONFLICT DO NOTHING
            """)
    }

    /// SHA-256 of the report copy stored for (province, watermark), nil when there is none:
    /// the lines `progress|<sealed_through>`, then `rollup|…` and `rejection|…` per row in key
    /// order (text byte order), each text field as `<bytes>:<text>` (see the README). Streams
    /// through a cursor, so it must run inside a transaction.
    package static func reportsDigest(province: String, watermark: Int64, on connection: PostgresConnection) throws -> String? {
        guard
            let sealedThrough = try connection.query(
                "SELECT sealed_through FROM ledger_checkpoint_reports WHERE province = \(province) AND watermark = \(watermark)"
            ).first.map({ try $0.decode(0, as: Int64.self) })
        else { return nil }
        var hasher = SHA256()
        hasher.update(data: Data("progress|\(sealedThrough)\n".utf8))
        let cell = Self.reportCellText
        let order = Self.reportCellOrder
        let copies: [PostgresQuery] = [
            """
            DECLARE checkpoint_reports NO SCROLL CURSOR FOR
            SELECT 'rollup|' || \(cell) || '|' || accepted || '|' || rejected || '|' || grams_co2e || '|' || points || '|' || reversals
            FROM ledger_checkpoint_rollup WHERE province = \(province) AND watermark = \(watermark) ORDER BY \(order)
            """,
            """
            DECLARE checkpoint_reports NO SCROLL CURSOR FOR
            SELECT 'rejection|' || \(cell) || '|' || octet_length(code) || ':' || code || '|' || events
            FROM ledger_checkpoint_rejections WHERE province = \(province) AND watermark = \(watermark) ORDER BY \(order), code COLLATE "C"
            """,
        ]
        for declare in copies {
            let lines = try AuditCursor(declare, name: "checkpoint_reports", on: connection, pageSize: 10_000, onPage: { _ in })
            while let row = try lines.next() {
                hasher.update(data: Data((try row.decode(0, as: String.self) + "\n").utf8))
            }
            try lines.close()
        }
        return hasher.finalize().hexString
    }

    /// A rollup cell's key in a digest line: `YYYY-MM-DD|<n>:kind|<n>:variant|<n>:district`.
    static let reportCellText: SQLFragment =
        "to_char(day, 'YYYY-MM-DD') || '|' || octet_length(kind) || ':' || kind || '|' || octet_length(variant) || ':' || variant || '|' || octet_length(district) || ':' || district"
    static let reportCellOrder: SQLFragment = #"day, kind COLLATE "C", variant COLLATE "C", district COLLATE "C""#

    /// Whether the current chain still holds `checkpoint`'s head at its sequence.
    package func chainExtends(_ checkpoint: Checkpoint) async throws -> Bool {
        if checkpoint.sequence == 0 { return true }
        return try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT hash FROM ledger_chain WHERE province = \(checkpoint.province) AND chain_seq = \(checkpoint.sequence)
                """
            ).first.map { try $0.decode(0, as: String.self) } == checkpoint.headHash
        }
    }

    // MARK: Reversals

    package enum ReversalError: Error, Sendable, Equatable, CustomStringConvertible {
        case noAward(eventID: UUID)
        case alreadyReversed(eventID: UUID)
        case reasonRequired

        package var description: String {
            switch self {
            case .noAward(let id): return "event \(id.canonicalText) has no award to reverse"
            case .alreadyReversed(let id): return "the award of event \(id.canonicalText) is already reversed"
            case .reasonRequired: return "a reversal needs a reason (1–500 characters)"
            }
        }
    }

    /// Reverses an award in full with a mirroring transaction (never an UPDATE). At most once.
    /// `allowedProvinces` scopes operators (nil: any, for the admin CLI).
    @discardableResult
    static func awardLookup(event eventID: UUID, province: String) -> PostgresQuery {
        """
        SELECT province, transaction_id, citizen_id, points, grams_co2e, rule_set_version, methodology
        FROM ledger_transactions WHERE province = \(province) AND event_id = \(eventID) AND kind = 'award'
        """
    }

    /// The award is looked up in `province` only: an event of another province is simply not
    /// found there (no oracle for other provinces' ids). Takes the publication lock shared,
    /// like every ledger write, so the sealer's watermark holds.
    package func reverse(event eventID: UUID, province: String, reason: String, actor: String) async throws -> LedgerTransactionRecord {
        // The document's rule, exactly: at most 500 code points, at least one that is not
        // white space as JSON Schema's `\S` sees it; stored without surrounding white space.
        func isSpace(_ scalar: Unicode.Scalar) -> Bool {
            [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF].contains(scalar.value)
                || (0x2000...0x200A).contains(scalar.value)
        }
        let scalars = Array(reason.unicodeScalars)
        guard scalars.count <= 500, let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) })
        else { throw ReversalError.reasonRequired }
        var trimmed = String.UnicodeScalarView()
        trimmed.append(contentsOf: scalars[first...last])
        let reason = String(trimmed)
        do {
            return try await pool.withTransaction { connection in
                try connection.query("SELECT pg_advisory_xact_lock_shared(hashtext(\(RuleSetService.publicationLockKey(province))))")
                guard let award = try connection.query(Self.awardLookup(event: eventID, province: province)).first else {
                    throw ReversalError.noAward(eventID: eventID)
                }
                let awardID: Int64 = try award.decode(1)
                let citizen: UUID = try award.decode(2)
                let points: Int64 = try award.decode(3)
                let grams: Int64 = try award.decode(4)
                let account = try connection.query(
                    """
                    SELECT last_seq FROM citizen_accounts WHERE province = \(province) AND citizen_id = \(citizen) FOR UPDATE
                    """
                ).scalar(Int64.self)
                let reversed = try connection.query(
                    """
                    SELECT 1 FROM ledger_transactions WHERE province = \(province) AND reverses_id = \(awardID) AND kind = 'reversal'
                    """)
                if !reversed.rows.isEmpty { throw ReversalError.alreadyReversed(eventID: eventID) }
                let transactionID = try connection.query("SELECT nextval('ledger_transaction_ids')").scalar(Int64.self)
                let seq = account + 1
                let citizenAccount = "citizen:" + citizen.canonicalText
                _ = try connection.pipeline([
                    """
                    INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e,
                        rule_set_version, methodology, reverses_id, reason, actor)
                    VALUES (\(province), \(transactionID), 'reversal', \(citizen), \(seq), \(eventID), \(-points), \(-grams),
                        \(try award.decode(5, as: Int.self)), \(try award.decode(6, as: String.self)), \(awardID), \(reason), \(actor))
                    """,
                    """
                    INSERT INTO ledger_entries (province, transaction_id, account, points)
                    VALUES (\(province), \(transactionID), 'issuance', \(points)), (\(province), \(transactionID), \(citizenAccount), \(-points))
                    """,
                    """
                    UPDATE citizen_accounts SET balance_points = balance_points - \(points), balance_grams = balance_grams - \(grams), last_seq = \(seq)
                    WHERE province = \(province) AND citizen_id = \(citizen)
                    """,
                ])
                // The reversed points leave the citizen's lots: the award's own lot first (migration 0010).
                try LotLedger.draw(
                    points, province: province, citizen: citizen, transactionID: transactionID, preferring: awardID, at: Date(), on: connection)
                return LedgerTransactionRecord(
                    province: province, transactionID: transactionID, kind: "reversal", citizenSeq: seq, eventID: eventID, points: -points,
                    gramsCO2e: -grams, ruleSetVersion: try award.decode(5))
            }
        } catch let error as PostgresError where error.isUniqueViolation {
            // A concurrent reversal of the same award won.
            throw ReversalError.alreadyReversed(eventID: eventID)
        }
    }
}

/// A ledger transaction as reported to callers.
package struct LedgerTransactionRecord: Sendable, Equatable {
    package var province: String
    package var transactionID: Int64
    package var kind: String
    package var citizenSeq: Int64
    package var eventID: UUID
    package var points: Int64
    package var gramsCO2e: Int64
    package var ruleSetVersion: Int
}

/// One line of a citizen's statement.
package struct StatementLine: Sendable, Equatable {
    package var province: String
    package var citizenSeq: Int64
    package var kind: String
    package var eventID: UUID
    package var points: Int64
    package var gramsCO2e: Int64
    package var ruleSetVersion: Int
    package var createdAt: Date
    package var reason: String?
}

extension LedgerService {
    /// Most lines one statement or page returns.
    package static let maximumPage = 1000

    /// Province first: the citizen's accounts name the provinces, then each province's
    /// transactions are read by (province, citizen_id, citizen_seq).
    static func statementQuery(citizen: UUID, province: String?, provinces: [String], seqs: [Int64], limit: Int) -> PostgresQuery {
        """
        SELECT t.province, t.citizen_seq, t.kind, t.event_id, t.points, t.grams_co2e, t.rule_set_version, t.created_at, t.reason
        FROM citizen_accounts a
        LEFT JOIN unnest(\(PostgresArray(provinces))::text[], \(PostgresArray(seqs))::bigint[]) AS c(province, seq)
          ON c.province = a.province
        JOIN ledger_transactions t ON t.province = a.province AND t.citizen_id = a.citizen_id AND t.citizen_seq > coalesce(c.seq, 0)
        WHERE a.citizen_id = \(citizen) AND (\(province)::text IS NULL OR a.province = \(province))
        ORDER BY t.province, t.citizen_seq
        LIMIT \(limit)
        """
    }

    /// A citizen's ledger transactions in order, after `afterSeq` per province (for paging).
    package func statement(
        citizen: UUID, province: String? = nil, after cursor: [String: Int64] = [:], limit: Int = maximumPage
    ) async throws -> [StatementLine] {
        let limit = min(max(limit, 1), Self.maximumPage)
        let provinces = cursor.keys.sorted()
        return try await pool.withConnection { connection in
            try connection.query(
                Self.statementQuery(citizen: citizen, province: province, provinces: provinces, seqs: provinces.map { cursor[$0]! }, limit: limit)
            ).rows.map { row in
                StatementLine(
                    province: try row.decode(0), citizenSeq: try row.decode(1), kind: try row.decode(2), eventID: try row.decode(3),
                    points: try row.decode(4), gramsCO2e: try row.decode(5), ruleSetVersion: try row.decode(6),
                    createdAt: try row.decode(7), reason: try row.decode(8, as: String?.self))
            }
        }
    }
}

extension LedgerService {
    /// One hot statement and the plan PostgreSQL chose for it now.
    package struct StatementPlan: Sendable {
        package var name: String
        package var plan: String

        /// Ledger tables this plan reads sequentially: none, on a healthy database.
        package var sequentialScans: [String] { LedgerService.ledgerTables.filter { plan.contains("Seq Scan on \($0)") } }
    }

    /// The tables that grow with citizens and events.
    package static let ledgerTables = [
        "citizen_accounts", "events", "ledger_transactions", "ledger_entries", "ledger_chain", "cap_usage", "citizen_devices",
    ]

    /// EXPLAIN (plan only, nothing executed) of every statement on the push, pull, status,
    /// reversal and seal paths, built by the same functions those paths use, for a sample
    /// batch of `citizen` in `province`. Operators read it when a province grows; the test
    /// suite fails on a sequential scan of a ledger table.
    package func explainHotStatements(province: String, citizen: UUID) async throws -> [StatementPlan] {
        let history = try await ruleSets.history(province: province)
        // A typical backlog batch: 50 trips with evidence, so the plans are those of real batches.
        let eventID = UUID()
        let kind = history.versions.first?.activities.first?.kind ?? "transit_trip"
        let inputs: [BatchJudge.Input] = (0..<50).compactMap { index in
            let start = Date().addingTimeInterval(-3600 * Double(index + 1))
            let wire = EventWire.decode(
                [
                    "id": (index == 0 ? eventID : UUID()).uuidString, "kind": kind, "province": province,
                    "occurred_at": start.formatted(.iso8601), "ended_at": start.addingTimeInterval(1200).formatted(.iso8601),
                    "data": ["mode": "metro", "distance_m": 5000], "evidence": ["source": "sample", "ref": "sample-\(index)"],
                ] as [String: Any])
            return (try? wire.get()).map { .event(BatchJudge.Item(wire: $0, contentSHA256: BatchPlan.contentHash($0))) }
        }
        let plan = BatchPlan(inputs: inputs, citizen: citizen, device: "explain", receivedAtMs: Timestamp.milliseconds(of: Date()), sentAtMs: nil)
        let round = BatchRound(members: [plan], ruleSets: ruleSets)
        let prepared = BatchJudge.prepare(inputs, receivedAtMs: plan.receivedAtMs, sentAtMs: nil, histories: [province: history])
        var statements: [(String, PostgresQuery)] = []
        for (index, query) in round.lockStatements(provinces: [province], accounts: round.accountKeys).enumerated() {
            statements.append(("push.lock.\(index)", query))
        }
        for (index, query) in round.readStatements([prepared]).enumerated() { statements.append(("push.read.\(index)", query)) }
        statements.append(
            (
                "push.accounts",
                round.accountUpdate(
                    province: province,
                    [(BatchRound.AccountKey(province: province, citizen: citizen), BatchJudge.Account(points: 1, gramsCO2e: 1, lastSeq: 1))])
            ))
        statements.append(("pull.balances", Self.balancesQuery(citizen)))
        statements.append(("pull.statement", Self.statementQuery(citizen: citizen, province: nil, provinces: [province], seqs: [1], limit: 200)))
        statements.append(("status.verdicts", Self.verdictsQuery(citizen: citizen, ids: [eventID])))
        statements.append(("reversal.lookup", Self.awardLookup(event: eventID, province: province)))
        statements.append(("seal.sealed_through", LedgerChain.sealedThroughQuery(province)))
        statements.append(("seal.pending", LedgerChain.pendingQueryV2(.transaction, province: province, after: 1, through: 1_000)))
        statements.append(("seal.pending_ids", LedgerChain.pendingIDsQuery(.event, province: province, after: 1, through: 1_000, limit: 100)))
        statements.append(
            (
                "publish.judged_through",
                """
                SELECT occurred_at FROM events WHERE province = \(province) AND code IS DISTINCT FROM 'clock_skew' ORDER BY occurred_at DESC LIMIT 1
                """
            ))
        let all = statements
        return try await pool.withConnection { connection in
            try all.map { name, query in
                StatementPlan(name: name, plan: try connection.query(query.explained()).rows.map { $0.text(0) ?? "" }.joined(separator: "\n"))
            }
        }
    }
}
