import Foundation
import TanhuiCore
import TanhuiPostgres

/// Lot replay (migration 0010), inside the audit's snapshot: every lot rebuilt from its award,
/// draws, refunds and expiries, per citizen in seal order.
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

    mutating func lotChecks() throws {
        let nowMs = try connection.query("SELECT (extract(epoch FROM now()) * 1000)::bigint").scalar(Int64.self)
        var validity: [Int: (PointsValidity, TimeZone)] = [:]
        for row in try connection.query("SELECT version, document FROM rule_sets WHERE province = \(province) ORDER BY version").rows {
            // A document that no longer parses is the replay check's finding; its lots cannot be rebuilt.
            if let ruleSet = try? RuleSetParser.parse(try row.decode(1, as: String.self)), let rule = ruleSet.pointsValidity {
                validity[try row.decode(0, as: Int.self)] = (rule, ruleSet.timeZone)
            }
        }
        func finding(_ detail: String, magnitude: Int64, lot: Int64?, citizen: UUID?, transaction: Int64? = nil) {
            var fields: [(String, AuditValue)] = [("province", .string(province))]
            if let citizen { fields.append(("citizen_id", .string(citizen.uuidString.lowercased()))) }
            if let lot { fields.append(("lot", .int(lot))) }
            if let transaction { fields.append(("transaction_id", .int(transaction))) }
            audit.record(.lots, AuditFinding(detail, magnitude: max(1, magnitude), fields))
        }

        // 1. Each lot is what its award and that award's version make it.
        var lots: [Int64: ReplayLot] = [:]
        for row in try connection.query(
            """
            SELECT l.award_transaction_id, l.citizen_id, l.points, (extract(epoch FROM l.expires_at) * 1000)::bigint, l.remaining_points, l.expired,
                   t.kind, t.citizen_id, t.points, t.rule_set_version,
                   CASE WHEN isfinite(e.occurred_at) THEN (extract(epoch FROM e.occurred_at) * 1000)::bigint END
            FROM point_lots l
            LEFT JOIN ledger_transactions t ON t.province = l.province AND t.transaction_id = l.award_transaction_id
            LEFT JOIN events e ON e.province = t.province AND e.event_id = t.event_id
            WHERE l.province = \(province) ORDER BY l.award_transaction_id
            """
        ).rows {
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
                continue
            }
            let version = try row.decode(9, as: Int.self)
            guard let entry = validity[version], let occurredMs = try row.decode(10, as: Int64?.self) else {
                finding(
                    "lot of an award whose version \(version) sets no points_validity", magnitude: lot.points, lot: lot.awardTransactionID,
                    citizen: lot.citizen)
                continue
            }
            let (rule, zone) = entry
            let expected = rule.expiresAtMs(occurredMs: occurredMs, timeZone: zone)
            if expected != lot.expiresAtMs {
                finding(
                    "lot expires at \(Timestamp.textUTC(milliseconds: lot.expiresAtMs)), version \(version) \(rule.description) fixes \(Timestamp.textUTC(milliseconds: expected))",
                    magnitude: lot.points, lot: lot.awardTransactionID, citizen: lot.citizen)
            }
        }
        // Every award of a version with a validity is a lot.
        let versions = validity.keys.sorted()
        for row in try connection.query(
            """
            SELECT t.transaction_id, t.citizen_id, t.points FROM ledger_transactions t
            WHERE t.province = \(province) AND t.kind = 'award' AND t.points > 0 AND t.rule_set_version = ANY(\(PostgresArray(versions))::integer[])
              AND NOT EXISTS (SELECT 1 FROM point_lots l WHERE l.province = t.province AND l.award_transaction_id = t.transaction_id)
            ORDER BY 1 LIMIT 1000
            """
        ).rows {
            finding(
                "award of a version with points_validity made no lot", magnitude: try row.decode(2), lot: try row.decode(0),
                citizen: try row.decode(1))
        }

        // 2. Movements per citizen in seal order: draws oldest expiry first from live lots,
        // returns to lots the refund's capture drew, one expiry per lot at its instant.
        let rows = try connection.query(
            """
            SELECT m.citizen_id, m.award_transaction_id, m.transaction_id, m.kind, m.points, (extract(epoch FROM m.at) * 1000)::bigint, t.kind,
                   t.points, (SELECT coalesce(sum(x.points), 0) FROM ledger_entries x
                              WHERE x.province = m.province AND x.transaction_id = m.transaction_id AND x.account = 'expired')::bigint,
                   t.reverses_id
            FROM lot_movements m LEFT JOIN ledger_transactions t ON t.province = m.province AND t.transaction_id = m.transaction_id
            WHERE m.province = \(province)
            ORDER BY m.citizen_id, m.seal_id
            """
        ).rows
        var lapsedByRefund: [Int64: (lapsed: Int64, expiredEntry: Int64, citizen: UUID)] = [:]
        var index = 0
        while index < rows.count {
            // One transaction's movements (consecutive: each transaction draws its seal ids together).
            let transaction: Int64 = try rows[index].decode(2)
            var group: [PostgresRow] = []
            while index < rows.count, try rows[index].decode(2, as: Int64.self) == transaction {
                group.append(rows[index])
                index += 1
            }
            let citizen: UUID = try group[0].decode(0)
            let kind: String = try group[0].decode(3)
            let transactionKind = try group[0].decode(6, as: String?.self)
            let allowed: Set<String> = kind == "draw" ? ["capture", "reversal"] : kind == "return" ? ["refund"] : ["expiry"]
            guard let transactionKind, allowed.contains(transactionKind) else {
                finding(
                    "\(kind) movement by a \(transactionKind ?? "missing") transaction", magnitude: try group[0].decode(4),
                    lot: try group[0].decode(1),
                    citizen: citizen, transaction: transaction)
                continue
            }
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
        }
        for (transaction, lapsed) in lapsedByRefund.sorted(by: { $0.key < $1.key }) where lapsed.lapsed != lapsed.expiredEntry {
            finding(
                "refund returned \(lapsed.lapsed) points to expired lots but sent \(lapsed.expiredEntry) to expired",
                magnitude: abs(lapsed.lapsed - lapsed.expiredEntry),
                lot: nil, citizen: lapsed.citizen, transaction: transaction)
        }

        // 3. Every due lot expired (unless its citizen has an open hold); caches equal the replay.
        let waiting = Set(
            try connection.query(
                """
                SELECT DISTINCT r.citizen_id FROM redemptions r WHERE r.province = \(province)
                  AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                                  AND o.redemption_id = r.redemption_id)
                """
            ).rows.map { try $0.decode(0, as: UUID.self) })
        for lot in lots.values.sorted(by: { $0.awardTransactionID < $1.awardTransactionID }) {
            if !lot.expired && lot.remaining > 0 && lot.expiresAtMs + Self.lotExpiryBoundSeconds * 1000 < nowMs && !waiting.contains(lot.citizen) {
                finding(
                    "lot due at \(Timestamp.textUTC(milliseconds: lot.expiresAtMs)) still holds \(lot.remaining) points", magnitude: lot.remaining,
                    lot: lot.awardTransactionID, citizen: lot.citizen)
            }
            if lot.cachedRemaining != lot.remaining || (lot.cachedExpired != lot.expired && (lot.expired || lot.remaining > 0)) {
                finding(
                    "cached remaining_points \(lot.cachedRemaining) (expired \(lot.cachedExpired)), replay \(lot.remaining) (expired \(lot.expired))",
                    magnitude: abs(lot.cachedRemaining - lot.remaining), lot: lot.awardTransactionID, citizen: lot.citizen)
            }
        }
        // Expiry transactions each expire one lot.
        for row in try connection.query(
            """
            SELECT t.transaction_id, t.citizen_id, t.points FROM ledger_transactions t
            WHERE t.province = \(province) AND t.kind = 'expiry'
              AND NOT EXISTS (SELECT 1 FROM lot_movements m WHERE m.province = t.province AND m.transaction_id = t.transaction_id AND m.kind = 'expiry')
            ORDER BY 1 LIMIT 1000
            """
        ).rows {
            finding(
                "expiry transaction expires no lot", magnitude: abs(try row.decode(2, as: Int64.self)), lot: nil, citizen: try row.decode(1),
                transaction: try row.decode(0))
        }
    }
}
