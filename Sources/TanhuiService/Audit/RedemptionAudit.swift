import TanhuiPostgres

/// The redemption checks of one province (migration 0006), inside the audit's snapshot.
/// Each query returns offenders only: `detail`, `magnitude`, then the ids that open the case.
extension ProvinceAudit {
    /// How long past its TTL a hold may stay unresolved before it is a finding (the expirer
    /// runs every second in `serve`; this allows for a server that was down briefly).
    static let holdResolutionBoundSeconds = 300

    mutating func redemptionChecks() throws {
        audit.checked(
            .redemptions, try connection.query("SELECT count(*) FROM redemptions WHERE province = \(province)").scalar(Int64.self))
        let findings = try connection.query(
            """
            WITH held_entries AS (
                SELECT substr(account, 6)::uuid AS citizen, sum(points)::bigint AS held FROM ledger_entries
                WHERE province = \(province) AND account LIKE 'held:%' GROUP BY 1),
            open_holds AS (
                SELECT r.citizen_id AS citizen, sum(r.points)::bigint AS open FROM redemptions r
                WHERE r.province = \(province)
                  AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                                  AND o.redemption_id = r.redemption_id)
                GROUP BY 1),
            partner_entries AS (
                SELECT substr(account, 9)::uuid AS partner, sum(points)::bigint AS total FROM ledger_entries
                WHERE province = \(province) AND account LIKE 'partner:%' GROUP BY 1)
            -- Holds resolved within TTL + bound; expiry voids dated at the TTL; no capture after it.
            SELECT 'hold unresolved ' || (extract(epoch FROM now() - r.expires_at))::bigint || ' s past its TTL', 1::bigint,
                   r.partner_id::text, r.redemption_id::text, r.hold_transaction_id
            FROM redemptions r
            WHERE r.province = \(province) AND r.expires_at + make_interval(secs => \(Self.holdResolutionBoundSeconds)) < now()
              AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id AND o.redemption_id = r.redemption_id)
            UNION ALL
            SELECT 'outcome ' || o.outcome || ' at ' || o.created_at || ' but the hold expired at ' || r.expires_at, r.points,
                   r.partner_id::text, r.redemption_id::text, o.transaction_id
            FROM redemption_outcomes o JOIN redemptions r ON r.province = o.province AND r.partner_id = o.partner_id AND r.redemption_id = o.redemption_id
            WHERE o.province = \(province)
              AND ((o.outcome = 'captured' AND o.created_at >= r.expires_at) OR (o.outcome = 'expired' AND o.created_at <> r.expires_at)
                   OR o.created_at < r.created_at OR o.created_at > r.expires_at + make_interval(secs => \(Self.holdResolutionBoundSeconds)))
            UNION ALL
            -- Each redemption's ledger moves: its hold, and at most one capture or void, matching its outcome.
            SELECT 'hold transaction does not hold the redemption''s points for its citizen', r.points, r.partner_id::text, r.redemption_id::text,
                   r.hold_transaction_id
            FROM redemptions r LEFT JOIN ledger_transactions t ON t.province = r.province AND t.transaction_id = r.hold_transaction_id
            WHERE r.province = \(province)
              AND (t.transaction_id IS NULL OR t.kind <> 'hold' OR t.event_id <> r.redemption_id OR t.citizen_id <> r.citizen_id OR t.points <> -r.points)
            UNION ALL
            SELECT 'outcome ' || o.outcome || ' is not recorded by a matching ' || CASE o.outcome WHEN 'captured' THEN 'capture' ELSE 'void' END || ' transaction',
                   r.points, r.partner_id::text, r.redemption_id::text, o.transaction_id
            FROM redemption_outcomes o
            JOIN redemptions r ON r.province = o.province AND r.partner_id = o.partner_id AND r.redemption_id = o.redemption_id
            LEFT JOIN ledger_transactions t ON t.province = o.province AND t.transaction_id = o.transaction_id
            WHERE o.province = \(province)
              AND (t.transaction_id IS NULL OR t.kind <> CASE o.outcome WHEN 'captured' THEN 'capture' ELSE 'void' END OR t.event_id <> r.redemption_id
                   OR t.citizen_id <> r.citizen_id OR t.points <> CASE o.outcome WHEN 'captured' THEN 0 ELSE r.points END)
            UNION ALL
            SELECT count(*) || ' capture/void transactions for one redemption (capture and void are exclusive)', max(t.points),
                   NULL, t.event_id::text, max(t.transaction_id)
            FROM ledger_transactions t WHERE t.province = \(province) AND t.kind IN ('capture', 'void')
            GROUP BY t.event_id HAVING count(*) > 1
            UNION ALL
            SELECT t.kind || ' transaction names no redemption record', abs(t.points), NULL, t.event_id::text, t.transaction_id
            FROM ledger_transactions t
            WHERE t.province = \(province) AND t.kind IN ('hold', 'capture', 'void', 'refund')
              AND NOT EXISTS (SELECT 1 FROM redemptions r WHERE r.province = t.province AND r.hold_transaction_id = t.transaction_id)
              AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = t.province AND o.transaction_id = t.transaction_id)
              AND NOT EXISTS (SELECT 1 FROM redemption_refunds f WHERE f.province = t.province AND f.transaction_id = t.transaction_id)
            UNION ALL
            -- Refunds: of captured redemptions only, never more than was captured, each its own refund transaction.
            SELECT 'refunds total ' || sum(f.points) || ' of ' || r.points || ' points ' || coalesce(max(o.outcome), 'held'),
                   sum(f.points) - CASE WHEN max(o.outcome) = 'captured' THEN r.points ELSE 0 END, r.partner_id::text, r.redemption_id::text, max(f.transaction_id)
            FROM redemption_refunds f
            JOIN redemptions r ON r.province = f.province AND r.partner_id = f.partner_id AND r.redemption_id = f.redemption_id
            LEFT JOIN redemption_outcomes o ON o.province = r.province AND o.partner_id = r.partner_id AND o.redemption_id = r.redemption_id
            WHERE f.province = \(province)
            GROUP BY r.partner_id, r.redemption_id, r.points
            HAVING max(o.outcome) IS DISTINCT FROM 'captured' OR sum(f.points) > r.points
            UNION ALL
            SELECT 'refund is not recorded by a matching refund transaction', f.points, f.partner_id::text, f.redemption_id::text, f.transaction_id
            FROM redemption_refunds f
            JOIN redemptions r ON r.province = f.province AND r.partner_id = f.partner_id AND r.redemption_id = f.redemption_id
            LEFT JOIN ledger_transactions t ON t.province = f.province AND t.transaction_id = f.transaction_id
            WHERE f.province = \(province)
              AND (t.transaction_id IS NULL OR t.kind <> 'refund' OR t.event_id <> f.refund_id OR t.citizen_id <> r.citizen_id
                   -- The points returned to lots already expired go to `expired`, not to the citizen (migration 0010).
                   OR t.points <> f.points - (SELECT coalesce(sum(x.points), 0) FROM ledger_entries x
                                              WHERE x.province = t.province AND x.transaction_id = t.transaction_id AND x.account = 'expired'))
            UNION ALL
            -- Accounts: each citizen's held sub-account equals their open holds and the cached held_points.
            SELECT 'held account ' || coalesce(e.held, 0) || ', open holds ' || coalesce(h.open, 0) || ', cached held_points ' || coalesce(a.held_points, 0),
                   abs(coalesce(e.held, 0) - coalesce(h.open, 0)) + abs(coalesce(a.held_points, 0) - coalesce(h.open, 0)), NULL,
                   'citizen:' || coalesce(a.citizen_id, e.citizen, h.citizen)::text, NULL
            FROM (SELECT citizen_id, held_points FROM citizen_accounts WHERE province = \(province) AND held_points <> 0) a
            FULL JOIN held_entries e ON e.citizen = a.citizen_id
            FULL JOIN open_holds h ON h.citizen = coalesce(a.citizen_id, e.citizen)
            WHERE coalesce(e.held, 0) <> coalesce(h.open, 0) OR coalesce(a.held_points, 0) <> coalesce(h.open, 0)
            UNION ALL
            -- Each partner's redeemed account equals what it captured minus what it refunded.
            SELECT 'partner account ' || coalesce(e.total, 0) || ' ≠ captured ' || coalesce(c.captured, 0) || ' − refunded ' || coalesce(f.refunded, 0),
                   abs(coalesce(e.total, 0) - coalesce(c.captured, 0) + coalesce(f.refunded, 0)), p.partner_id::text, NULL, NULL
            FROM partners p
            LEFT JOIN partner_entries e ON e.partner = p.partner_id
            LEFT JOIN (SELECT r.partner_id, sum(r.points)::bigint AS captured FROM redemptions r
                       JOIN redemption_outcomes o ON o.province = r.province AND o.partner_id = r.partner_id AND o.redemption_id = r.redemption_id
                       WHERE r.province = \(province) AND o.outcome = 'captured' GROUP BY r.partner_id) c ON c.partner_id = p.partner_id
            LEFT JOIN (SELECT partner_id, sum(points)::bigint AS refunded FROM redemption_refunds
                       WHERE province = \(province) GROUP BY partner_id) f ON f.partner_id = p.partner_id
            WHERE p.province = \(province) AND coalesce(e.total, 0) <> coalesce(c.captured, 0) - coalesce(f.refunded, 0)
            ORDER BY 4, 1
            """
        ).rows
        for row in findings {
            var fields: [(String, AuditValue)] = [("province", .string(province))]
            if let partner = try row.decode(2, as: String?.self) { fields.append(("partner_id", .string(partner))) }
            if let id = try row.decode(3, as: String?.self) {
                fields.append(id.hasPrefix("citizen:") ? ("citizen_id", .string(String(id.dropFirst(8)))) : ("redemption_id", .string(id)))
            }
            if let transaction = try row.decode(4, as: Int64?.self) { fields.append(("transaction_id", .int(transaction))) }
            audit.record(.redemptions, AuditFinding(try row.decode(0), magnitude: max(1, try row.decode(1, as: Int64?.self) ?? 1), fields))
        }
        try offerLimitChecks()
    }

