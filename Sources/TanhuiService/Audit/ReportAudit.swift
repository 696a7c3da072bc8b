import TanhuiPostgres

extension ProvinceAudit {
    /// Most differing cells named per table (the count is exact).
    static let reportFindingsShown = 100

    /// `reports_match_ledger`: the rollup is a cache of the sealed chain, so recompute it from
    /// the events and transactions with seal ids up to its progress and compare row sets
    /// (each direction of EXCEPT), and check that its progress names a real chain link.
    mutating func reportsMatchLedger() throws {
        let check = AuditCheckID.reportsMatchLedger
        let progress = try connection.query(
            """
            SELECT p.sealed_through, p.chain_seq, p.head_hash, c.hash, coalesce(c.seal_id, c.transaction_id)
            FROM report_progress p
            -- One link by key: as a join, the full audit's planning (no nested loops) hashed the
            -- whole chain for it (0.93 s at 1M entries).
            LEFT JOIN LATERAL (SELECT * FROM ledger_chain c WHERE c.province = \(province) AND c.chain_seq = p.chain_seq OFFSET 0) c ON true
            WHERE p.province = \(province)
            """
        ).first
        let sealedThrough: Int64 = try progress?.decode(0) ?? 0
        audit.checked(check)
        if let progress {
            let chainSeq: Int64 = try progress.decode(1)
            let linkHash = try progress.decode(3, as: String?.self)
            let linkSeal = try progress.decode(4, as: Int64?.self)
            let headHash: String = try progress.decode(2)
            if linkHash != headHash || linkSeal != sealedThrough {
                audit.record(
                    check,
                    AuditFinding(
                        "report_progress names chain link \(chainSeq) (seal id \(sealedThrough)), which the chain does not hold with that hash and seal id",
                        magnitude: 3, [("province", .string(province)), ("chain_seq", .int(chainSeq))]))
            }
        }
        // --since from a checkpoint with a report copy: every cell must equal that copy plus the
        // records folded since (seal ids in (copy's progress, progress]); otherwise (a full
        // audit, an older checkpoint, a copy that no longer verifies) the rollup is recomputed
        // from all history.
        let copiedThrough = try incremental ? reportCopy(sealedThrough: sealedThrough) : nil
        let useCopy = copiedThrough != nil
        let from = copiedThrough ?? 0
        // --since plans for index look-ups (no hash or merge joins); recomputing all history
        // instead (its copy did not verify) needs them back, or it joins every transaction by index.
        let recomputesAllUnderSince = incremental && !useCopy
        if recomputesAllUnderSince {
            try connection.query("SET LOCAL enable_hashjoin = on")
            try connection.query("SET LOCAL enable_mergejoin = on")
        }
        defer {
            if recomputesAllUnderSince {
                _ = try? connection.query("SET LOCAL enable_hashjoin = off")
                _ = try? connection.query("SET LOCAL enable_mergejoin = off")
            }
        }
        let day = ReportService.dayExpression
        // From a copy, the transactions folded since are joined to their events by hashing the
        // events sealed since (an award's event is sealed just before it); only the others (a
        // reversal's event, an award whose event the copy's progress already held) are looked
        // up by key: 49,500 look-ups were 256 of this statement's 354 ms at 1M entries (and
        // were still made, the anti-join planned after them, until it was fenced first).
        let cells = try Self.hashJoiningNewRows(useCopy, on: connection) {
            try connection.query(
                """
                WITH recomputed AS (
                    SELECT day, kind, variant, district, sum(a)::bigint AS accepted, sum(r)::bigint AS rejected, sum(g)::bigint AS grams_co2e,
                           sum(pt)::bigint AS points, sum(rv)::bigint AS reversals
                    FROM (SELECT day, kind, variant, district, accepted AS a, rejected AS r, grams_co2e AS g, points AS pt, reversals AS rv
                          FROM ledger_checkpoint_rollup WHERE \(useCopy) AND province = \(province) AND watermark = \(sinceID)
                          UNION ALL
                          SELECT \(day) AS day, e.kind, coalesce(e.mode, e.material, '') AS variant, coalesce(e.district, '') AS district,
                                 (e.status = 'accepted')::int AS a, (e.status <> 'accepted')::int AS r, 0::bigint AS g, 0::bigint AS pt, 0 AS rv
                          FROM events e WHERE e.province = \(province) AND e.seal_id > \(from) AND e.seal_id <= \(sealedThrough)
                          UNION ALL
                          SELECT \(day), e.kind, coalesce(e.mode, e.material, ''), coalesce(e.district, ''), 0, 0, t.grams_co2e, t.points,
                                 (t.kind = 'reversal')::int
                          FROM ledger_transactions t JOIN events e ON e.province = t.province AND e.event_id = t.event_id AND (NOT \(useCopy) OR e.seal_id > \(from))
                          WHERE t.province = \(province) AND e.province = \(province) AND t.transaction_id > \(from) AND t.transaction_id <= \(sealedThrough)
                          UNION ALL
                          SELECT \(day), e.kind, coalesce(e.mode, e.material, ''), coalesce(e.district, ''), 0, 0, t.grams_co2e, t.points,
                                 (t.kind = 'reversal')::int
                          -- the anti-join first (OFFSET 0): written beside the look-up, it was planned after it,
                          -- and every transaction's event was looked up (0.47 s at 10M entries) to keep none
                          FROM (SELECT t.* FROM ledger_transactions t
                                WHERE \(useCopy) AND t.province = \(province) AND t.transaction_id > \(from) AND t.transaction_id <= \(sealedThrough)
                                  AND NOT EXISTS (SELECT 1 FROM events n WHERE n.province = \(province) AND n.seal_id > \(from) AND n.event_id = t.event_id)
                                OFFSET 0) t
                          CROSS JOIN LATERAL (SELECT * FROM events e WHERE e.province = \(province) AND e.event_id = t.event_id OFFSET 0) e) x
                    GROUP BY 1, 2, 3, 4),
                stored AS (
                    SELECT day, kind, variant, district, accepted, rejected, grams_co2e, points, reversals FROM report_rollup WHERE province = \(province)),
                differing AS ((SELECT 'missing or different in the rollup' AS what, * FROM (SELECT * FROM recomputed EXCEPT SELECT * FROM stored) m)
                    UNION ALL (SELECT 'not in the recomputation', * FROM (SELECT * FROM stored EXCEPT SELECT * FROM recomputed) n))
                SELECT (SELECT count(*) FROM differing), (SELECT count(*) FROM recomputed), what, day::text, kind, variant, district,
                       accepted, grams_co2e, points
                FROM differing RIGHT JOIN (SELECT 1) one ON true ORDER BY day, kind, variant, district, what LIMIT \(Self.reportFindingsShown)
                """)
        }
        try recordDifferences(cells.rows, table: "report_rollup")
        let rejections = try connection.query(
            """
            WITH recomputed AS (
                SELECT day, kind, variant, district, code, sum(n)::bigint AS events
                FROM (SELECT day, kind, variant, district, code, events AS n
                      FROM ledger_checkpoint_rejections WHERE \(useCopy) AND province = \(province) AND watermark = \(sinceID)
                      UNION ALL
                      SELECT \(day), e.kind, coalesce(e.mode, e.material, ''), coalesce(e.district, ''), e.code, 1
                      FROM events e WHERE e.province = \(province) AND e.seal_id > \(from) AND e.seal_id <= \(sealedThrough) AND e.status <> 'accepted') x
                GROUP BY 1, 2, 3, 4, 5),
            stored AS (SELECT day, kind, variant, district, code, events FROM report_rejections WHERE province = \(province)),
            differing AS ((SELECT 'missing or different in the rollup' AS what, * FROM (SELECT * FROM recomputed EXCEPT SELECT * FROM stored) m)
                UNION ALL (SELECT 'not in the recomputation', * FROM (SELECT * FROM stored EXCEPT SELECT * FROM recomputed) n))
            SELECT (SELECT count(*) FROM differing), (SELECT count(*) FROM recomputed), what, day::text, kind, variant, district,
                   events, NULL::bigint, NULL::bigint
            FROM differing RIGHT JOIN (SELECT 1) one ON true ORDER BY day, kind, variant, district, what LIMIT \(Self.reportFindingsShown)
            """)
        try recordDifferences(rejections.rows, table: "report_rejections")
        // Citizens: a full audit compares the whole set both ways; --since from a copy checks
        // that every (cell, citizen) of the records folded since is in it, by key (the set is
        // not copied: a citizen added to any cell is the full audit's).
        let citizens = try connection.query(
            useCopy
                ? """
                WITH recomputed AS (
                    SELECT DISTINCT \(day) AS day, e.kind, coalesce(e.mode, e.material, '') AS variant, coalesce(e.district, '') AS district, e.citizen_id
                    FROM events e WHERE e.province = \(province) AND e.seal_id > \(from) AND e.seal_id <= \(sealedThrough)),
                differing AS (
                    SELECT 'missing from the rollup' AS what, * FROM recomputed r
                    WHERE NOT EXISTS (SELECT 1 FROM report_citizens c WHERE c.province = \(province) AND c.day = r.day AND c.kind = r.kind
                                        AND c.variant = r.variant AND c.district = r.district AND c.citizen_id = r.citizen_id))
                SELECT (SELECT count(*) FROM differing), (SELECT count(*) FROM recomputed), what, day::text, kind, variant, district,
                       NULL::bigint, NULL::bigint, NULL::bigint
                FROM differing RIGHT JOIN (SELECT 1) one ON true ORDER BY day, kind, variant, district, what LIMIT \(Self.reportFindingsShown)
                """
                : """
                WITH recomputed AS (
                    SELECT DISTINCT \(day) AS day, e.kind, coalesce(e.mode, e.material, '') AS variant, coalesce(e.district, '') AS district, e.citizen_id
                    FROM events e WHERE e.province = \(province) AND e.seal_id <= \(sealedThrough)),
                stored AS (SELECT day, kind, variant, district, citizen_id FROM report_citizens WHERE province = \(province)),
                differing AS ((SELECT 'missing from the rollup' AS what, * FROM (SELECT * FROM recomputed EXCEPT SELECT * FROM stored) m)
                    UNION ALL (SELECT 'not in the recomputation', * FROM (SELECT * FROM stored EXCEPT SELECT * FROM recomputed) n))
                SELECT (SELECT count(*) FROM differing), (SELECT count(*) FROM recomputed), what, day::text, kind, variant, district,
                       NULL::bigint, NULL::bigint, NULL::bigint
                FROM differing RIGHT JOIN (SELECT 1) one ON true ORDER BY day, kind, variant, district, what LIMIT \(Self.reportFindingsShown)
                """)
        try recordDifferences(citizens.rows, table: "report_citizens")
    }

