package import Foundation

/// The checks `tanhui audit` runs, in report order. The raw values are the stable ids of the
/// JSON report and of the human report's first column.
package enum AuditCheckID: String, Sendable, CaseIterable, Codable {
    case transactionsBalance = "transactions_balance"
    case conservation
    case cachedBalances = "cached_balances"
    case hashChain = "hash_chain"
    case unsealedBacklog = "unsealed_backlog"
    case checkpoints
    case replay
    case completeness
    case capsAndNegativeBalances = "caps_and_negative_balances"
    case reversals
    case guardRails = "guard_rails"
    case overlappingTrips = "overlapping_trips"
    case chainOrder = "chain_order"
    case reportsMatchLedger = "reports_match_ledger"
    case governance
    case partnerFeeds = "partner_feeds"
    // Redemption (migration 0006): see RedemptionAudit.
    case redemptions
    case offerLimits = "offer_limits"
    case lots

    package var title: String {
        switch self {
        case .transactionsBalance: return "every transaction has ≥ 2 entries summing to zero that carry its points; no entry without a transaction"
        case .conservation: return "per province: −issuance = Σ citizen entries = issued − reversed"
        case .cachedBalances: return "citizen_accounts balance_points, balance_grams and last_seq equal the fold of the ledger; citizen_seq runs 1…n"
        case .hashChain:
            return
                "hash chain replays from genesis: contiguous sequence, links, hashes (v1: transactions; v2: every column of transactions, events and rule-set publications); every record sealed at most once, none skipped"
        case .unsealedBacklog: return "no transaction, event or rule-set publication left unsealed longer than the seal bound"
        case .checkpoints: return "each --checkpoint is signed by the trusted key and the current chain still holds its head"
        case .replay:
            return
                "every award re-evaluates to its stored grams and points (caps in citizen order) under the version in force; rule-set documents match their hashes"
        case .completeness:
            return "each accepted event has exactly one award, each award an accepted event of its citizen; no evidence credited twice"
        case .capsAndNegativeBalances: return "no cap exceeded, cap_usage equals the recomputed usage, no citizen balance ever negative"
        case .reversals: return "each reversal mirrors an award exactly (points, grams, event, citizen, entries); at most one per award"
        case .guardRails:
            return
                "append-only triggers present, enabled, BEFORE ROW UPDATE OR DELETE (TRUNCATE: statement), no column list or WHEN, calling the shipped tanhui_reject_change(); tanhui_service has no UPDATE/DELETE/TRUNCATE on history tables"
        case .overlappingTrips: return "no two accepted trips of one citizen overlap in time"
        case .chainOrder:
            return "the chain follows seal-id order, never returns from v2 to v1 links, and contradicts created_at order by at most the seal bound"
        case .reportsMatchLedger:
            return
                "the report rollup (figures, rejections by code, citizen sets) equals a recomputation from the events and transactions up to its chain link, and that link is in the chain"
        case .governance:
            return
                "every published version has one publication record; a governed one has the policy's distinct approvals of its proposal, none by the author, and respected the notice period; governance records are sealed"
        case .partnerFeeds:
            return
                "every partner-sourced award had a link valid at occurred_at to its citizen and a kind within the partner's; no partner-owned evidence credited from a device or another partner"
        case .redemptions:
            return
                "each hold resolved within its TTL + 300 s (expiry voids dated at the TTL, no capture after it); capture and void exclusive and matching the ledger; refunds only of captures and ≤ captured; held accounts = open holds = held_points; partner accounts = captured − refunded"
        case .offerLimits: return "no offer has more live units than its total limit, nor a citizen more per period than the per-citizen limit"
        case .lots:
            return
                "every lot rebuilt from its award, draws, refunds and expiries: points and expires_at as its rule-set version fixes them, never negative, never drawn after its expiry, expired exactly once at expires_at (within 300 s unless a hold is open), caches equal the replay"
        }
    }
}

