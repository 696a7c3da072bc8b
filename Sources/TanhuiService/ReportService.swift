package import Crypto
package import Foundation
import TanhuiCore
package import TanhuiPostgres

/// A dimension a report may be grouped by.
package enum ReportDimension: String, Sendable, CaseIterable, Comparable {
    /// The local day (UTC+08:00) of the judged `occurred_at`.
    case day
    case kind
    /// Transit mode or recycled material.
    case variant
    /// GB/T 2260 county code (`data.district`).
    case district

    package static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// An unknown dimension name, with a message naming it.
    package struct Unknown: Error, Sendable {
        package let message: String
    }

    /// `day,kind` → sorted, distinct dimensions, or the first unknown name.
    package static func parseList(_ text: String) -> Result<[ReportDimension], Unknown> {
        var dimensions = Set<ReportDimension>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let dimension = ReportDimension(rawValue: name) else {
                return .failure(Unknown(message: "unknown group_by dimension '\(name.prefix(40))'; use day, kind, variant, district"))
            }
            dimensions.insert(dimension)
        }
        return .success(dimensions.sorted())
    }
}

/// What a report is asked for: local days `from`…`to` inclusive (YYYY-MM-DD).
package struct ReportRequest: Sendable, Equatable {
    package var province: String
    package var from: String
    package var to: String
    package var groupBy: [ReportDimension]

    package init(province: String, from: String, to: String, groupBy: [ReportDimension]) {
        self.province = province
        self.from = from
        self.to = to
        self.groupBy = groupBy
    }

    /// Longest period one report covers.
    package static let maximumDays = 400

    /// Why the request cannot be answered, or nil.
    package func problem() -> String? {
        guard let start = Self.dayNumber(from), let end = Self.dayNumber(to) else {
            return "from and to must be dates YYYY-MM-DD"
        }
        if end < start { return "to is before from" }
        if end - start + 1 > Self.maximumDays { return "a report covers at most \(Self.maximumDays) days" }
        return nil
    }

    /// Days since 1970-01-01 of a proleptic Gregorian `YYYY-MM-DD` (years 0001…9999).
    static func dayNumber(_ text: String) -> Int? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.utf8.count == 10, parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1...9999).contains(year), (1...12).contains(month), day >= 1
        else { return nil }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let lengths = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard day <= lengths[month - 1] else { return nil }
        // Days from civil (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// The chain link a report covers: every record with a seal id up to `sealID`.
package struct ReportChainHead: Sendable, Equatable {
    package var chainSeq: Int64
    package var hash: String
    package var sealID: Int64

    package init(chainSeq: Int64, hash: String, sealID: Int64) {
        self.chainSeq = chainSeq
        self.hash = hash
        self.sealID = sealID
    }
}

/// One row of a report: its group values (nil for dimensions not grouped, or an event
/// without a variant or district) and figures, which are nil when suppressed.
package struct ReportCell: Sendable, Equatable {
    package var keys: [ReportDimension: String?]
    package var suppressed: Bool
    package var accepted: Int64?
    package var rejected: Int64?
    package var rejectedByCode: [String: Int64]?
    package var gramsCO2e: Int64?
    package var points: Int64?
    package var reversals: Int64?
    /// Distinct citizens with at least one judged event in the cell.
    package var citizens: Int64?

    package init(
        keys: [ReportDimension: String?], suppressed: Bool, accepted: Int64?, rejected: Int64?, rejectedByCode: [String: Int64]?,
        gramsCO2e: Int64?, points: Int64?, reversals: Int64?, citizens: Int64?
    ) {
        self.keys = keys
        self.suppressed = suppressed
        self.accepted = accepted
        self.rejected = rejected
        self.rejectedByCode = rejectedByCode
        self.gramsCO2e = gramsCO2e
        self.points = points
        self.reversals = reversals
        self.citizens = citizens
    }
}

