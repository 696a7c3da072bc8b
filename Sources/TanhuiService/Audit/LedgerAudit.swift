package import Crypto
package import Foundation
import TanhuiCore
package import TanhuiPostgres

/// What to audit and how.
package struct AuditOptions: Sendable {
    /// Provinces to audit; empty means every province with rule sets, accounts or transactions.
    package var provinces: [String] = []
    /// Report only findings about transactions created in [from, to); every check still
    /// folds the whole province (chain, conservation, caps and balances are cumulative).
    package var from: Date?
    package var to: Date?
    /// Checkpoint notes to verify, with the file each came from.
    package var checkpoints: [(file: String, note: String)] = []
    /// The key checkpoints must be signed with (required when `checkpoints` is not empty).
    package var trustedKey: Curve25519.Signing.PublicKey?
    /// Unsealed transactions older than this are a finding.
    package var sealBoundSeconds: Int = 60
    /// Provinces audited in parallel (each on its own pooled connection, same snapshot).
    package var jobs: Int = 1
    /// Rows fetched per cursor round trip.
    package var pageSize: Int = 5000

    package init() {}
}

/// `tanhui audit`: proves the books are right, or says exactly where they are not.
///
/// Snapshot: a coordinator connection opens a READ ONLY REPEATABLE READ transaction and
/// exports its snapshot; every province worker imports it (`SET TRANSACTION SNAPSHOT`), so
/// all provinces, the guard rails and the checkpoints are read at one instant even with
/// `jobs > 1`. Memory: every large table is read through server-side cursors in pages;
/// only one citizen's running sums and cap windows and each check's first/worst/last
/// offender are held.
package final class LedgerAudit: Sendable {
    let pool: PostgresPool

    /// Append-only history tables the guard rails cover.
    package static let guardedTables = ["events", "ledger_transactions", "ledger_entries", "ledger_chain", "ledger_checkpoints", "rule_sets"]

    package init(pool: PostgresPool) {
        self.pool = pool
    }

    package func run(_ options: AuditOptions, progress: (@Sendable (Int64) -> Void)? = nil) async throws -> AuditReport {
        let coordinator = try PostgresConnection.connect(pool.configuration.connection)
        defer { coordinator.close() }
        try coordinator.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        let snapshot = try coordinator.query("SELECT pg_export_snapshot()").scalar(String.self)
        guard snapshot.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
            throw PostgresError(kind: .invalidValue, operation: "audit", message: "unexpected snapshot id")
        }

        let provinces: [String]
        if options.provinces.isEmpty {
            provinces = try coordinator.query("""
                -- citus: multi-shard (the provinces to audit)
                SELECT province FROM rule_sets UNION SELECT DISTINCT province FROM citizen_accounts
                UNION SELECT DISTINCT province FROM ledger_transactions ORDER BY 1
                """).rows.map { try $0.decode(0, as: String.self) }
        } else {
            provinces = Array(Set(options.provinces)).sorted()
        }

        var global = AuditAccumulator(from: options.from, to: options.to)
        try Self.guardRails(on: coordinator, into: &global)
        try Self.checkpoints(options, on: coordinator, into: &global)

        let jobs = max(1, min(options.jobs, pool.configuration.maximumConnections))
        let results = try await withThrowingTaskGroup(of: (Int, AuditAccumulator).self) { group in
            var collected: [Int: AuditAccumulator] = [:]
            var next = 0
            func start(_ index: Int) {
                let province = provinces[index]
                group.addTask {
                    let result = try await self.pool.withTransaction(isolation: .repeatableRead, maximumAttempts: 1) { connection in
                        try connection.query(PostgresQuery(stringLiteral: "SET TRANSACTION SNAPSHOT '\(snapshot)'"))
                        try connection.query("SET TRANSACTION READ ONLY")
                        var audit = ProvinceAudit(province: province, options: options, connection: connection, progress: progress)
                        return try audit.run()
                    }
                    return (index, result)
                }
            }
            while next < min(jobs, provinces.count) { start(next); next += 1 }
            while let (index, result) = try await group.next() {
                collected[index] = result
                if next < provinces.count { start(next); next += 1 }
            }
            return collected
        }
        try coordinator.query("COMMIT")

        var total = global
        for index in provinces.indices { total.merge(results[index]!) }
        return AuditReport(
            provinces: provinces, checks: AuditCheckID.allCases.map { total.results[$0]! }, rowsChecked: total.rowsChecked,
            snapshot: "shared", from: options.from, to: options.to, sealBoundSeconds: options.sealBoundSeconds
        )
    }

    /// Rows the audit will stream, from the planner's statistics (for a progress ETA only).
    package func estimatedRows() async throws -> Int64 {
        try await pool.withConnection { connection in
            try connection.query("""
                SELECT coalesce(sum(greatest(reltuples, 0)), 0)::bigint FROM pg_class
                WHERE oid IN ('ledger_transactions'::regclass, 'ledger_chain'::regclass, 'citizen_accounts'::regclass, 'cap_usage'::regclass)
                """).scalar(Int64.self)
        }
    }

    // MARK: Global checks

    static func guardRails(on connection: PostgresConnection, into audit: inout AuditAccumulator) throws {
        let triggers = try connection.query("""
            SELECT t.name || s.suffix, tr.tgname IS NOT NULL, coalesce(tr.tgenabled::text, ''), coalesce(tr.tgfoid = 'tanhui_reject_change'::regproc, false)
            FROM unnest(\(PostgresArray(guardedTables))::text[]) AS t(name)
            CROSS JOIN unnest(ARRAY['_append_only', '_no_truncate']) AS s(suffix)
            LEFT JOIN pg_trigger tr ON tr.tgrelid = to_regclass(t.name) AND tr.tgname = t.name || s.suffix
            ORDER BY 1
            """)
        for row in triggers.rows {
            let name: String = try row.decode(0)
            audit.checked(.guardRails)
            let fields: [(String, AuditValue)] = [("trigger", .string(name))]
            if !(try row.decode(1, as: Bool.self)) {
                audit.record(.guardRails, AuditFinding("append-only trigger \(name) is missing", fields))
            } else if !["O", "A"].contains(try row.decode(2, as: String.self)) {
                audit.record(.guardRails, AuditFinding("append-only trigger \(name) is disabled (tgenabled = '\(try row.decode(2, as: String.self))')", fields))
            } else if !(try row.decode(3, as: Bool.self)) {
                audit.record(.guardRails, AuditFinding("trigger \(name) no longer calls tanhui_reject_change()", fields))
            }
        }
        audit.checked(.guardRails)
        let rejects = try connection.query("SELECT prosrc FROM pg_proc WHERE proname = 'tanhui_reject_change'").first.map { try $0.decode(0, as: String.self) } ?? ""
        if !rejects.localizedCaseInsensitiveContains("RAISE EXCEPTION") {
            audit.record(.guardRails, AuditFinding("function tanhui_reject_change() is missing or no longer raises", [("function", .string("tanhui_reject_change"))]))
        }
        audit.checked(.guardRails)
        guard let role = try connection.query("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'tanhui_service'").first else {
            audit.record(.guardRails, AuditFinding("role tanhui_service does not exist", [("role", .string("tanhui_service"))]))
            return
        }
        if try role.decode(0, as: Bool.self) || role.decode(1, as: Bool.self) {
            audit.record(.guardRails, AuditFinding("role tanhui_service is a superuser or bypasses row security", [("role", .string("tanhui_service"))]))
        }
        let privileges = try connection.query("""
            SELECT t, p, has_table_privilege('tanhui_service', t, p), pg_get_userbyid(c.relowner) = 'tanhui_service'
            FROM unnest(\(PostgresArray(guardedTables))::text[]) AS t
            CROSS JOIN unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) AS p
            JOIN pg_class c ON c.oid = to_regclass(t)
            ORDER BY 1, 2
            """)
        for row in privileges.rows {
            audit.checked(.guardRails)
            let table: String = try row.decode(0), privilege: String = try row.decode(1)
            if try row.decode(2, as: Bool.self) {
                audit.record(.guardRails, AuditFinding("tanhui_service holds \(privilege) on \(table)", [("role", .string("tanhui_service")), ("table", .string(table)), ("privilege", .string(privilege))]))
            }
            if privilege == "UPDATE", try row.decode(3, as: Bool.self) {
                audit.record(.guardRails, AuditFinding("tanhui_service owns \(table) (an owner can disable its triggers)", [("role", .string("tanhui_service")), ("table", .string(table))]))
            }
        }
    }

    static func checkpoints(_ options: AuditOptions, on connection: PostgresConnection, into audit: inout AuditAccumulator) throws {
        for (file, note) in options.checkpoints {
            audit.checked(.checkpoints)
            var fields: [(String, AuditValue)] = [("file", .string(file))]
            guard let key = options.trustedKey else {
                audit.record(.checkpoints, AuditFinding("no trusted key to verify the checkpoint with", fields))
                continue
            }
            let checkpoint: Checkpoint
            do {
                checkpoint = try Checkpoint.verify(note: note, trustedKey: key)
            } catch {
                audit.record(.checkpoints, AuditFinding(error.description, magnitude: 2, fields))
                continue
            }
            fields += [("province", .string(checkpoint.province)), ("chain_seq", .int(checkpoint.sequence)), ("head", .string(checkpoint.headHash))]
            guard checkpoint.sequence > 0 else { continue }
            let row = try connection.query("""
                SELECT (SELECT hash FROM ledger_chain WHERE province = \(checkpoint.province) AND chain_seq = \(checkpoint.sequence)),
                       (SELECT coalesce(max(chain_seq), 0) FROM ledger_chain WHERE province = \(checkpoint.province))
                """).rows[0]
            let current = try row.decode(0, as: String?.self)
            let length = try row.decode(1, as: Int64.self)
            if current == nil {
                audit.record(.checkpoints, AuditFinding("the chain has \(length) links, fewer than the checkpoint's \(checkpoint.sequence): history was truncated or rolled back",
                                                        magnitude: 3, fields + [("chain_length", .int(length))]))
            } else if current != checkpoint.headHash {
                audit.record(.checkpoints, AuditFinding("the chain's hash at sequence \(checkpoint.sequence) is \(current!), not the checkpoint's head: history was rewritten",
                                                        magnitude: 3, fields + [("current_hash", .string(current!))]))
            }
        }
    }
}

