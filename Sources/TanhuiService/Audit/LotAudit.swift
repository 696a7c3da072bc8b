import Foundation
import TanhuiCore
import TanhuiPostgres

/// Lot replay (migration 0010), inside the audit's snapshot: every lot rebuilt from its award,
/// draws, refunds and expiries, per citizen in seal order.
///
/// Memory: lots and movements are read through two server-side cursors ordered by citizen and
/// merged, so only one citizen's lots are held at a time. `--since` replays only the citizens
/// with a transaction after the checkpoint (a lot only moves by its citizen's transactions)
/// and those with a lot past due that is not expired (a due lot changes nothing by itself); the
/// award and expiry set checks look at the new transactions only.
extension ProvinceAudit {
    /// How long past its expiry a lot with points left may stay unexpired (the expirer runs
    /// every second in `serve`; this allows for a server that was down briefly).
    static let lotExpiryBoundSeconds: Int64 = 300

    private struct ReplayLot {
        var awardTransactionID: Int64
        var citizen: UUID
        var points: Int64
        var expiresAtMs: Int64
        var cachedRemaining: Int64
        var cachedExpired: Bool
        var remaining: Int64
        var expired = false
    }

    private mutating func finding(_ detail: String, magnitude: Int64, lot: Int64?, citizen: UUID?, transaction: Int64? = nil) {
        var fields: [(String, AuditValue)] = [("province", .string(province))]
        if let citizen { fields.append(("citizen_id", .string(citizen.canonicalText))) }
        if let lot { fields.append(("lot", .int(lot))) }
        if let transaction { fields.append(("transaction_id", .int(transaction))) }
        audit.record(.lots, AuditFinding(detail, magnitude: max(1, magnitude), fields))
    }

