import Foundation
import TanhuiPostgres

/// The audit's `governance` check (migration 0009). The chain replay verifies governance
/// records like every other kind (`LedgerChain.sealedTable`).
extension ProvinceAudit {
    /// Every published version has exactly one publication record; one published from a
    /// proposal has the policy's distinct approvals of that very document, none by its author
    /// or by a key revoked before publication, and an effective_from no earlier than the last
    /// of those approvals plus the notice period; a direct one had a direct-publish policy.
    mutating func governance() throws {
        let p: (String, AuditValue) = ("province", .string(province))
        let rows = try connection.query(
            """
            SELECT r.version, u.mode, u.proposal_id::text, r.effective_from, q.proposal_id IS NOT NULL, q.version, q.content_sha256 = r.content_sha256,
                   coalesce(g.required_approvals, \(GovernancePolicy.defaultRequiredApprovals)), coalesce(g.notice_days, \(GovernancePolicy.defaultNoticeDays)),
                   coalesce(g.direct_publish, false),
                   (SELECT count(DISTINCT a) FROM unnest(u.approver_ids) a),
                   (SELECT count(*) FROM unnest(u.approver_ids) a WHERE a = q.author_id),
                   (SELECT count(DISTINCT v.reviewer_id) FROM ruleset_reviews v
                     WHERE v.province = \(province) AND v.proposal_id = u.proposal_id AND v.reviewer_id = ANY(u.approver_ids) AND v.verdict = 'approve'
                       AND v.reviewer_id <> q.author_id AND v.created_at <= u.created_at),
                   (SELECT max(v.created_at) FROM ruleset_reviews v
                     WHERE v.province = \(province) AND v.proposal_id = u.proposal_id AND v.reviewer_id = ANY(u.approver_ids) AND v.verdict = 'approve'),
                   (SELECT count(*) FROM operators o WHERE o.id = ANY(u.approver_ids) AND o.revoked_at < u.created_at),
                   u.version IS NOT NULL
            FROM rule_sets r
            LEFT JOIN ruleset_publications u ON u.province = r.province AND u.version = r.version
            LEFT JOIN ruleset_proposals q ON q.province = u.province AND q.proposal_id = u.proposal_id
            LEFT JOIN ruleset_policies g ON g.province = u.province AND g.policy_seq = u.policy_seq
            WHERE r.province = \(province)
            ORDER BY r.version
            /* citus: multi-shard (operators is a reference table) */
            """
        ).rows
        for row in rows {
            audit.checked(.governance)
            let version: Int = try row.decode(0)
            var fields: [(String, AuditValue)] = [p, ("rule_set_version", .int(Int64(version)))]
            guard try row.decode(15, as: Bool.self) else {
                audit.record(
                    .governance, AuditFinding("published version has no publication record", magnitude: 1_000, fields + [("rule", .string("record"))])
                )
                continue
            }
            let mode: String = try row.decode(1)
            fields.append(("mode", .string(mode)))
            var broken: [String] = []
            switch mode {
            case "proposal":
                if let id = try row.decode(2, as: String?.self) { fields.append(("proposal_id", .string(id))) }
                guard try row.decode(4, as: Bool.self) else {
                    audit.record(
                        .governance, AuditFinding("publication names no stored proposal", magnitude: 1_000, fields + [("rule", .string("proposal"))]))
                    continue
                }
                let proposedVersion: Int = try row.decode(5)
                let sameDocument = try row.decode(6, as: Bool?.self) ?? false
                if proposedVersion != version || !sameDocument {
                    broken.append("proposal: the published document is not the proposed one")
                }
                let required: Int64 = try row.decode(7)
                let listed: Int64 = try row.decode(10)
                let valid: Int64 = try row.decode(12)
                if try row.decode(11, as: Int64.self) > 0 { broken.append("author: the author is counted as an approver") }
                if valid < required || listed < required {
                    broken.append("approvals: \(valid) distinct approvals by others than the author where \(required) are required")
                }
                if try row.decode(14, as: Int64.self) > 0 { broken.append("revoked: an approval counted from a key revoked before publication") }
                let noticeDays: Int = try row.decode(8)
                let effectiveFrom: Date = try row.decode(3)
                if let approvedAt = try row.decode(13, as: Date?.self), effectiveFrom < approvedAt.addingTimeInterval(Double(noticeDays) * 86_400) {
                    broken.append("notice: effective_from is less than \(noticeDays) days after the last approval")
                }
            case "direct":
                if !(try row.decode(9, as: Bool.self)) { broken.append("direct: published directly without a direct-publish policy") }
            default:
                break  // admin (database credentials) and legacy (before governance) publications
            }
            if !broken.isEmpty {
                audit.record(
                    .governance,
                    AuditFinding(
                        broken.joined(separator: "; "), magnitude: Int64(broken.count) * 1_000,
                        fields + [("rule", .string(broken.map { String($0.prefix { $0 != ":" }) }.joined(separator: ",")))]))
            }
        }
        // Governance records below the chain head's seal id must be sealed.
        let headID = try connection.query(LedgerChain.sealedThroughQuery(province)).first.flatMap { try $0.decode(0, as: Int64?.self) } ?? 0
        let skipped = try connection.query(
            """
            SELECT k, key, seal_id FROM (
                SELECT 'ruleset_policy' AS k, policy_seq::text AS key, seal_id FROM ruleset_policies WHERE province = \(province)
                UNION ALL SELECT 'ruleset_proposal', proposal_id::text, seal_id FROM ruleset_proposals WHERE province = \(province)
                UNION ALL SELECT 'ruleset_review', review_id::text, seal_id FROM ruleset_reviews WHERE province = \(province)
                UNION ALL SELECT 'ruleset_publication', version::text, seal_id FROM ruleset_publications WHERE province = \(province)) g
            WHERE g.seal_id <= \(headID)
              -- Per record (they are few): the link at its seal id, by index; only where that is
              -- not it, a search of the chain by key (as an anti-join, the full audit hashed the
              -- whole chain for a handful of records: 0.25 s at 1M entries).
              AND NOT EXISTS (SELECT 1 FROM ledger_chain c WHERE c.province = \(province) AND c.seal_id = g.seal_id AND c.record = g.k
                                AND c.record_key = g.key OFFSET 0)
              AND NOT EXISTS (SELECT 1 FROM ledger_chain c WHERE c.province = \(province) AND c.record = g.k AND c.record_key = g.key OFFSET 0)
            ORDER BY seal_id LIMIT 1000
            """
        ).rows
        for row in skipped {
            audit.record(
                .hashChain,
                AuditFinding(
                    "\(try row.decode(0, as: String.self)) with seal id \(try row.decode(2, as: Int64.self)) lies below the chain head's \(headID) but is not sealed",
                    [p, ("record", .string(try row.decode(0))), ("record_key", .string(try row.decode(1))), ("rule", .string("skipped"))]))
        }
    }
}