/// Reads rows of a server-side cursor page by page (FETCH n), inside the caller's transaction.
final class AuditCursor {
    let connection: PostgresConnection
    let name: String
    let pageSize: Int
    let onPage: (Int64) -> Void
    private var buffer: [PostgresRow] = []
    private var index = 0
    private var exhausted = false

    /// `declare` must be `DECLARE <name> NO SCROLL CURSOR FOR …`.
    init(_ declare: PostgresQuery, name: String, on connection: PostgresConnection, pageSize: Int, onPage: @escaping (Int64) -> Void) throws {
        self.connection = connection
        self.name = name
        self.pageSize = pageSize
        self.onPage = onPage
        try connection.query(declare)
    }

    func peek() throws -> PostgresRow? {
        if index < buffer.count { return buffer[index] }
        guard !exhausted else { return nil }
        buffer = try connection.query(PostgresQuery(stringLiteral: "FETCH \(pageSize) FROM \(name)")).rows
        index = 0
        if buffer.count < pageSize { exhausted = true }
        onPage(Int64(buffer.count))
        return buffer.first
    }

    func next() throws -> PostgresRow? {
        let row = try peek()
        if row != nil { index += 1 }
        return row
    }

    func close() throws {
        try connection.query(PostgresQuery(stringLiteral: "CLOSE \(name)"))
    }
}