    mutating func lotChecks() throws {
        let nowMs = try connection.query("SELECT (extract(epoch FROM now()) * 1000)::bigint").scalar(Int64.self)
        var validity: [Int: (PointsValidity, TimeZone)] = [:]
        for row in try connection.query("SELECT version, document FROM rule_sets WHERE province = \(province) ORDER BY version").rows {
            // A document that no longer parses is the replay check's finding; its lots cannot be rebuilt.
            if let ruleSet = try? RuleSetParser.parse(try row.decode(1, as: String.self)), let rule = ruleSet.pointsValidity {
                validity[try row.decode(0, as: Int.self)] = (rule, ruleSet.timeZone)
            }
        }
        let dueBeforeMs = nowMs - Self.lotExpiryBoundSeconds * 1000
        let counter = RowCounter()
        // 1. Each lot is what its award and that award's version make it (per citizen, below).
        let lotRows = try cursor(
            """
            DECLARE audit_lots NO SCROLL CURSOR FOR
            SELECT l.award_transaction_id, l.citizen_id, l.points, (extract(epoch FROM l.expires_at) * 1000)::bigint, l.remaining_points, l.expired,
                   t.kind, t.citizen_id, t.points, t.rule_set_version,
                   CASE WHEN isfinite(e.occurred_at) THEN (extract(epoch FROM e.occurred_at) * 1000)::bigint END
            FROM point_lots l
            LEFT JOIN ledger_transactions t ON t.province = l.province AND t.transaction_id = l.award_transaction_id
            LEFT JOIN events e ON e.province = t.province AND e.event_id = t.event_id
            WHERE l.province = \(province)
              AND (\(!incremental) OR l.citizen_id IN (
                    SELECT n.citizen_id FROM ledger_transactions n WHERE n.province = \(province) AND n.transaction_id > \(sinceID)
                    UNION SELECT d.citizen_id FROM point_lots d
                    WHERE d.province = \(province) AND NOT d.expired AND d.remaining_points > 0 AND (extract(epoch FROM d.expires_at) * 1000)::bigint < \(dueBeforeMs)))
            ORDER BY l.citizen_id, l.award_transaction_id
            """, name: "audit_lots", counter: counter)
        // 2. Movements per citizen in seal order.
        let movementRows = try cursor(
            """
            DECLARE audit_lot_movements NO SCROLL CURSOR FOR
            SELECT m.citizen_id, m.award_transaction_id, m.transaction_id, m.kind, m.points, (extract(epoch FROM m.at) * 1000)::bigint, t.kind,
                   t.points, (SELECT coalesce(sum(x.points), 0) FROM ledger_entries x
                              WHERE x.province = m.province AND x.transaction_id = m.transaction_id AND x.account = 'expired')::bigint,
                   t.reverses_id
            FROM lot_movements m LEFT JOIN ledger_transactions t ON t.province = m.province AND t.transaction_id = m.transaction_id
            WHERE m.province = \(province)
              AND (\(!incremental) OR m.citizen_id IN (
                    SELECT n.citizen_id FROM ledger_transactions n WHERE n.province = \(province) AND n.transaction_id > \(sinceID)
                    UNION SELECT d.citizen_id FROM point_lots d
                    WHERE d.province = \(province) AND NOT d.expired AND d.remaining_points > 0 AND (extract(epoch FROM d.expires_at) * 1000)::bigint < \(dueBeforeMs)))
            ORDER BY m.citizen_id, m.seal_id
            """, name: "audit_lot_movements", counter: counter)
        // Citizens with an open hold: their due lots wait for it.
        let waiting = Set(
            try connection.query(
                """
                SELECT DISTINCT r.citizen_id FROM redemptions r WHERE r.province = \(province)
                  AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                                  AND o.redemption_id = r.redemption_id)
                """
            ).rows.map { try $0.decode(0, as: UUID.self) })

        while true {
            let nextLot = try lotRows.peek().map { try $0.decode(1, as: UUID.self) }
            let nextMovement = try movementRows.peek().map { try $0.decode(0, as: UUID.self) }
            guard let candidate = nextLot ?? nextMovement else { break }
            // The cursors stream citizens in PostgreSQL's uuid order.
            var citizen = candidate
            if let lot = nextLot, let movement = nextMovement, movement.precedes(lot) { citizen = movement }
            var lots: [Int64: ReplayLot] = [:]
            while let row = try lotRows.peek(), try row.decode(1, as: UUID.self) == citizen {
                _ = try lotRows.next()
                try replayLot(row, validity: validity, into: &lots)
            }
            var group: [PostgresRow] = []
            while let row = try movementRows.peek(), try row.decode(0, as: UUID.self) == citizen {
                _ = try movementRows.next()
                // One transaction's movements are consecutive (each transaction draws its seal ids together).
                if let first = group.first, try first.decode(2, as: Int64.self) != row.decode(2, as: Int64.self) {
                    try replayMovements(group, citizen: citizen, lots: &lots)
                    group = []
                }
                group.append(row)
            }
            if !group.isEmpty { try replayMovements(group, citizen: citizen, lots: &lots) }

            // 3. Every due lot expired (unless its citizen has an open hold); caches equal the replay.
            for lot in lots.values.sorted(by: { $0.awardTransactionID < $1.awardTransactionID }) {
                if !lot.expired && lot.remaining > 0 && lot.expiresAtMs < dueBeforeMs && !waiting.contains(lot.citizen) {
                    finding(
                        "lot due at \(Timestamp.textUTC(milliseconds: lot.expiresAtMs)) still holds \(lot.remaining) points",
                        magnitude: lot.remaining,
                        lot: lot.awardTransactionID, citizen: lot.citizen)
                }
                if lot.cachedRemaining != lot.remaining || (lot.cachedExpired != lot.expired && (lot.expired || lot.remaining > 0)) {
                    finding(
                        "cached remaining_points \(lot.cachedRemaining) (expired \(lot.cachedExpired)), replay \(lot.remaining) (expired \(lot.expired))",
                        magnitude: abs(lot.cachedRemaining - lot.remaining), lot: lot.awardTransactionID, citizen: lot.citizen)
                }
            }
        }
        try lotRows.close()
        try movementRows.close()
        audit.rowsChecked += counter.rows

        // Every award of a version with a validity is a lot.
        let versions = validity.keys.sorted()
        for row in try connection.query(
            """
            SELECT t.transaction_id, t.citizen_id, t.points FROM ledger_transactions t
            WHERE t.province = \(province) AND t.kind = 'award' AND t.points > 0 AND t.rule_set_version = ANY(\(PostgresArray(versions))::integer[])
              AND t.transaction_id > \(sinceID)
              AND NOT EXISTS (SELECT 1 FROM point_lots l WHERE l.province = t.province AND l.award_transaction_id = t.transaction_id)
            ORDER BY 1 LIMIT 1000
            """
        ).rows {
            finding(
                "award of a version with points_validity made no lot", magnitude: try row.decode(2), lot: try row.decode(0),
                citizen: try row.decode(1))
        }
        // Expiry transactions each expire one lot.
        for row in try connection.query(
            """
            SELECT t.transaction_id, t.citizen_id, t.points FROM ledger_transactions t
            WHERE t.province = \(province) AND t.kind = 'expiry' AND t.transaction_id > \(sinceID)
              AND NOT EXISTS (SELECT 1 FROM lot_movements m WHERE m.province = t.province AND m.transaction_id = t.transaction_id AND m.kind = 'expiry')
            ORDER BY 1 LIMIT 1000
            """
        ).rows {
            finding(
                "expiry transaction expires no lot", magnitude: abs(try row.decode(2, as: Int64.self)), lot: nil, citizen: try row.decode(1),
                transaction: try row.decode(0))
        }
    }

