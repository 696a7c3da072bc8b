package import Foundation
import TanhuiCore
import TanhuiPostgres

/// Points that expire by lot (migration 0010). Every write here runs inside a redemption,
/// reversal or expiry transaction that already holds the province's publication lock shared
/// and the citizen's account row `FOR UPDATE`, so a citizen's lots change one writer at a time.
package enum LotLedger {
    /// Most lots one expiry round takes per province (the rest wait for the next round).
    package static let maximumPerRound = 1000
    /// How many upcoming expiry instants a pull shows per province.
    package static let expiringShown = 3

    /// A lot as the service sees it.
    struct Lot {
        var awardTransactionID: Int64
        var expiresAt: Date
        var remaining: Int64
    }

    static func milliseconds(_ date: Date) -> Int64 { Timestamp.milliseconds(of: date) }

    /// The citizen's lots not yet expired with points left, in draw order.
    static func openLots(province: String, citizen: UUID, on connection: PostgresConnection) throws -> [Lot] {
        try connection.query(
            """
            SELECT l.award_transaction_id, l.expires_at, l.remaining_points FROM point_lots l
            WHERE l.province = \(province) AND l.citizen_id = \(citizen) AND NOT l.expired AND l.remaining_points > 0
            ORDER BY l.expires_at, l.award_transaction_id
            """
        ).rows.map {
            Lot(awardTransactionID: try $0.decode(0), expiresAt: try $0.decode(1), remaining: try $0.decode(2))
        }
    }

    /// Records a spend of `points` by `transactionID` (a capture or a reversal): lots oldest
    /// expiry first (`preferring` first: a reversal takes back its own award's lot). Returns
    /// the points drawn from lots; the rest were points that never expire.
    @discardableResult
    static func draw(
        _ points: Int64, province: String, citizen: UUID, transactionID: Int64, preferring: Int64? = nil, at: Date,
        on connection: PostgresConnection
    ) throws -> Int64 {
        let lots = try openLots(province: province, citizen: citizen, on: connection)
        guard !lots.isEmpty, points > 0 else { return 0 }
        var left = points
        var taken: [(awardTransactionID: Int64, points: Int64)] = []
        if let preferring, let own = lots.first(where: { $0.awardTransactionID == preferring }) {
            let take = min(left, own.remaining)
            taken.append((preferring, take))
            left -= take
        }
        let rest = lots.filter { $0.awardTransactionID != preferring }.map {
            LotDraw.Lot(awardTransactionID: $0.awardTransactionID, expiresAtMs: milliseconds($0.expiresAt), remaining: $0.remaining)
        }
        taken += LotDraw.draw(left, from: rest)
        try record(taken, kind: "draw", province: province, citizen: citizen, transactionID: transactionID, at: at, on: connection)
        return taken.reduce(0) { $0 + $1.points }
    }

    /// What a refund of `points` returns to the capture's lots: `(lot, points, expired)` where
    /// `expired` says the lot's expiry is at or before `at`, so those points expire at once.
    struct Return {
        var awardTransactionID: Int64
        var points: Int64
        var expired: Bool
    }

    static func planRefund(
        _ points: Int64, refundable: Int64, province: String, partner: UUID, redemption: UUID, at: Date, on connection: PostgresConnection
    ) throws -> [Return] {
        // What the capture drew from each lot, net of the returns of this redemption's refunds.
        let rows = try connection.query(
            """
            WITH moves AS (
                SELECT o.transaction_id FROM redemption_outcomes o
                WHERE o.province = \(province) AND o.partner_id = \(partner) AND o.redemption_id = \(redemption) AND o.outcome = 'captured'
                UNION ALL
                SELECT f.transaction_id FROM redemption_refunds f
                WHERE f.province = \(province) AND f.partner_id = \(partner) AND f.redemption_id = \(redemption))
            SELECT m.award_transaction_id, sum(CASE m.kind WHEN 'draw' THEN m.points ELSE -m.points END)::bigint, l.expires_at
            FROM lot_movements m JOIN point_lots l ON l.province = m.province AND l.award_transaction_id = m.award_transaction_id
            WHERE m.province = \(province) AND m.transaction_id IN (SELECT transaction_id FROM moves) AND m.kind IN ('draw', 'return')
            GROUP BY m.award_transaction_id, l.expires_at
            ORDER BY l.expires_at, m.award_transaction_id
            """
        ).rows
        var expiry: [Int64: Date] = [:]
        var drawn: [(awardTransactionID: Int64, points: Int64)] = []
        for row in rows {
            let lot: Int64 = try row.decode(0)
            expiry[lot] = try row.decode(2)
            let net: Int64 = try row.decode(1)
            drawn.append((lot, net))
        }
        return LotDraw.refund(points, refundable: refundable, into: drawn).map {
            Return(awardTransactionID: $0.awardTransactionID, points: $0.points, expired: expiry[$0.awardTransactionID]! <= at)
        }
    }

    /// Writes a refund's returns (after its ledger transaction): points returned to a live lot
    /// go back into it; those of an expired lot were sent to `expired` by the refund itself.
    static func recordRefund(
        _ returns: [Return], province: String, citizen: UUID, transactionID: Int64, at: Date, on connection: PostgresConnection
    )
        throws
    {
        guard !returns.isEmpty else { return }
        try connection.query(
            """
            INSERT INTO lot_movements (province, transaction_id, award_transaction_id, citizen_id, kind, points, at, seal_id)
            SELECT \(province), \(transactionID), lot, \(citizen), 'return', p, \(at), nextval('ledger_transaction_ids')
            FROM unnest(\(PostgresArray(returns.map(\.awardTransactionID)))::bigint[], \(PostgresArray(returns.map(\.points)))::bigint[]) AS r(lot, p)
            ORDER BY lot
            RETURNING 1
            """)
        let live = returns.filter { !$0.expired }
        guard !live.isEmpty else { return }
        try connection.query(
            """
            UPDATE point_lots l SET remaining_points = l.remaining_points + r.p
            FROM unnest(\(PostgresArray(live.map(\.awardTransactionID)))::bigint[], \(PostgresArray(live.map(\.points)))::bigint[]) AS r(lot, p)
            WHERE l.province = \(province) AND l.award_transaction_id = r.lot
            """)
    }

    /// Appends draw movements and takes the points out of the lots' caches.
    private static func record(
        _ taken: [(awardTransactionID: Int64, points: Int64)], kind: String, province: String, citizen: UUID, transactionID: Int64, at: Date,
        on connection: PostgresConnection
    ) throws {
        let taken = taken.filter { $0.points > 0 }
        guard !taken.isEmpty else { return }
        _ = try connection.pipeline([
            """
            INSERT INTO lot_movements (province, transaction_id, award_transaction_id, citizen_id, kind, points, at, seal_id)
            SELECT \(province), \(transactionID), lot, \(citizen), \(kind), p, \(at), nextval('ledger_transaction_ids')
            FROM unnest(\(PostgresArray(taken.map { $0.awardTransactionID }))::bigint[], \(PostgresArray(taken.map { $0.points }))::bigint[]) AS r(lot, p)
            ORDER BY lot
            RETURNING 1
            """,
            """
            UPDATE point_lots l SET remaining_points = l.remaining_points - r.p
            FROM unnest(\(PostgresArray(taken.map { $0.awardTransactionID }))::bigint[], \(PostgresArray(taken.map { $0.points }))::bigint[]) AS r(lot, p)
            WHERE l.province = \(province) AND l.award_transaction_id = r.lot
            """,
        ])
    }

    /// True while the citizen has a hold without an outcome: their lots wait (a capture may
    /// still draw them).
    static func hasOpenHold(province: String, citizen: UUID, on connection: PostgresConnection) throws -> Bool {
        try connection.query(
            """
            SELECT EXISTS (SELECT 1 FROM redemptions r WHERE r.province = \(province) AND r.citizen_id = \(citizen)
                AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                                AND o.redemption_id = r.redemption_id))
            """
        ).scalar(Bool.self)
    }

    /// Expires the citizen's lots due at `asOf` (the account row locked by the caller): one
    /// `expiry` transaction per lot with points left (citizen → expired, dated by its
    /// movement at the lot's expires_at), and every due lot marked expired. Nothing while a
    /// hold of the citizen is open. Returns the number of expiry transactions written.
    static func expireDue(
        province: String, citizen: UUID, asOf: Date, account: RedemptionService.LockedAccount, now: Date, on connection: PostgresConnection
    ) throws -> Int {
        guard account.lastSeq >= 0, try !hasOpenHold(province: province, citizen: citizen, on: connection) else { return 0 }
        let due = try connection.query(
            """
            SELECT l.award_transaction_id, l.expires_at, l.remaining_points FROM point_lots l
            WHERE l.province = \(province) AND l.citizen_id = \(citizen) AND NOT l.expired AND l.expires_at <= \(asOf)
            ORDER BY l.expires_at, l.award_transaction_id
            """
        ).rows.map {
            Lot(awardTransactionID: try $0.decode(0), expiresAt: try $0.decode(1), remaining: try $0.decode(2))
        }
        guard !due.isEmpty else { return 0 }
        var account = account
        var written = 0
        for lot in due where lot.remaining > 0 {
            // Its own id, not the award's event id: reports join transactions to events by event_id.
            let transactionID = try RedemptionService.post(
                kind: "expiry", province: province, citizen: citizen, recordID: UUID(), account: account,
                entries: [(RedemptionService.citizenAccount(citizen), -lot.remaining), ("expired", lot.remaining)], availableDelta: -lot.remaining,
                heldDelta: 0, actor: "lot expiry", now: now, on: connection)
            account.lastSeq += 1
            account.available -= lot.remaining
            try connection.query(
                """
                INSERT INTO lot_movements (province, transaction_id, award_transaction_id, citizen_id, kind, points, at, seal_id)
                VALUES (\(province), \(transactionID), \(lot.awardTransactionID), \(citizen), 'expiry', \(lot.remaining), \(lot.expiresAt),
                        nextval('ledger_transaction_ids'))
                """)
            written += 1
        }
        try connection.query(
            """
            UPDATE point_lots SET remaining_points = 0, expired = true
            WHERE province = \(province) AND award_transaction_id = ANY(\(PostgresArray(due.map(\.awardTransactionID)))::bigint[])
            """)
        return written
    }

    /// A citizen's next `count` expiry instants with the points that expire then, per province.
    package struct Expiring: Sendable, Equatable {
        package var expiresAt: Date
        package var points: Int64
    }

    static func expiringQuery(citizen: UUID, provinces: [String], after: Date) -> PostgresQuery {
        """
        SELECT province, expires_at, sum(remaining_points)::bigint FROM point_lots
        WHERE province = ANY(\(PostgresArray(provinces))::text[]) AND citizen_id = \(citizen) AND NOT expired AND remaining_points > 0
          AND expires_at > \(after)
        GROUP BY province, expires_at ORDER BY province, expires_at
        /* citus: multi-shard (a device token names no province: the citizen's provinces) */
        """
    }
}

