package import Foundation

/// The final answer for one submitted event, in request order.
package struct Verdict: Sendable, Equatable {
    package enum Status: String, Sendable, Codable {
        case accepted, duplicate, rejected, conflict
    }

    package var id: String
    package var status: Status
    package var code: String?
    package var message: String?
    package var award: AwardSummary?
    /// For `duplicate`: the verdict first given to this event.
    package var originalStatus: Status?
    /// Field problems, for `rejected`/`invalid` (malformed events are not stored).
    package var errors: [ValidationIssue]

    package init(
        id: String, status: Status, code: String? = nil, message: String? = nil, award: AwardSummary? = nil, originalStatus: Status? = nil,
        errors: [ValidationIssue] = []
    ) {
        self.id = id
        self.status = status
        self.code = code
        self.message = message
        self.award = award
        self.originalStatus = originalStatus
        self.errors = errors
    }
}

package struct AwardSummary: Sendable, Equatable {
    package var gramsCO2e: Int64
    package var points: Int64
    package var province: String
    package var ruleSetVersion: Int
    package var capped: Bool

    package init(gramsCO2e: Int64, points: Int64, province: String, ruleSetVersion: Int, capped: Bool) {
        self.gramsCO2e = gramsCO2e
        self.points = points
        self.province = province
        self.ruleSetVersion = ruleSetVersion
        self.capped = capped
    }
}

/// Stable codes of sync verdicts beyond the rule-set rejection codes.
package enum VerdictCode {
    /// Same id as an event already judged, with different content; the original stands.
    package static let idReused = "id_reused"
    /// The evidence (province, source, ref) was already credited, to anyone.
    package static let evidenceClaimed = "evidence_claimed"
    /// A trip or ride overlapping an accepted one of the same citizen.
    package static let overlap = "overlap"
    /// After clock correction the event still lies in the future.
    package static let clockSkew = "clock_skew"
    /// Malformed item: not stored, so a fixed client may resend the same id.
    package static let invalid = "invalid"
    /// A partner record whose subject had no link valid at `occurred_at`; kept, never re-credited.
    package static let unlinked = "unlinked"
    /// A partner record of a kind the partner is not registered to report.
    package static let kindNotInScope = "kind_not_in_scope"
    /// Evidence of a source a partner owns, claimed from a device or another partner.
    package static let evidencePartnerOwned = "evidence_partner_owned"
    /// A self-reported event of an activity the rule set credits from partners only
    /// (a rule-set rejection: `RejectionCode.selfReportNotAccepted`).
    package static let selfReportNotAccepted = RejectionCode.selfReportNotAccepted.rawValue
}

/// Where a judged event came from: a citizen's device, or a feed partner's signed upload.
package enum EventSource: Sendable, Equatable, Hashable {
    case device
    case partner(UUID)
}

/// One item of a batch: decoded, or malformed with its problems.
package enum SubmissionItem: Sendable {
    case event(EventWire)
    case invalid(id: String?, issues: [ValidationIssue])
}

/// How device clocks are treated, in integer milliseconds.
///
/// The offset is `receivedAt − sentAt`. Within ±`trustedSkewMs` the device clock is trusted
/// (network latency alone explains the difference) and the offset is 0; beyond it every
/// device instant of the batch is shifted by the offset. An event whose corrected time is
/// more than `futureToleranceMs` after receipt is answered `clock_skew` and not stored, so the
/// device can resend it once its clock is right. Corrected instants outside
/// `saneRangeMs` (2000-01-01 to 2100-01-01 UTC) are `invalid`, never stored.
package enum ClockPolicy {
    package static let trustedSkewMs: Int64 = 120_000
    package static let futureToleranceMs: Int64 = 300_000
    /// [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)
    package static let saneRangeMs: Range<Int64> = 946_684_800_000..<4_102_444_800_000

    package static func offsetMs(receivedAtMs: Int64, sentAtMs: Int64?) -> Int64 {
        guard let sentAtMs else { return 0 }
        // Both come from RFC 3339 text (years 0000–9999), so the difference fits easily.
        let offset = receivedAtMs - sentAtMs
        return abs(offset) <= trustedSkewMs ? 0 : offset
    }
}
