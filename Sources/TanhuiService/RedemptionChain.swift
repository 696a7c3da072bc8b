import TanhuiPostgres

/// How the chain seals redemption details (the `redemption`, `redemption_outcome` and
/// `redemption_refund` record kinds, keyed in `ledger_chain.record_key`). Aliases: `rd`
/// redemptions, `ro` outcomes, `rf` refunds. Instants as integer microseconds.
enum RedemptionChain {
    static func fieldColumns(_ record: LedgerChain.Record) -> SQLFragment {
        switch record {
        case .redemption:
            return """
                rd.province, rd.seal_id::text, rd.partner_id::text, rd.redemption_id::text, rd.request_sha256, rd.citizen_id::text, rd.offer_id::text,
                rd.points::text, rd.partner_ref, rd.hold_transaction_id::text, trunc(extract(epoch FROM rd.created_at) * 1000000)::text,
                trunc(extract(epoch FROM rd.expires_at) * 1000000)::text
                """
        case .redemptionOutcome:
            return """
                ro.province, ro.seal_id::text, ro.partner_id::text, ro.redemption_id::text, ro.outcome, ro.transaction_id::text,
                trunc(extract(epoch FROM ro.created_at) * 1000000)::text
                """
        default:
            return """
                rf.province, rf.seal_id::text, rf.partner_id::text, rf.refund_id::text, rf.redemption_id::text, rf.points::text,
                rf.transaction_id::text, trunc(extract(epoch FROM rf.created_at) * 1000000)::text
                """
        }
    }

    static func fieldCount(_ record: LedgerChain.Record) -> Int {
        switch record {
        case .redemption: return 12
        case .redemptionOutcome: return 7
        default: return 8
        }
    }

    /// Lot movements (migration 0010), alias `lm`.
    static let lotMovementColumns: SQLFragment = """
        lm.province, lm.seal_id::text, lm.transaction_id::text, lm.award_transaction_id::text, lm.citizen_id::text, lm.kind, lm.points::text,
        trunc(extract(epoch FROM lm.at) * 1000000)::text
        """
    static let lotMovementFieldCount = 8
}