    /// The progress of the report copy the `--since` checkpoint signed, when that copy still
    /// hashes to the signed digest and the rollup has not gone back before it; nil otherwise
    /// (a finding names why, and the rollup is recomputed from all history).
    private mutating func reportCopy(sealedThrough: Int64) throws -> Int64? {
        guard let signed = sinceReports else { return nil }
        let file: (String, AuditValue) = ("file", .string(options.since?.file ?? ""))
        audit.checked(.checkpoints)
        guard try LedgerService.reportsDigest(province: province, watermark: sinceID, on: connection) == signed,
            let copied = try connection.query(
                "SELECT sealed_through FROM ledger_checkpoint_reports WHERE province = \(province) AND watermark = \(sinceID)"
            ).first.map({ try $0.decode(0, as: Int64.self) })
        else {
            audit.record(
                .checkpoints,
                AuditFinding(
                    "the report copy stored with the checkpoint (watermark \(sinceID)) no longer hashes to the digest it signed",
                    magnitude: 3, [file, ("province", .string(province)), ("watermark", .int(sinceID))]))
            return nil
        }
        guard copied <= sealedThrough else {
            audit.record(
                .reportsMatchLedger,
                AuditFinding(
                    "report_progress (seal id \(sealedThrough)) lies before the progress of the checkpoint's report copy (seal id \(copied))",
                    magnitude: 3, [("province", .string(province)), ("sealed_through", .int(sealedThrough)), ("copy_sealed_through", .int(copied))]))
            return nil
        }
        return copied
    }