/// A report as the service computed it, before it is signed.
package struct Report: Sendable, Equatable {
    package var request: ReportRequest
    package var head: ReportChainHead
    package var threshold: Int64
    package var cells: [ReportCell]
    package var total: ReportCell

    package init(request: ReportRequest, head: ReportChainHead, threshold: Int64, cells: [ReportCell], total: ReportCell) {
        self.request = request
        self.head = head
        self.threshold = threshold
        self.cells = cells
        self.total = total
    }

    /// Applies the suppression rule: a cell with fewer than `threshold` distinct citizens
    /// keeps its keys and says `suppressed`, with no figures.
    package static func suppress(_ cell: ReportCell, threshold: Int64) -> ReportCell {
        guard (cell.citizens ?? 0) < threshold else { return cell }
        return ReportCell(
            keys: cell.keys, suppressed: true, accepted: nil, rejected: nil, rejectedByCode: nil, gramsCO2e: nil, points: nil, reversals: nil,
            citizens: nil)
    }

    /// The CSV form (RFC 4180, LF line ends): a header, one `cell` row per cell, then one
    /// `total` row. Values are codes, dates and integers, so nothing needs quoting; the
    /// codes column is `code=n` pairs separated by spaces, sorted by code. Its SHA-256 is signed.
    package var csv: String {
        var lines = [(["scope"] + request.groupBy.map(\.rawValue) + Self.figureColumns).joined(separator: ",")]
        func row(_ scope: String, _ cell: ReportCell) -> String {
            var fields = [scope]
            for dimension in request.groupBy { fields.append((cell.keys[dimension] ?? nil).map(Self.csvField) ?? "") }
            fields.append(cell.suppressed ? "true" : "false")
            let numbers: [Int64?] = [cell.accepted, cell.rejected]
            fields += numbers.map { $0.map(String.init) ?? "" }
            fields.append(cell.rejectedByCode.map { codes in codes.keys.sorted().map { "\($0)=\(codes[$0]!)" }.joined(separator: " ") } ?? "")
            let rest: [Int64?] = [cell.gramsCO2e, cell.points, cell.reversals, cell.citizens]
            fields += rest.map { $0.map(String.init) ?? "" }
            return fields.joined(separator: ",")
        }
        for cell in cells { lines.append(row("cell", cell)) }
        lines.append(row("total", total))
        return lines.map { $0 + "\n" }.joined()
    }

    static let figureColumns = ["suppressed", "accepted", "rejected", "rejected_by_code", "grams_co2e", "points", "reversals", "citizens"]

    /// Kinds, variants and codes are identifiers; anything else is quoted as RFC 4180 says.
    static func csvField(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// A report signed with the checkpoint key, in the checkpoint notes' text form: `name value`
/// lines signed over every line before `signature` (each ending in a newline):
/// ```
/// tanhui-report v1
/// province CN-GD
/// from 2027-03-01
/// to 2027-03-31
/// group_by day,kind
/// time_zone +08:00
/// threshold 10
/// sequence 42
/// head 9f86d0…
/// seal 1234
/// csv <SHA-256 of the CSV form>
/// time 1772323200
/// key <base64 Ed25519 public key>
/// signature <base64 Ed25519 signature>
/// ```
/// `sequence` and `head` are the chain link of the province's checkpoints, so a regulator
/// holding a checkpoint at or after `sequence` can check the report's chain position.
package struct SignedReport: Sendable {
    package var report: Report
    package var csv: String
    package var csvSHA256: String
    package var note: String

    package static func signedText(_ report: Report, csvSHA256: String, time: Int64, publicKey: Data) -> String {
        let request = report.request
        return """
            tanhui-report v1
            province \(request.province)
            from \(request.from)
            to \(request.to)
            group_by \(request.groupBy.map(\.rawValue).joined(separator: ","))
            time_zone +08:00
            threshold \(report.threshold)
            sequence \(report.head.chainSeq)
            head \(report.head.hash)
            seal \(report.head.sealID)
            csv \(csvSHA256)
            time \(time)
            key \(publicKey.base64EncodedString())

            """
    }

    package static func sign(_ report: Report, privateKey: Curve25519.Signing.PrivateKey, at time: Date) throws -> SignedReport {
        let csv = report.csv
        let digest = SHA256.hex(csv)
        let text = signedText(
            report, csvSHA256: digest, time: Int64(time.timeIntervalSince1970.rounded(.down)), publicKey: privateKey.publicKey.rawRepresentation)
        let signature = try privateKey.signature(for: Data(text.utf8))
        return SignedReport(report: report, csv: csv, csvSHA256: digest, note: text + "signature \(signature.base64EncodedString())\n")
    }

    /// Signs with the configured checkpoint key (`TANHUI_CHECKPOINT_KEY`); nil when the key is
    /// missing or unusable.
    package static func sign(_ report: Report, checkpointKey: [UInt8]?, at time: Date) throws -> SignedReport? {
        guard let checkpointKey, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: checkpointKey) else { return nil }
        return try sign(report, privateKey: key, at: time)
    }
}

/// Reports that reconcile with the ledger: a rollup folded from the sealed chain in the
/// background (never by a push), and reports over it, each tied to the chain link it covers.
package final class ReportService: Sendable {
    let pool: PostgresPool

    /// Cells with fewer distinct citizens than this are suppressed.
    package static let suppressionThreshold: Int64 = 10
    /// Most chain links folded per advance transaction (the rest in the next).
    package static let maximumLinksPerAdvance: Int64 = 20_000
    /// Most cells one report returns.
    package static let maximumCells = 50_000

    package init(pool: PostgresPool) {
        self.pool = pool
    }

    /// Provinces with a chain (the sealer's list: every province that has rule sets).
    package func provinces() async throws -> [String] {
        try await pool.withConnection { connection in
            try connection.query(
                """
                -- citus: multi-shard (the provinces with a chain, as the sealer lists them)
                SELECT DISTINCT province FROM rule_sets ORDER BY province
                """
            ).rows.map { try $0.decode(0, as: String.self) }
        }
    }

    /// Folds the province's sealed chain into the rollup up to its head; returns how many
    /// links were folded. `wait: false` returns 0 at once when another advance holds the lock.
    @discardableResult
    package func advance(province: String, wait: Bool = true) async throws -> Int64 {
        var folded: Int64 = 0
        while true {
            let step = try await pool.withTransaction { connection in
                try Self.advanceStep(province: province, wait: wait, on: connection)
            }
            folded += step
            if step < Self.maximumLinksPerAdvance { return folded }
        }
    }

    /// Advances every province; returns links folded per province.
    @discardableResult
    package func advanceAll(wait: Bool = false) async throws -> [String: Int64] {
        var folded: [String: Int64] = [:]
        for province in try await provinces() { folded[province] = try await advance(province: province, wait: wait) }
        return folded
    }

    /// The local day of an event as SQL (UTC+08:00; an interval offset is ISO-signed).
    static let dayExpression: SQLFragment = "(e.occurred_at AT TIME ZONE INTERVAL '08:00')::date"

    /// One transaction: take the lock, find the link at most `maximumLinksPerAdvance` past
    /// the progress, fold the events and transactions with seal ids in between.
    static func advanceStep(province: String, wait: Bool, on connection: PostgresConnection) throws -> Int64 {
        let lockKey = "tanhui.report." + province
        if wait {
            try connection.query("SELECT pg_advisory_xact_lock(hashtext(\(lockKey)))")
        } else {
            let locked = try connection.query("SELECT pg_try_advisory_xact_lock(hashtext(\(lockKey)))").scalar(Bool.self)
            if !locked { return 0 }
        }
        let progress = try connection.query("SELECT sealed_through, chain_seq FROM report_progress WHERE province = \(province)").first
        let fromSeal: Int64 = try progress?.decode(0) ?? 0
        let fromSeq: Int64 = try progress?.decode(1) ?? 0
        guard
            let target = try connection.query(
                """
                SELECT chain_seq, hash, coalesce(seal_id, transaction_id) FROM ledger_chain
                WHERE province = \(province) AND chain_seq > \(fromSeq) AND chain_seq <= \(fromSeq + maximumLinksPerAdvance)
                ORDER BY chain_seq DESC LIMIT 1
                """
            ).first
        else { return 0 }
        let toSeq: Int64 = try target.decode(0)
        let toHash: String = try target.decode(1)
        let toSeal: Int64 = try target.decode(2)
        try connection.query(
            """
            INSERT INTO report_rollup (province, day, kind, variant, district, accepted, rejected)
            SELECT \(province)::text, day, kind, variant, district, count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status <> 'accepted')
            FROM (SELECT \(dayExpression) AS day, e.kind, coalesce(e.mode, e.material, '') AS variant, coalesce(e.district, '') AS district, e.status
                  FROM events e WHERE e.province = \(province) AND e.seal_id > \(fromSeal) AND e.seal_id <= \(toSeal)) x
            GROUP BY day, kind, variant, district
            ON CONFLICT (province, day, kind, variant, district)
            DO UPDATE SET accepted = report_rollup.accepted + excluded.accepted, rejected = report_rollup.rejected + excluded.rejected
            """)
        try connection.query(
            """
            INSERT INTO report_rejections (province, day, kind, variant, district, code, events)
            SELECT \(province)::text, day, kind, variant, district, code, count(*)
            FROM (SELECT \(dayExpression) AS day, e.kind, coalesce(e.mode, e.material, '') AS variant, coalesce(e.district, '') AS district, e.code
                  FROM events e WHERE e.province = \(province) AND e.seal_id > \(fromSeal) AND e.seal_id <= \(toSeal) AND e.status <> 'accepted') x
            GROUP BY day, kind, variant, district, code
            ON CONFLICT (province, day, kind, variant, district, code) DO UPDATE SET events = report_rejections.events + excluded.events
            """)
        try connection.query(
            """
            INSERT INTO report_citizens (province, day, kind, variant, district, citizen_id)
            SELECT DISTINCT \(province)::text, \(dayExpression), e.kind, coalesce(e.mode, e.material, ''), coalesce(e.district, ''), e.citizen_id
            FROM events e WHERE e.province = \(province) AND e.seal_id > \(fromSeal) AND e.seal_id <= \(toSeal)
            ON CONFLICT DO NOTHING
            """)
        try connection.query(
            """
            INSERT INTO report_rollup (province, day, kind, variant, district, grams_co2e, points, reversals)
            SELECT \(province)::text, day, kind, variant, district, sum(grams_co2e)::bigint, sum(points)::bigint, count(*) FILTER (WHERE tx_kind = 'reversal')
            FROM (SELECT \(dayExpression) AS day, e.kind, coalesce(e.mode, e.material, '') AS variant, coalesce(e.district, '') AS district,
                         t.grams_co2e, t.points, t.kind AS tx_kind
                  FROM ledger_transactions t JOIN events e ON e.province = t.province AND e.event_id = t.event_id
                  WHERE t.province = \(province) AND e.province = \(province) AND t.transaction_id > \(fromSeal) AND t.transaction_id <= \(toSeal)) x
            GROUP BY day, kind, variant, district
            ON CONFLICT (province, day, kind, variant, district)
            DO UPDATE SET grams_co2e = report_rollup.grams_co2e + excluded.grams_co2e, points = report_rollup.points + excluded.points,
                          reversals = report_rollup.reversals + excluded.reversals
            """)
        try connection.query(
            """
            INSERT INTO report_progress (province, sealed_through, chain_seq, head_hash, advanced_at)
            VALUES (\(province), \(toSeal), \(toSeq), \(toHash), now())
            ON CONFLICT (province) DO UPDATE SET sealed_through = excluded.sealed_through, chain_seq = excluded.chain_seq,
                head_hash = excluded.head_hash, advanced_at = excluded.advanced_at
            """)
        return toSeq - fromSeq
    }

    /// The report over the rollup as it stands (one snapshot: progress and rollup agree).
    package func report(_ request: ReportRequest) async throws -> Report {
        try await pool.withTransaction(isolation: .repeatableRead) { connection in
            try Self.report(request, on: connection)
        }
    }

    /// Net grams CO2e per kind over the whole rollup (the metric).
    package func gramsByKind(province: String) async throws -> [String: Int64] {
        try await pool.withConnection { connection in
            var grams: [String: Int64] = [:]
            for row in try connection.query(
                "SELECT kind, sum(grams_co2e)::bigint FROM report_rollup WHERE province = \(province) GROUP BY kind ORDER BY kind"
            ).rows {
                let kind: String = try row.decode(0)
                let total: Int64 = try row.decode(1)
                grams[kind] = total
            }
            return grams
        }
    }

    struct CellKey: Hashable {
        var values: [String?]
    }

    static func report(_ request: ReportRequest, on connection: PostgresConnection) throws -> Report {
        let province = request.province
        let head: ReportChainHead
        if let row = try connection.query("SELECT chain_seq, head_hash, sealed_through FROM report_progress WHERE province = \(province)").first {
            head = ReportChainHead(chainSeq: try row.decode(0), hash: try row.decode(1), sealID: try row.decode(2))
        } else {
            head = ReportChainHead(chainSeq: 0, hash: LedgerChain.genesisHash, sealID: 0)
        }
        let groups = Set(request.groupBy)
        let day: SQLFragment = groups.contains(.day) ? "day::text" : "NULL::text"
        let kind: SQLFragment = groups.contains(.kind) ? "kind" : "NULL::text"
        let variant: SQLFragment = groups.contains(.variant) ? "nullif(variant, '')" : "NULL::text"
        let district: SQLFragment = groups.contains(.district) ? "nullif(district, '')" : "NULL::text"
        let from = request.from
        let to = request.to
        func key(_ row: PostgresRow) throws -> CellKey {
            CellKey(values: try (0..<4).map { try row.decode($0, as: String?.self) })
        }
        var cells: [CellKey: ReportCell] = [:]
        var order: [CellKey] = []
        let figures = try connection.query(
            """
            SELECT \(day), \(kind), \(variant), \(district), sum(accepted)::bigint, sum(rejected)::bigint, sum(grams_co2e)::bigint,
                   sum(points)::bigint, sum(reversals)::bigint
            FROM report_rollup WHERE province = \(province) AND day BETWEEN \(from)::date AND \(to)::date
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 LIMIT \(maximumCells + 1)
            """)
        guard figures.rows.count <= maximumCells else { throw ReportTooLarge(cells: maximumCells) }
        for row in figures.rows {
            let cellKey = try key(row)
            var keys: [ReportDimension: String?] = [:]
            for (index, dimension) in ReportDimension.allCases.enumerated() where groups.contains(dimension) {
                keys[dimension] = cellKey.values[index]
            }
            cells[cellKey] = ReportCell(
                keys: keys, suppressed: false, accepted: try row.decode(4), rejected: try row.decode(5), rejectedByCode: [:],
                gramsCO2e: try row.decode(6), points: try row.decode(7), reversals: try row.decode(8), citizens: 0)
            order.append(cellKey)
        }
        for row in try connection.query(
            """
            SELECT \(day), \(kind), \(variant), \(district), code, sum(events)::bigint
            FROM report_rejections WHERE province = \(province) AND day BETWEEN \(from)::date AND \(to)::date
            GROUP BY 1, 2, 3, 4, 5 LIMIT 1000000
            """
        ).rows {
            let cellKey = try key(row)
            let code: String = try row.decode(4)
            let events: Int64 = try row.decode(5)
            cells[cellKey]?.rejectedByCode?[code] = events
        }
        for row in try connection.query(
            """
            SELECT \(day), \(kind), \(variant), \(district), count(DISTINCT citizen_id)
            FROM report_citizens WHERE province = \(province) AND day BETWEEN \(from)::date AND \(to)::date
            GROUP BY 1, 2, 3, 4 LIMIT \(maximumCells + 1)
            """
        ).rows {
            let cellKey = try key(row)
            let citizens: Int64 = try row.decode(4)
            cells[cellKey]?.citizens = citizens
        }
        let totals = try connection.query(
            """
            SELECT coalesce(sum(accepted), 0)::bigint, coalesce(sum(rejected), 0)::bigint, coalesce(sum(grams_co2e), 0)::bigint,
                   coalesce(sum(points), 0)::bigint, coalesce(sum(reversals), 0)::bigint,
                   (SELECT count(DISTINCT citizen_id) FROM report_citizens
                    WHERE province = \(province) AND day BETWEEN \(from)::date AND \(to)::date)
            FROM report_rollup WHERE province = \(province) AND day BETWEEN \(from)::date AND \(to)::date
            """
        ).rows[0]
        var totalCodes: [String: Int64] = [:]
        for row in try connection.query(
            """
            SELECT code, sum(events)::bigint FROM report_rejections
            WHERE province = \(province) AND day BETWEEN \(from)::date AND \(to)::date GROUP BY code ORDER BY code LIMIT 10000
            """
        ).rows {
            let code: String = try row.decode(0)
            let events: Int64 = try row.decode(1)
            totalCodes[code] = events
        }
        let total = ReportCell(
            keys: [:], suppressed: false, accepted: try totals.decode(0), rejected: try totals.decode(1), rejectedByCode: totalCodes,
            gramsCO2e: try totals.decode(2), points: try totals.decode(3), reversals: try totals.decode(4), citizens: try totals.decode(5))
        let threshold = suppressionThreshold
        return Report(
            request: request, head: head, threshold: threshold,
            cells: order.map { Report.suppress(cells[$0]!, threshold: threshold) }, total: Report.suppress(total, threshold: threshold))
    }
}

/// The grouping asked for more cells than one report returns.
package struct ReportTooLarge: Error, Sendable {
    package let cells: Int
}