/// The per-province checks on one connection inside the shared snapshot.
struct ProvinceAudit {
    let province: String
    let options: AuditOptions
    let connection: PostgresConnection
    let progress: (@Sendable (Int64) -> Void)?
    var audit: AuditAccumulator

    init(province: String, options: AuditOptions, connection: PostgresConnection, progress: (@Sendable (Int64) -> Void)?) {
        self.province = province
        self.options = options
        self.connection = connection
        self.progress = progress
        audit = AuditAccumulator(from: options.from, to: options.to)
    }

    private var pageSize: Int { max(100, options.pageSize) }

    private func cursor(_ declare: PostgresQuery, name: String, counter: RowCounter) throws -> AuditCursor {
        try AuditCursor(declare, name: name, on: connection, pageSize: pageSize) { [progress] count in
            counter.rows += count
            progress?(count)
        }
    }

    final class RowCounter {
        var rows: Int64 = 0
    }

    mutating func run() throws -> AuditAccumulator {
        let counter = RowCounter()
        let ruleSets = try ruleSetVersions()
        try conservation()
        try ledgerFold(ruleSets: ruleSets, counter: counter)
        try chain(counter: counter)
        try setChecks(counter: counter)
        audit.rowsChecked += counter.rows
        return audit
    }

    private var provinceField: (String, AuditValue) { ("province", .string(province)) }

