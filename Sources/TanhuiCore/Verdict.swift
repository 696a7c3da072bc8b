import Foundation

/// The final answer for one submitted event, in request order.
public struct Verdict: Sendable, Equatable {
    public enum Status: String, Sendable, Codable {
        case accepted, duplicate, rejected, conflict
    }

    public var id: String
    public var status: Status
    public var code: String?
    public var message: String?
    public var award: AwardSummary?
    /// For `duplicate`: the verdict first given to this event.
    public var originalStatus: Status?
    /// Field problems, for `rejected`/`invalid` (malformed events are not stored).
    public var errors: [ValidationIssue]

    public init(id: String, status: Status, code: String? = nil, message: String? = nil, award: AwardSummary? = nil, originalStatus: Status? = nil, errors: [ValidationIssue] = []) {
        self.id = id
        self.status = status
        self.code = code
        self.message = message
        self.award = award
        self.originalStatus = originalStatus
        self.errors = errors
    }
}

public struct AwardSummary: Sendable, Equatable {
    public var gramsCO2e: Int64
    public var points: Int64
    public var province: String
    public var ruleSetVersion: Int
    public var capped: Bool

    public init(gramsCO2e: Int64, points: Int64, province: String, ruleSetVersion: Int, capped: Bool) {
        self.gramsCO2e = gramsCO2e
        self.points = points
        self.province = province
        self.ruleSetVersion = ruleSetVersion
        self.capped = capped
    }
}

/// Stable codes of sync verdicts beyond the rule-set rejection codes.
public enum VerdictCode {
    /// Same id as an event already judged, with different content; the original stands.
    public static let idReused = "id_reused"
    /// The evidence (province, source, ref) was already credited, to anyone.
    public static let evidenceClaimed = "evidence_claimed"
    /// A trip or ride overlapping an accepted one of the same citizen.
    public static let overlap = "overlap"
    /// After clock correction the event still lies in the future.
    public static let clockSkew = "clock_skew"
    /// Malformed item: not stored, so a fixed client may resend the same id.
    public static let invalid = "invalid"
}

/// One item of a batch: decoded, or malformed with its problems.
public enum SubmissionItem: Sendable {
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
public enum ClockPolicy {
    public static let trustedSkewMs: Int64 = 120_000
    public static let futureToleranceMs: Int64 = 300_000
    /// [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)
    public static let saneRangeMs: Range<Int64> = 946_684_800_000..<4_102_444_800_000

    public static func offsetMs(receivedAtMs: Int64, sentAtMs: Int64?) -> Int64 {
        guard let sentAtMs else { return 0 }
        // Both come from RFC 3339 text (years 0000–9999), so the difference fits easily.
        let offset = receivedAtMs - sentAtMs
        return abs(offset) <= trustedSkewMs ? 0 : offset
    }
}
