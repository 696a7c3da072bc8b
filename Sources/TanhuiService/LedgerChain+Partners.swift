package import TanhuiPostgres

/// Chain v2 forms of the partner-feed records (migration 0007): link changes (alias `l`) and
/// uploaded records (alias `pr`). Both are found by their seal id, unique per province.
extension LedgerChain {
    package static func partnerFieldColumns(_ record: Record) -> SQLFragment {
        switch record {
        case .partnerLink:
            return """
                l.province, l.seal_id::text, l.link_id::text, l.change, l.partner_id::text, l.subject, l.citizen_id::text, l.scene,
                CASE WHEN isfinite(l.at) THEN trunc(extract(epoch FROM l.at) * 1000000)::text ELSE l.at::text END, l.actor
                """
        default:
            return """
                pr.province, pr.seal_id::text, pr.partner_id::text, pr.record_id, pr.event_id::text, pr.subject, pr.link_id::text,
                pr.citizen_id::text, pr.kind, CASE WHEN isfinite(pr.occurred_at) THEN trunc(extract(epoch FROM pr.occurred_at) * 1000000)::text ELSE pr.occurred_at::text END,
                pr.content_sha256, pr.status, pr.code,
                CASE WHEN isfinite(pr.received_at) THEN trunc(extract(epoch FROM pr.received_at) * 1000000)::text ELSE pr.received_at::text END
                """
        }
    }

    package static func partnerFieldCount(_ record: Record) -> Int {
        record == .partnerLink ? 10 : 14
    }
}