    /// Every stored document must hash to its content_sha256 and parse; only those replay.
    private mutating func ruleSetVersions() throws -> [Int: RuleSet] {
        var versions: [Int: RuleSet] = [:]
        for row in try connection.query("SELECT version, document, content_sha256 FROM rule_sets WHERE province = \(province) ORDER BY version").rows {
            let version: Int = try row.decode(0), document: String = try row.decode(1), stored: String = try row.decode(2)
            let fields: [(String, AuditValue)] = [provinceField, ("rule_set_version", .int(Int64(version)))]
            audit.checked(.replay)
            let actual = RuleSetService.contentHash(of: document)
            guard actual == stored else {
                audit.record(.replay, AuditFinding("stored rule-set document hashes to \(actual), not its content_sha256 \(stored): the published rules were edited",
                                                   magnitude: 1_000_000, fields + [("content_sha256", .string(stored)), ("document_sha256", .string(actual))]))
                continue
            }
            do {
                let ruleSet = try RuleSetParser.parse(document)
                guard ruleSet.province == province, ruleSet.version == version else {
                    audit.record(.replay, AuditFinding("document declares \(ruleSet.province) version \(ruleSet.version)", magnitude: 1_000_000, fields))
                    continue
                }
                versions[version] = ruleSet
            } catch {
                audit.record(.replay, AuditFinding("stored rule-set document no longer parses: \(error.description.prefix(200))", magnitude: 1_000_000, fields))
            }
        }
        return versions
    }

    private mutating func conservation() throws {
        let row = try connection.query("""
            SELECT (SELECT coalesce(sum(points), 0)::bigint FROM ledger_entries WHERE province = \(province) AND account = 'issuance'),
                   (SELECT coalesce(sum(points), 0)::bigint FROM ledger_entries WHERE province = \(province) AND account <> 'issuance'),
                   (SELECT coalesce(sum(points) FILTER (WHERE kind = 'award'), 0)::bigint FROM ledger_transactions WHERE province = \(province)),
                   (SELECT coalesce(-sum(points) FILTER (WHERE kind = 'reversal'), 0)::bigint FROM ledger_transactions WHERE province = \(province))
            """).rows[0]
        let issuance: Int64 = try row.decode(0), citizens: Int64 = try row.decode(1), issued: Int64 = try row.decode(2), reversed: Int64 = try row.decode(3)
        audit.checked(.conservation)
        let fields: [(String, AuditValue)] = [provinceField, ("account", .string("issuance")), ("issuance_balance", .int(issuance)),
                                              ("citizen_entries", .int(citizens)), ("issued", .int(issued)), ("reversed", .int(reversed))]
        if -issuance != citizens {
            audit.record(.conservation, AuditFinding("−issuance balance \(-issuance) ≠ Σ citizen entries \(citizens)", magnitude: abs(issuance + citizens), fields))
        }
        if issued - reversed != citizens {
            audit.record(.conservation, AuditFinding("issued \(issued) − reversed \(reversed) = \(issued - reversed) ≠ Σ citizen balances \(citizens)",
                                                     magnitude: abs(issued - reversed - citizens), fields))
        }
    }