extension RedemptionService {
    /// Expires every lot due at `asOf` in every province (or one), at most `limit` lots per
    /// province per call, each citizen in its own transaction; returns the number of expiry
    /// transactions written. Lots of a citizen with an open hold wait for the hold to resolve.
    @discardableResult
    package func expireLots(
        asOf: Date = Date(), province only: String? = nil, limit: Int = LotLedger.maximumPerRound
    ) async throws -> (
        expired: Int, waiting: Int
    ) {
        let asOf = Self.wholeMilliseconds(asOf)
        let due = try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT DISTINCT province, citizen_id FROM (
                    SELECT province, citizen_id FROM point_lots
                    WHERE NOT expired AND expires_at <= \(asOf) AND (\(only)::text IS NULL OR province = \(only))
                      -- Lots under an open hold wait; skipping them here keeps them from starving the rest.
                      AND NOT EXISTS (SELECT 1 FROM redemptions r WHERE r.province = point_lots.province AND r.citizen_id = point_lots.citizen_id
                          AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                                          AND o.redemption_id = r.redemption_id))
                    ORDER BY expires_at LIMIT \(limit)) d
                ORDER BY 1, 2
                /* citus: multi-shard (every province's due lots) */
                """
            ).rows.map { (try $0.decode(0, as: String.self), try $0.decode(1, as: UUID.self)) }
        }
        var expired = 0
        var waiting = 0
        for (province, citizen) in due {
            let written = try await pool.withTransaction { connection -> Int? in
                try Self.lockPublicationShared(province, on: connection)
                let account = try Self.lockAccount(province: province, citizen: citizen, on: connection)
                if try LotLedger.hasOpenHold(province: province, citizen: citizen, on: connection) { return nil }
                return try LotLedger.expireDue(
                    province: province, citizen: citizen, asOf: asOf, account: account, now: Self.wholeMilliseconds(Date()), on: connection)
            }
            if let written { expired += written } else { waiting += 1 }
        }
        return (expired, waiting)
    }
}
