import Foundation
import TanhuiCore

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

/// How device clocks are treated.
///
/// The offset is `receivedAt − sentAt`. Within ±`trustedSkew` the device clock is trusted
/// (network latency alone explains the difference) and the offset is 0; beyond it every
/// device instant of the batch is shifted by the offset. An event whose corrected time is
/// more than `futureTolerance` after receipt is rejected `clock_skew`.
public enum ClockPolicy {
    public static let trustedSkew: TimeInterval = 120
    public static let futureTolerance: TimeInterval = 300

    public static func offset(receivedAt: Date, sentAt: Date?) -> TimeInterval {
        guard let sentAt else { return 0 }
        let offset = (receivedAt.timeIntervalSince(sentAt) * 1000).rounded() / 1000
        return abs(offset) <= trustedSkew ? 0 : offset
    }
}