    /// Transactions by (citizen, citizen_seq), merged with citizen_accounts and cap_usage.
    private mutating func ledgerFold(ruleSets: [Int: RuleSet], counter: RowCounter) throws {
        let transactions = try cursor("""
            DECLARE audit_tx NO SCROLL CURSOR FOR
            SELECT t.transaction_id, t.kind, t.citizen_id::text, t.citizen_seq, t.event_id::text, t.points, t.grams_co2e, t.rule_set_version,
                   t.points_before_caps, t.reverses_id, t.created_at,
                   en.n, en.total, en.issuance, en.citizen, en.other,
                   e.event_id IS NOT NULL, e.status, e.citizen_id::text, e.kind, e.occurred_at, e.ended_at, e.received_at,
                   e.mode, e.material, e.distance_m, e.weight_g, e.unit_count, e.consumption_wh, e.baseline_wh, e.days,
                   o.transaction_id IS NOT NULL, o.kind, o.citizen_id::text, o.event_id::text, o.points, o.grams_co2e, o.rule_set_version,
                   oen.issuance, oen.citizen
            FROM ledger_transactions t
            CROSS JOIN LATERAL (
                SELECT count(*) AS n, coalesce(sum(x.points), 0)::bigint AS total,
                       coalesce(sum(x.points) FILTER (WHERE x.account = 'issuance'), 0)::bigint AS issuance,
                       coalesce(sum(x.points) FILTER (WHERE x.account = 'citizen:' || t.citizen_id::text), 0)::bigint AS citizen,
                       count(*) FILTER (WHERE x.account <> 'issuance' AND x.account <> 'citizen:' || t.citizen_id::text) AS other
                FROM ledger_entries x WHERE x.province = t.province AND x.transaction_id = t.transaction_id) en
            LEFT JOIN events e ON e.province = t.province AND e.event_id = t.event_id
            LEFT JOIN ledger_transactions o ON o.province = t.province AND o.transaction_id = t.reverses_id
            LEFT JOIN LATERAL (
                SELECT coalesce(sum(y.points) FILTER (WHERE y.account = 'issuance'), 0)::bigint AS issuance,
                       coalesce(sum(y.points) FILTER (WHERE y.account = 'citizen:' || o.citizen_id::text), 0)::bigint AS citizen
                FROM ledger_entries y WHERE y.province = o.province AND y.transaction_id = o.transaction_id) oen ON o.transaction_id IS NOT NULL
            WHERE t.province = \(province)
            ORDER BY t.citizen_id, t.citizen_seq, t.transaction_id
            """, name: "audit_tx", counter: counter)
        let accounts = try cursor("""
            DECLARE audit_accounts NO SCROLL CURSOR FOR
            SELECT citizen_id::text, balance_points, balance_grams, last_seq FROM citizen_accounts WHERE province = \(province) ORDER BY citizen_id
            """, name: "audit_accounts", counter: counter)
        let usage = try cursor("""
            DECLARE audit_caps NO SCROLL CURSOR FOR
            SELECT citizen_id::text, window_key, points, events FROM cap_usage WHERE province = \(province) ORDER BY citizen_id, window_key
            """, name: "audit_caps", counter: counter)

        var fold = ProvinceFold(province: province, ruleSets: ruleSets)
        while true {
            let candidates = [try transactions.peek()?.decode(2, as: String.self), try accounts.peek()?.decode(0, as: String.self), try usage.peek()?.decode(0, as: String.self)]
            guard let citizen = candidates.compactMap({ $0 }).min() else { break }
            fold.begin(citizen: citizen)
            while let row = try transactions.peek(), try row.decode(2, as: String.self) == citizen {
                _ = try transactions.next()
                fold.transaction(try Self.transactionRow(row), into: &audit)
            }
            var account: AuditAccountRow?
            while let row = try accounts.peek(), try row.decode(0, as: String.self) == citizen {
                _ = try accounts.next()
                account = AuditAccountRow(citizen: citizen, balancePoints: try row.decode(1), balanceGrams: try row.decode(2), lastSeq: try row.decode(3))
            }
            var capUsage: [AuditCapUsageRow] = []
            while let row = try usage.peek(), try row.decode(0, as: String.self) == citizen {
                _ = try usage.next()
                capUsage.append(AuditCapUsageRow(citizen: citizen, windowKey: try row.decode(1), points: try row.decode(2), events: try row.decode(3)))
            }
            fold.end(account: account, capUsage: capUsage, into: &audit)
        }
        try transactions.close()
        try accounts.close()
        try usage.close()
    }