    /// No offer has more live (not voided) units than its total limit, nor a citizen more in
    /// one period (China Standard Time calendar) than the per-citizen limit.
    mutating func offerLimitChecks() throws {
        audit.checked(.offerLimits, try connection.query("SELECT count(*) FROM offers WHERE province = \(province)").scalar(Int64.self))
        let findings = try connection.query(
            """
            WITH live AS (
                SELECT r.offer_id, r.citizen_id, r.created_at FROM redemptions r
                WHERE r.province = \(province) AND r.offer_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                                  AND o.redemption_id = r.redemption_id AND o.outcome <> 'captured'))
            SELECT 'offer has ' || count(*) || ' live units, total limit ' || f.total_limit, count(*) - f.total_limit, f.offer_id::text, NULL
            FROM live l JOIN offers f ON f.province = \(province) AND f.offer_id = l.offer_id
            WHERE f.total_limit IS NOT NULL GROUP BY f.offer_id, f.total_limit HAVING count(*) > f.total_limit
            UNION ALL
            SELECT 'citizen has ' || count(*) || ' units in one ' || f.per_citizen_period || ', limit ' || f.per_citizen_count,
                   count(*) - f.per_citizen_count, f.offer_id::text, l.citizen_id::text
            FROM live l JOIN offers f ON f.province = \(province) AND f.offer_id = l.offer_id
            WHERE f.per_citizen_count IS NOT NULL
            GROUP BY f.offer_id, f.per_citizen_count, f.per_citizen_period, l.citizen_id,
                     CASE WHEN f.per_citizen_period = 'ever' THEN NULL
                          ELSE date_trunc(f.per_citizen_period, l.created_at AT TIME ZONE 'Asia/Shanghai') END
            HAVING count(*) > f.per_citizen_count
            ORDER BY 3, 4
            """
        ).rows
        for row in findings {
            var fields: [(String, AuditValue)] = [("province", .string(province)), ("offer_id", .string(try row.decode(2)))]
            if let citizen = try row.decode(3, as: String?.self) { fields.append(("citizen_id", .string(citizen))) }
            audit.record(.offerLimits, AuditFinding(try row.decode(0), magnitude: max(1, try row.decode(1, as: Int64.self)), fields))
        }
    }
}