/// A scalar of a finding: the ids and amounts that let an admin open the case.
package enum AuditValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case int(Int64)

    package var description: String {
        switch self {
        case .string(let text): return text
        case .int(let value): return String(value)
        }
    }

    var jsonObject: Any {
        switch self {
        case .string(let text): return text
        case .int(let value): return NSNumber(value: value)
        }
    }
}

/// One offending row: named fields (`province`, `transaction_id`, `event_id`, `account`, …)
/// and a `detail` sentence. `magnitude` orders findings for "worst" (larger is worse);
/// `at` (a transaction's created_at) is what `--from/--to` filter on.
package struct AuditFinding: Sendable, Equatable {
    package var detail: String
    package var fields: [(String, AuditValue)]
    package var magnitude: Int64
    package var at: Date?

    package init(_ detail: String, magnitude: Int64 = 1, at: Date? = nil, _ fields: [(String, AuditValue)]) {
        self.detail = detail
        self.fields = fields
        self.magnitude = magnitude
        self.at = at
    }

    package func value(_ name: String) -> AuditValue? {
        fields.first { $0.0 == name }?.1
    }

    package static func == (a: AuditFinding, b: AuditFinding) -> Bool {
        a.detail == b.detail && a.magnitude == b.magnitude && a.at == b.at
            && a.fields.map(\.0) == b.fields.map(\.0) && a.fields.map(\.1) == b.fields.map(\.1)
    }

    var jsonObject: [String: Any] {
        var object: [String: Any] = ["detail": detail, "magnitude": NSNumber(value: magnitude)]
        for (name, value) in fields { object[name] = value.jsonObject }
        return object
    }

    /// `transaction_id=12 event_id=… — detail`
    package var line: String {
        (fields.map { "\($0.0)=\($0.1)" } + ["— " + detail]).joined(separator: " ")
    }
}

/// Count and the first, worst and last offender of one check (the Jepsen bank checker's
/// report shape): constant memory however many rows offend.
package struct AuditCheckResult: Sendable, Equatable {
    package let id: AuditCheckID
    /// Items examined (rows, links, accounts, files…).
    package var checked: Int64 = 0
    package var count: Int64 = 0
    package var first: AuditFinding?
    package var worst: AuditFinding?
    package var last: AuditFinding?

    package init(id: AuditCheckID) {
        self.id = id
    }

    package var holds: Bool { count == 0 }

    mutating func record(_ finding: AuditFinding) {
        count += 1
        if first == nil { first = finding }
        if worst == nil || finding.magnitude > worst!.magnitude { worst = finding }
        last = finding
    }

    /// Folds in another province's result (callers merge in province order).
    mutating func merge(_ other: AuditCheckResult) {
        checked += other.checked
        guard other.count > 0 else { return }
        count += other.count
        if first == nil { first = other.first }
        if let candidate = other.worst, worst == nil || candidate.magnitude > worst!.magnitude { worst = candidate }
        last = other.last
    }
}

/// Collects findings of every check for one scope (a province, or the global checks),
/// dropping transaction-bound findings outside the `--from/--to` window.
package struct AuditAccumulator: Sendable {
    package private(set) var results: [AuditCheckID: AuditCheckResult]
    package var rowsChecked: Int64 = 0
    let from: Date?
    let to: Date?

    package init(from: Date? = nil, to: Date? = nil) {
        self.from = from
        self.to = to
        results = Dictionary(uniqueKeysWithValues: AuditCheckID.allCases.map { ($0, AuditCheckResult(id: $0)) })
    }

    package func inWindow(_ date: Date?) -> Bool {
        guard let date else { return true }
        if let from, date < from { return false }
        if let to, date >= to { return false }
        return true
    }

    package mutating func record(_ check: AuditCheckID, _ finding: AuditFinding) {
        guard inWindow(finding.at) else { return }
        results[check]!.record(finding)
    }

    package mutating func checked(_ check: AuditCheckID, _ count: Int64 = 1) {
        results[check]!.checked += count
    }

    package mutating func merge(_ other: AuditAccumulator) {
        rowsChecked += other.rowsChecked
        for id in AuditCheckID.allCases { results[id]!.merge(other.results[id]!) }
    }
}