    static func transactionRow(_ row: PostgresRow) throws -> AuditTransactionRow {
        var result = AuditTransactionRow(
            transactionID: try row.decode(0), kind: try row.decode(1), citizen: try row.decode(2), citizenSeq: try row.decode(3),
            eventID: try row.decode(4), points: try row.decode(5), grams: try row.decode(6), ruleSetVersion: try row.decode(7),
            pointsBeforeCaps: try row.decode(8, as: Int64?.self), reversesID: try row.decode(9, as: Int64?.self), createdAt: try row.decode(10),
            entryCount: try row.decode(11), entrySum: try row.decode(12), issuanceSum: try row.decode(13), citizenSum: try row.decode(14),
            foreignEntries: try row.decode(15), event: nil, original: nil
        )
        if try row.decode(16, as: Bool.self) {
            result.event = AuditEventRow(
                status: try row.decode(17), citizen: try row.decode(18), kind: try row.decode(19), occurredAt: try row.decode(20),
                endedAt: try row.decode(21, as: Date?.self), receivedAt: try row.decode(22),
                data: EventData(mode: try row.decode(23, as: String?.self), material: try row.decode(24, as: String?.self),
                                distanceMeters: try row.decode(25, as: Int64?.self), weightGrams: try row.decode(26, as: Int64?.self),
                                count: try row.decode(27, as: Int64?.self), consumptionWh: try row.decode(28, as: Int64?.self),
                                baselineWh: try row.decode(29, as: Int64?.self), days: try row.decode(30, as: Int64?.self))
            )
        }
        if try row.decode(31, as: Bool.self) {
            result.original = AuditOriginalRow(
                kind: try row.decode(32), citizen: try row.decode(33), eventID: try row.decode(34), points: try row.decode(35),
                grams: try row.decode(36), ruleSetVersion: try row.decode(37), issuanceSum: try row.decode(38), citizenSum: try row.decode(39)
            )
        }
        return result
    }

    /// The hash chain from genesis, recomputed with the sealer's own canonical form.
    private mutating func chain(counter: RowCounter) throws {
        let links = try cursor("""
            DECLARE audit_chain NO SCROLL CURSOR FOR
            SELECT \(LedgerChain.rowColumns), t.transaction_id IS NOT NULL, c.chain_seq, c.transaction_id, c.previous_hash, c.hash
            FROM ledger_chain c LEFT JOIN ledger_transactions t ON t.province = c.province AND t.transaction_id = c.transaction_id
            WHERE c.province = \(province)
            ORDER BY c.chain_seq
            """, name: "audit_chain", counter: counter)
        var replay = ChainReplay(province: province)
        while let row = try links.next() {
            let sealed = try row.decode(13, as: Bool.self) ? try LedgerChain.decodeRow(row) : nil
            replay.link(seq: try row.decode(14), transactionID: try row.decode(15), previousHash: try row.decode(16), hash: try row.decode(17), row: sealed, into: &audit)
        }
        try links.close()
    }