    /// One lot row: checked against its award and the version in force, added to `lots`.
    private mutating func replayLot(_ row: PostgresRow, validity: [Int: (PointsValidity, TimeZone)], into lots: inout [Int64: ReplayLot]) throws {
        let lot = ReplayLot(
            awardTransactionID: try row.decode(0), citizen: try row.decode(1), points: try row.decode(2), expiresAtMs: try row.decode(3),
            cachedRemaining: try row.decode(4), cachedExpired: try row.decode(5), remaining: try row.decode(2))
        lots[lot.awardTransactionID] = lot
        audit.checked(.lots)
        guard try row.decode(6, as: String?.self) == "award", try row.decode(7, as: UUID?.self) == lot.citizen,
            try row.decode(8, as: Int64?.self) == lot.points
        else {
            finding(
                "lot is not an award of its citizen with its points", magnitude: lot.points, lot: lot.awardTransactionID, citizen: lot.citizen)
            return
        }
        let version = try row.decode(9, as: Int.self)
        guard let entry = validity[version], let occurredMs = try row.decode(10, as: Int64?.self) else {
            finding(
                "lot of an award whose version \(version) sets no points_validity", magnitude: lot.points, lot: lot.awardTransactionID,
                citizen: lot.citizen)
            return
        }
        let (rule, zone) = entry
        let expected = rule.expiresAtMs(occurredMs: occurredMs, timeZone: zone)
        if expected != lot.expiresAtMs {
            finding(
                "lot expires at \(Timestamp.textUTC(milliseconds: lot.expiresAtMs)), version \(version) \(rule.description) fixes \(Timestamp.textUTC(milliseconds: expected))",
                magnitude: lot.points, lot: lot.awardTransactionID, citizen: lot.citizen)
        }
    }