/// The outcome of `tanhui audit`.
package struct AuditReport: Sendable {
    package var provinces: [String]
    package var checks: [AuditCheckResult]
    package var rowsChecked: Int64
    /// `shared`: every province read one exported snapshot.
    package var snapshot: String
    package var from: Date?
    package var to: Date?
    package var sealBoundSeconds: Int
    /// Chain ranges replayed by separate workers, and how many were replayed a second time
    /// because the range before ended in another state than assumed (a chain out of order).
    package var chainRanges = 0
    package var chainRangesReplayed = 0

    package var ok: Bool { checks.allSatisfy(\.holds) }

    package func check(_ id: AuditCheckID) -> AuditCheckResult {
        checks.first { $0.id == id }!
    }

    static func instant(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// The documented JSON document (keys sorted, so byte-stable for equal reports).
    package func json() -> String {
        let object: [String: Any] = [
            "ok": ok,
            "provinces": provinces,
            "rows_checked": NSNumber(value: rowsChecked),
            "snapshot": snapshot,
            "window": ["from": from.map { Self.instant($0) as Any } ?? NSNull(), "to": to.map { Self.instant($0) as Any } ?? NSNull()]
                as [String: Any],
            "seal_bound_seconds": sealBoundSeconds,
            "chain_ranges": ["split": chainRanges, "replayed": chainRangesReplayed],
            "checks": checks.map { check -> [String: Any] in
                [
                    "id": check.id.rawValue,
                    "title": check.id.title,
                    "status": check.holds ? "ok" : "violated",
                    "checked": NSNumber(value: check.checked),
                    "count": NSNumber(value: check.count),
                    "first": check.first?.jsonObject ?? NSNull(),
                    "worst": check.worst?.jsonObject ?? NSNull(),
                    "last": check.last?.jsonObject ?? NSNull(),
                ]
            },
        ]
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// One line per check; for each violation its count and first, worst and last offenders.
    package func human() -> [String] {
        var lines: [String] = []
        let window =
            (from == nil && to == nil)
            ? "" : ", findings restricted to transactions created in [\(from.map(Self.instant) ?? "-∞"), \(to.map(Self.instant) ?? "+∞"))"
        lines.append(
            "tanhui audit: \(provinces.count) province(s) \(provinces.isEmpty ? "(none)" : provinces.joined(separator: " ")), \(rowsChecked) rows checked, \(snapshot) snapshot\(window)"
        )
        let width = AuditCheckID.allCases.map(\.rawValue.count).max()!
        for check in checks {
            let name = check.id.rawValue.padding(toLength: width, withPad: " ", startingAt: 0)
            if check.holds {
                lines.append("ok        \(name)  (\(check.checked) checked)")
            } else {
                lines.append("VIOLATED  \(name)  (\(check.count) of \(check.checked)) \(check.id.title)")
                // The same row is printed once, under every label it holds.
                var shown: [(label: String, finding: AuditFinding)] = []
                for (label, finding) in [("first", check.first), ("worst", check.worst), ("last", check.last)] {
                    guard let finding else { continue }
                    if let index = shown.firstIndex(where: { $0.finding == finding }) {
                        shown[index].label += "/" + label
                    } else {
                        shown.append((label, finding))
                    }
                }
                for (label, finding) in shown { lines.append("          \(label): \(finding.line)") }
            }
        }
        let violated = checks.filter { !$0.holds }.count
        lines.append(violated == 0 ? "result: ok (all \(checks.count) checks hold)" : "result: VIOLATED (\(violated) of \(checks.count) checks)")
        return lines
    }
}