    /// Checks that are set differences or groupings: the database streams only the offenders.
    private mutating func setChecks(counter: RowCounter) throws {
        func each(_ declare: PostgresQuery, _ name: String, _ body: (PostgresRow) throws -> Void) throws {
            let offenders = try cursor(declare, name: name, counter: counter)
            while let row = try offenders.next() { try body(row) }
            try offenders.close()
        }
        let p = provinceField

        try each("""
            DECLARE audit_orphans NO SCROLL CURSOR FOR
            SELECT e.transaction_id, e.account, e.points FROM ledger_entries e
            WHERE e.province = \(province)
              AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.province = e.province AND t.transaction_id = e.transaction_id)
            ORDER BY 1, 2
            """, "audit_orphans") { row in
            let points: Int64 = try row.decode(2)
            audit.record(.transactionsBalance, AuditFinding("entry of \(points) points belongs to no transaction", magnitude: abs(points),
                                                            [p, ("transaction_id", .int(try row.decode(0))), ("account", .string(try row.decode(1)))]))
        }

        audit.checked(.completeness, try connection.query("SELECT count(*) FROM events WHERE province = \(province) AND status = 'accepted'").scalar(Int64.self))
        try each("""
            DECLARE audit_unawarded NO SCROLL CURSOR FOR
            SELECT e.event_id::text, e.citizen_id::text, e.received_at FROM events e
            WHERE e.province = \(province) AND e.status = 'accepted'
              AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.province = e.province AND t.event_id = e.event_id AND t.kind = 'award')
            ORDER BY e.received_at, e.event_id
            """, "audit_unawarded") { row in
            audit.record(.completeness, AuditFinding("accepted event has no award transaction", at: try row.decode(2),
                                                     [p, ("event_id", .string(try row.decode(0))), ("citizen_id", .string(try row.decode(1)))]))
        }
        try each("""
            DECLARE audit_double_awards NO SCROLL CURSOR FOR
            SELECT event_id::text, count(*), min(transaction_id), max(transaction_id) FROM ledger_transactions
            WHERE province = \(province) AND kind = 'award' GROUP BY event_id HAVING count(*) > 1 ORDER BY 3
            """, "audit_double_awards") { row in
            let count: Int64 = try row.decode(1)
            audit.record(.completeness, AuditFinding("event has \(count) award transactions", magnitude: count,
                                                     [p, ("event_id", .string(try row.decode(0))), ("transaction_id", .int(try row.decode(3))), ("first_transaction_id", .int(try row.decode(2)))]))
        }
        try each("""
            DECLARE audit_evidence NO SCROLL CURSOR FOR
            SELECT evidence_source, evidence_ref, count(*), min(event_id::text), max(event_id::text) FROM events
            WHERE province = \(province) AND status = 'accepted' AND evidence_source IS NOT NULL
            GROUP BY evidence_source, evidence_ref HAVING count(*) > 1 ORDER BY 1, 2
            """, "audit_evidence") { row in
            let count: Int64 = try row.decode(2)
            audit.record(.completeness, AuditFinding("evidence credited \(count) times", magnitude: count,
                                                     [p, ("evidence_source", .string(try row.decode(0))), ("evidence_ref", .string(try row.decode(1))),
                                                      ("event_id", .string(try row.decode(4))), ("first_event_id", .string(try row.decode(3)))]))
        }
        try each("""
            DECLARE audit_double_reversals NO SCROLL CURSOR FOR
            SELECT reverses_id, count(*), max(transaction_id) FROM ledger_transactions
            WHERE province = \(province) AND kind = 'reversal' GROUP BY reverses_id HAVING count(*) > 1 ORDER BY 1
            """, "audit_double_reversals") { row in
            let count: Int64 = try row.decode(1)
            audit.record(.reversals, AuditFinding("award is reversed \(count) times", magnitude: count,
                                                  [p, ("reverses_id", .int(try row.decode(0))), ("transaction_id", .int(try row.decode(2)))]))
        }
        try each("""
            DECLARE audit_double_seals NO SCROLL CURSOR FOR
            SELECT transaction_id, count(*), min(chain_seq), max(chain_seq) FROM ledger_chain
            WHERE province = \(province) GROUP BY transaction_id HAVING count(*) > 1 ORDER BY 1
            """, "audit_double_seals") { row in
            let count: Int64 = try row.decode(1)
            audit.record(.hashChain, AuditFinding("transaction sealed \(count) times (rule: sealed exactly once)", magnitude: count,
                                                  [p, ("transaction_id", .int(try row.decode(0))), ("chain_seq", .int(try row.decode(3))), ("rule", .string("once"))]))
        }
        audit.checked(.unsealedBacklog, try connection.query("SELECT count(*) FROM ledger_transactions WHERE province = \(province)").scalar(Int64.self))
        try each("""
            DECLARE audit_unsealed NO SCROLL CURSOR FOR
            SELECT t.transaction_id, t.created_at, extract(epoch FROM now() - t.created_at)::bigint FROM ledger_transactions t
            WHERE t.province = \(province) AND t.created_at < now() - make_interval(secs => \(options.sealBoundSeconds)::double precision)
              AND NOT EXISTS (SELECT 1 FROM ledger_chain c WHERE c.province = t.province AND c.transaction_id = t.transaction_id)
            ORDER BY t.transaction_id
            """, "audit_unsealed") { row in
            let age: Int64 = try row.decode(2)
            audit.record(.unsealedBacklog, AuditFinding("unsealed for \(age) s, longer than the \(options.sealBoundSeconds) s bound", magnitude: age, at: try row.decode(1),
                                                        [p, ("transaction_id", .int(try row.decode(0))), ("age_seconds", .int(age))]))
        }
    }
}