    /// Rows: total differing, rows compared, then one differing cell per row (all NULL when none differ).
    private mutating func recordDifferences(_ rows: [PostgresRow], table: String) throws {
        let check = AuditCheckID.reportsMatchLedger
        guard let first = rows.first else { return }
        let differing: Int64 = try first.decode(0)
        let compared: Int64 = try first.decode(1)
        audit.checked(check, compared)
        guard differing > 0 else { return }
        var recorded: Int64 = 0
        for row in rows {
            guard let what = try row.decode(2, as: String?.self) else { continue }
            recorded += 1
            var fields: [(String, AuditValue)] = [
                ("province", .string(province)), ("table", .string(table)), ("day", .string(try row.decode(3, as: String?.self) ?? "")),
                ("kind", .string(try row.decode(4, as: String?.self) ?? "")), ("variant", .string(try row.decode(5, as: String?.self) ?? "")),
                ("district", .string(try row.decode(6, as: String?.self) ?? "")),
            ]
            if let grams = try row.decode(8, as: Int64?.self) { fields.append(("grams_co2e", .int(grams))) }
            audit.record(check, AuditFinding("\(table) cell \(what)", magnitude: 2, fields))
        }
        // The rest, beyond the cells shown, still count.
        for _ in recorded..<differing {
            audit.record(check, AuditFinding("\(table): more differing cells", [("province", .string(province)), ("table", .string(table))]))
        }
    }
}