    /// One transaction's movements of one citizen's lots, replayed onto `lots`.
    private mutating func replayMovements(_ group: [PostgresRow], citizen: UUID, lots: inout [Int64: ReplayLot]) throws {
        let transaction: Int64 = try group[0].decode(2)
        let kind: String = try group[0].decode(3)
        let transactionKind = try group[0].decode(6, as: String?.self)
        let allowed: Set<String> = kind == "draw" ? ["capture", "reversal"] : kind == "return" ? ["refund"] : ["expiry"]
        guard let transactionKind, allowed.contains(transactionKind) else {
            finding(
                "\(kind) movement by a \(transactionKind ?? "missing") transaction", magnitude: try group[0].decode(4),
                lot: try group[0].decode(1),
                citizen: citizen, transaction: transaction)
            return
        }
        var lapsedByRefund: [Int64: (lapsed: Int64, expiredEntry: Int64, citizen: UUID)] = [:]
        var drawnLots: Set<Int64> = []
        for row in group {
            let lotID: Int64 = try row.decode(1)
            let points: Int64 = try row.decode(4)
            let atMs: Int64 = try row.decode(5)
            guard var lot = lots[lotID], lot.citizen == citizen, try row.decode(3, as: String.self) == kind else {
                finding("movement of a lot that is not the citizen's", magnitude: points, lot: lotID, citizen: citizen, transaction: transaction)
                continue
            }
            switch kind {
            case "draw":
                if lot.expired {
                    finding("drawn after its expiry", magnitude: points, lot: lotID, citizen: citizen, transaction: transaction)
                }
                lot.remaining -= points
                drawnLots.insert(lotID)
            case "return":
                if atMs >= lot.expiresAtMs {
                    // Returned at or after the lot's expiry: the refund expires those points at once.
                    let expiredEntry: Int64 = try row.decode(8)
                    lapsedByRefund[transaction, default: (0, expiredEntry, citizen)].lapsed += points
                } else {
                    lot.remaining += points
                    if lot.remaining > lot.points {
                        finding(
                            "returns bring the lot to \(lot.remaining) of its \(lot.points) points", magnitude: lot.remaining - lot.points,
                            lot: lotID, citizen: citizen, transaction: transaction)
                    }
                }
            default:
                if lot.expired {
                    finding("lot expired a second time", magnitude: points, lot: lotID, citizen: citizen, transaction: transaction)
                } else if atMs != lot.expiresAtMs {
                    finding(
                        "lot expired at \(Timestamp.textUTC(milliseconds: atMs)), not at its expires_at \(Timestamp.textUTC(milliseconds: lot.expiresAtMs))",
                        magnitude: points, lot: lotID, citizen: citizen, transaction: transaction)
                }
                if points != lot.remaining {
                    finding(
                        "expiry of \(points) points where the lot held \(lot.remaining)", magnitude: abs(points - lot.remaining), lot: lotID,
                        citizen: citizen, transaction: transaction)
                }
                if try row.decode(7, as: Int64?.self) != -points || row.decode(8, as: Int64.self) != points {
                    finding(
                        "expiry transaction does not move the lot's \(points) points to expired", magnitude: points, lot: lotID, citizen: citizen,
                        transaction: transaction)
                }
                lot.remaining = 0
                lot.expired = true
            }
            if lot.remaining < 0 {
                finding("lot goes negative (\(lot.remaining))", magnitude: -lot.remaining, lot: lotID, citizen: citizen, transaction: transaction)
            }
            lots[lotID] = lot
        }
        // Oldest expiry first: a draw leaves no earlier-expiring live lot with points while
        // it takes from a later one (a reversal may take its own award's lot first).
        let own = try group[0].decode(9, as: Int64?.self)
        if kind == "draw", let latest = drawnLots.filter({ $0 != own }).map({ (lots[$0]!.expiresAtMs, $0) }).max(by: { $0 < $1 }) {
            let skipped = lots.values.filter {
                $0.citizen == citizen && $0.awardTransactionID < transaction && !$0.expired && $0.remaining > 0
                    && !drawnLots.contains($0.awardTransactionID) && $0.awardTransactionID != own
                    && ($0.expiresAtMs, $0.awardTransactionID) < latest
            }
            let drawnBehind = drawnLots.filter { id in
                id != own && lots[id]!.remaining > 0
                    && drawnLots.contains { other in other != own && (lots[other]!.expiresAtMs, other) > (lots[id]!.expiresAtMs, id) }
            }
            if let first = skipped.min(by: { ($0.expiresAtMs, $0.awardTransactionID) < ($1.expiresAtMs, $1.awardTransactionID) }) {
                finding(
                    "draw took a later-expiring lot while lot \(first.awardTransactionID) (expiring earlier) kept \(first.remaining) points",
                    magnitude: first.remaining, lot: first.awardTransactionID, citizen: citizen, transaction: transaction)
            } else if let first = drawnBehind.min() {
                finding(
                    "draw left points in lot \(first) while taking from a later-expiring one", magnitude: lots[first]!.remaining, lot: first,
                    citizen: citizen, transaction: transaction)
            }
        }
        for (transaction, lapsed) in lapsedByRefund.sorted(by: { $0.key < $1.key }) where lapsed.lapsed != lapsed.expiredEntry {
            finding(
                "refund returned \(lapsed.lapsed) points to expired lots but sent \(lapsed.expiredEntry) to expired",
                magnitude: abs(lapsed.lapsed - lapsed.expiredEntry),
                lot: nil, citizen: lapsed.citizen, transaction: transaction)
        }
    }
}
