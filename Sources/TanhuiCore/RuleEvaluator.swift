package import Foundation

/// The verdict on one event.
package enum Evaluation: Sendable, Equatable {
    case accepted(Award)
    case rejected(Rejection)

    package var award: Award? {
        if case .accepted(let a) = self { return a }
        return nil
    }

    package var rejection: Rejection? {
        if case .rejected(let r) = self { return r }
        return nil
    }
}

/// Why an event earns nothing. Caps never reject: a capped award is accepted with fewer (maybe 0) points.
package struct Rejection: Sendable, Equatable, Error {
    package let code: RejectionCode
    /// Human-readable reason for the citizen or operator.
    package let message: String
}

/// Stable machine-readable rejection codes (raw values are API):
/// - `no_ruleset`: no version of the province's rules is in force at `occurred_at` (also when the given
///   rule set takes effect after the event).
/// - `ruleset_expired`: the version in force at `occurred_at` has a `valid_until` at or before it
///   (its approval ended and no renewed version took over).
/// - `wrong_province`: the event names another province than the rule set.
/// - `in_future`: `occurred_at` or `ended_at` is more than 5 minutes after receipt.
/// - `too_old`: received more than `submission_window_days` after `occurred_at`.
/// - `kind_not_covered`: the rule set has no activity of the event's kind.
/// - `missing_data`: a field the method needs is absent (e.g. `event.data.distance_m`, `ended_at` for speed checks).
/// - `invalid_data`: a quantity is negative, too large, or `ended_at` precedes `occurred_at`.
/// - `mode_not_covered` / `material_not_covered`: the mode or material has no factor.
/// - `below_minimum` / `above_maximum`: distance, weight or count outside the activity's limits, or more days than `max_days`.
/// - `too_short`: the trip lasted less than `min_duration_s`.
/// - `implausible_speed`: distance over duration exceeds `max_speed_kmh`.
package enum RejectionCode: String, Sendable, Equatable, CaseIterable {
    case noRuleset = "no_ruleset"
    case rulesetExpired = "ruleset_expired"
    case wrongProvince = "wrong_province"
    case inFuture = "in_future"
    case tooOld = "too_old"
    case kindNotCovered = "kind_not_covered"
    case missingData = "missing_data"
    case invalidData = "invalid_data"
    case modeNotCovered = "mode_not_covered"
    case materialNotCovered = "material_not_covered"
    case belowMinimum = "below_minimum"
    case aboveMaximum = "above_maximum"
    case tooShort = "too_short"
    case implausibleSpeed = "implausible_speed"
    /// A self-reported event of an activity with `sources: partner_only`.
    case selfReportNotAccepted = "self_report_not_accepted"
}

/// What an accepted event earns, with everything needed to explain it later.
///
/// Only the numbers are computed eagerly; the explanation (factor, campaign, cap windows) is
/// derived on access from the shared activity rule, so judging an event allocates nothing.
package struct Award: Sendable {
    /// Grams CO2e saved, floored; the physical figure, never multiplied by campaigns.
    package let gramsCO2e: Int64
    /// floor(gramsCO2e / gramsPerPoint).
    package let basePoints: Int64
    /// floor(gramsCO2e × multiplier / gramsPerPoint).
    package let pointsBeforeCaps: Int64
    /// pointsBeforeCaps reduced to what every applicable cap still allows.
    package let pointsAwarded: Int64

    let rule: ActivityRule
    /// Index into `rule.campaigns`, or -1.
    let campaignSlot: Int
    /// Local day of the event in the rule set's zone; the cap windows derive from it.
    let localDay: Int64
    /// Bit i set when cap window i allowed less than `pointsBeforeCaps` (≤ 64 caps by parser limit).
    let bindingMask: UInt64
    /// The event's mode or material, when the factor depends on one.
    let variant: String?
    /// Judged as a citizen's own report (device), not a partner's evidenced record.
    package let selfReported: Bool

    /// The campaign multiplier applied (1 when none).
    package var multiplier: ExactDecimal { campaignSlot >= 0 ? rule.campaigns[campaignSlot].multiplier : ExactDecimal(1) }
    /// Name of the campaign that applied, if any.
    package var campaign: String? { campaignSlot >= 0 ? rule.campaigns[campaignSlot].name : nil }
    package var ruleSetProvince: String { rule.header.province }
    package var ruleSetVersion: Int { rule.header.version }
    package var methodology: String { rule.header.methodology }
    /// The factor used, for the ledger.
    package var factor: AppliedFactor {
        let value =
            variant.flatMap { rule.factor(variant: $0, selfReported: selfReported) } ?? rule.flatFactor(selfReported: selfReported)
            ?? ExactDecimal(0)
        return AppliedFactor(value: value, unit: rule.unitLabel, variant: variant, series: rule.series)
    }

    /// When this award's lot expires (integer ms, UTC), fixed by the version that judged it;
    /// nil when that version sets no `points_validity` (its points never expire).
    package var lotExpiresAtMs: Int64? {
        rule.header.pointsValidity.map {
            PointsValidity.localMidnightMs(day: $0.expiryLocalDay(eventLocalDay: localDay), timeZone: rule.zone.timeZone)
        }
    }

    /// True when a cap reduced the award.
    package var capped: Bool { pointsAwarded < pointsBeforeCaps }

    /// Every cap window that applied to the event, in `caps` order.
    package var windows: [CapWindow] { rule.caps.isEmpty ? [] : rule.windows(day: localDay) }

    /// The cap windows that reduced it.
    package var capsApplied: [CapWindow] {
        guard bindingMask != 0 else { return [] }
        let all = windows
        return all.indices.filter { bindingMask & (1 << UInt64($0)) != 0 }.map { all[$0] }
    }

    /// What to add to each applicable window's counters: the points awarded and one event,
    /// or nothing when no points are awarded (an event that earns nothing does not use up `max_events`).
    package var consumption: [CapConsumption] {
        guard pointsAwarded > 0 else { return [] }
        return windows.map { CapConsumption(window: $0, points: pointsAwarded, events: 1) }
    }
}

extension Award: Equatable {
    package static func == (a: Award, b: Award) -> Bool {
        a.gramsCO2e == b.gramsCO2e && a.basePoints == b.basePoints && a.pointsBeforeCaps == b.pointsBeforeCaps
            && a.pointsAwarded == b.pointsAwarded && a.multiplier == b.multiplier && a.campaign == b.campaign
            && a.ruleSetProvince == b.ruleSetProvince && a.ruleSetVersion == b.ruleSetVersion && a.methodology == b.methodology
            && a.factor == b.factor && a.windows == b.windows && a.capsApplied == b.capsApplied && a.selfReported == b.selfReported
    }
}

/// The factor an award used, e.g. 46.7 g/km for mode `metro`.
package struct AppliedFactor: Sendable, Equatable {
    package let value: ExactDecimal
    /// `g/km`, `g/trip`, `g/event`, `g/kg`, `g/<unit>` or `g/kWh`.
    package let unit: String
    /// The mode or material, if the factor depends on one.
    package let variant: String?
    /// Grid-factor series for power saving.
    package let series: String?
}

/// Pure evaluation of events against a rule set.
///
/// Rounding, stated once: grams = floor(quantity × factor) in exact decimal arithmetic, where a
/// self-reported event's factor is the activity's factor × `self_reported.factor_multiplier`
/// (an exact product, so still one floor);
/// points = floor(grams × multiplier / grams_per_point); caps then reduce points to what
/// remains in every applicable window. Example: 12 400 m on the metro at 46.7 g/km =
/// 579.08 g → 579 g → 57 points at 10 g/point.
package enum RuleEvaluator {
    /// Clock skew tolerated before an event counts as `in_future`.
    package static let futureToleranceMs: Int64 = 5 * 60 * 1000

    /// Judges one event. `receivedAt` is the server's (corrected) receipt time; `usage` holds the
    /// citizen's counters for the windows of `ruleSet.capWindows(for: event)`. `selfReported`
    /// says whose word the event is: a citizen's device (true, the default: every event is
    /// self-asserted unless a feed partner signed it) or a partner's record (false). Trust keys
    /// depend on it: `sources: partner_only` rejects a self-reported event before any other
    /// rule, and `self_reported.factor_multiplier` lowers its factors.
    package static func evaluate(event: ActionEvent, ruleSet: RuleSet, usage: CapUsage, receivedAt: Date, selfReported: Bool = true) -> Evaluation {
        evaluate(event: event, ruleSet: ruleSet, receivedAt: receivedAt, selfReported: selfReported) { _, id in
            usage.counters.isEmpty ? CapUsage.Counter() : usage.counters[id] ?? CapUsage.Counter()
        }
    }

    /// The same, with the counters already loaded in the order of `ruleSet.capWindows(for: event)`
    /// (missing trailing entries count as unused): no hashing, for the per-event hot path.
    package static func evaluate(
        event: ActionEvent, ruleSet: RuleSet, counters: [CapUsage.Counter], receivedAt: Date, selfReported: Bool = true
    ) -> Evaluation {
        evaluate(event: event, ruleSet: ruleSet, receivedAt: receivedAt, selfReported: selfReported) { i, _ in
            i < counters.count ? counters[i] : CapUsage.Counter()
        }
    }

    @inline(__always)
    private static func evaluate(
        event: ActionEvent, ruleSet: RuleSet, receivedAt: Date, selfReported: Bool, used: (Int, CapWindow.ID) -> CapUsage.Counter
    ) -> Evaluation {
        guard event.province == ruleSet.province else {
            return reject(.wrongProvince, "event is for \(event.province) but the rule set is \(ruleSet.province)")
        }
        // The trust rule, before any other: a self-reported event of a `partner_only` activity earns nothing.
        if selfReported, ruleSet.activity(kind: event.kind)?.sources == .partnerOnly {
            return reject(.selfReportNotAccepted, "\(ruleSet.province) credits \(event.kind) only from partners' verified records, not self-reported")
        }
        let occurredMs = Instant.milliseconds(event.occurredAt)
        guard occurredMs >= ruleSet.effectiveFromMs else {
            return reject(.noRuleset, "\(ruleSet.province) v\(ruleSet.version) takes effect after the event")
        }
        if let untilMs = ruleSet.validUntilMs, occurredMs >= untilMs {
            return reject(
                .rulesetExpired,
                "\(ruleSet.province) v\(ruleSet.version) was approved until \(Instant.format(untilMs, offsetSeconds: ruleSet.zone.offsetSeconds(atMs: untilMs))); no renewed version is in force at the event"
            )
        }
        let receivedMs = Instant.milliseconds(receivedAt)
        let endedMs = event.endedAt.map(Instant.milliseconds)
        if occurredMs > receivedMs + futureToleranceMs || (endedMs ?? 0) > receivedMs + futureToleranceMs {
            return reject(.inFuture, "the event is dated after it was received")
        }
        if receivedMs - occurredMs > Int64(ruleSet.submissionWindowDays) * Instant.msPerDay {
            return reject(.tooOld, "received more than \(ruleSet.submissionWindowDays) days after it happened")
        }
        guard let rule = ruleSet.rule(kind: event.kind) else {
            return reject(.kindNotCovered, "\(ruleSet.province) v\(ruleSet.version) does not credit '\(event.kind)'")
        }
        if let endedMs, endedMs < occurredMs {
            return reject(.invalidData, "ended_at is before occurred_at")
        }
        let grams: Int64
        switch measure(rule, event: event, occurredMs: occurredMs, endedMs: endedMs, selfReported: selfReported) {
        case .success(let g): grams = g
        case .failure(let r): return .rejected(r)
        }

        var campaignSlot = -1
        var multiplier = ExactDecimal(1)
        for j in rule.campaignFromMs.indices where rule.campaignFromMs[j] <= occurredMs && occurredMs < rule.campaignToMs[j] {
            campaignSlot = j
            multiplier = rule.campaigns[j].multiplier
            break
        }
        let basePoints = grams / ruleSet.gramsPerPoint
        guard let pointsBeforeCaps = multiplier.floorOfProduct(grams, dividedBy: ruleSet.gramsPerPoint) else {
            return reject(.invalidData, "the award does not fit in 64 bits")
        }

        var awarded = pointsBeforeCaps
        var binding: UInt64 = 0
        var day: Int64 = 0
        if !rule.caps.isEmpty {
            day = rule.localDay(atMs: occurredMs)
            let month = rule.monthIndex(day: day)
            for i in rule.caps.indices {
                let cap = rule.caps[i]
                let id = CapWindow.ID(kind: cap.kind, period: cap.period, periodIndex: rule.periodIndex(cap.period, day: day, monthIndex: month))
                let used = used(i, id)
                var left = Int64.max
                if let maxPoints = cap.maxPoints { left = max(0, maxPoints - used.points) }
                if let maxEvents = cap.maxEvents, used.events >= maxEvents { left = 0 }
                if left < pointsBeforeCaps { binding |= 1 << UInt64(i) }
                awarded = min(awarded, left)
            }
        }
        let variant: String? =
            rule.variantNames.isEmpty ? nil : rule.method == .perWeight ? event.data.material : event.data.mode
        return .accepted(
            Award(
                gramsCO2e: grams, basePoints: basePoints, pointsBeforeCaps: pointsBeforeCaps, pointsAwarded: awarded,
                rule: rule, campaignSlot: campaignSlot, localDay: day, bindingMask: binding, variant: variant, selfReported: selfReported))
    }

    @inline(__always)
    private static func reject(_ code: RejectionCode, _ message: String) -> Evaluation {
        .rejected(Rejection(code: code, message: message))
    }

    private static func fail(_ code: RejectionCode, _ message: String) -> Result<Int64, Rejection> {
        .failure(Rejection(code: code, message: message))
    }

    /// A required quantity: present, ≥ minimum and ≤ `ActionEvent.maxQuantity`.
    @inline(__always)
    private static func quantity(_ value: Int64?, _ name: StaticString, minimum: Int64 = 1) -> Result<Int64, Rejection> {
        guard let value else { return .failure(Rejection(code: .missingData, message: "data.\(name) is required")) }
        guard value >= minimum, value <= ActionEvent.maxQuantity else {
            return .failure(Rejection(code: .invalidData, message: "data.\(name) \(value) is out of range"))
        }
        return .success(value)
    }

    /// Distance, duration and speed checks for trips.
    @inline(__always)
    private static func check(_ limits: TripLimits, distance: Int64?, occurredMs: Int64, endedMs: Int64?) -> Rejection? {
        if let min = limits.minDistanceMeters, let d = distance, d < min {
            return Rejection(code: .belowMinimum, message: "\(d) m is below the minimum \(limits.minDistanceKm!) km")
        }
        if let max = limits.maxDistanceMeters, let d = distance, d > max {
            return Rejection(code: .aboveMaximum, message: "\(d) m is above the maximum \(limits.maxDistanceKm!) km")
        }
        guard limits.minDurationSeconds != nil || limits.maxSpeedKmh != nil else { return nil }
        guard let endedMs else {
            return Rejection(code: .missingData, message: "ended_at is required for duration and speed checks")
        }
        let durationMs = endedMs - occurredMs
        if let minS = limits.minDurationSeconds, durationMs < minS * 1000 {
            return Rejection(code: .tooShort, message: "the trip lasted less than \(minS) s")
        }
        if let v = limits.maxSpeedKmh, let d = distance {
            // d/1000 km ÷ (ms/3 600 000) h > v  ⇔  d × 3600 × 10^s > mantissa × ms
            if Int128(d) * 3600 * Int128(v.denominator) > Int128(v.mantissa) * Int128(durationMs) {
                return Rejection(code: .implausibleSpeed, message: "\(d) m in \(durationMs / 1000) s is faster than \(v) km/h")
            }
        }
        return nil
    }

    /// Grams CO2e for one event under one activity rule: the single floor of the grams step.
    private static func measure(
        _ rule: ActivityRule, event: ActionEvent, occurredMs: Int64, endedMs: Int64?, selfReported: Bool
    ) -> Result<Int64, Rejection> {
        switch rule.method {
        case .perDistance, .perTrip:
            var distance: Int64?
            if rule.method == .perDistance {
                switch quantity(event.data.distanceMeters, "distance_m") {
                case .success(let d): distance = d
                case .failure(let r): return .failure(r)
                }
            } else if let d = event.data.distanceMeters {
                guard d > 0, d <= ActionEvent.maxQuantity else { return fail(.invalidData, "data.distance_m \(d) is out of range") }
                distance = d
            } else if rule.limits.minDistanceMeters != nil || rule.limits.maxDistanceMeters != nil || rule.limits.maxSpeedKmh != nil {
                return fail(.missingData, "data.distance_m is required for this activity's distance and speed checks")
            }
            let f: ExactDecimal
            if let flat = rule.flatFactor(selfReported: selfReported) {
                f = flat
            } else {
                guard let mode = event.data.mode else { return fail(.missingData, "data.mode is required") }
                guard let v = rule.factor(variant: mode, selfReported: selfReported) else {
                    return fail(.modeNotCovered, "mode '\(mode)' is not credited")
                }
                f = v
            }
            if let r = check(rule.limits, distance: distance, occurredMs: occurredMs, endedMs: endedMs) { return .failure(r) }
            guard rule.method == .perDistance, let distance else { return .success(f.mantissa / f.denominator) }
            guard let g = f.floorOfProduct(distance, dividedBy: 1000) else { return fail(.invalidData, "distance too large") }
            return .success(g)

        case .perEvent:
            let f = rule.flatFactor(selfReported: selfReported)!
            return .success(f.mantissa / f.denominator)

        case .perWeight:
            guard let material = event.data.material else { return fail(.missingData, "data.material is required") }
            guard let f = rule.factor(variant: material, selfReported: selfReported) else {
                return fail(.materialNotCovered, "material '\(material)' is not credited")
            }
            let weight: Int64
            switch quantity(event.data.weightGrams, "weight_g") {
            case .success(let w): weight = w
            case .failure(let r): return .failure(r)
            }
            if let min = rule.minWeightGrams, weight < min { return fail(.belowMinimum, "\(weight) g is below the minimum of \(min) g") }
            if let max = rule.maxWeightGrams, weight > max { return fail(.aboveMaximum, "\(weight) g is above the maximum of \(max) g") }
            guard let g = f.floorOfProduct(weight, dividedBy: 1000) else { return fail(.invalidData, "weight too large") }
            return .success(g)

        case .perCount:
            let count: Int64
            switch quantity(event.data.count, "count") {
            case .success(let c): count = c
            case .failure(let r): return .failure(r)
            }
            if let min = rule.minUnits, count < min { return fail(.belowMinimum, "\(count) is below the minimum of \(min)") }
            if let max = rule.maxUnits, count > max { return fail(.aboveMaximum, "\(count) is above the maximum of \(max)") }
            guard let g = rule.flatFactor(selfReported: selfReported)!.floorOfProduct(count) else { return fail(.invalidData, "count too large") }
            return .success(g)

        case .baselineDelta:
            let consumption: Int64
            switch quantity(event.data.consumptionWh, "consumption_wh", minimum: 0) {
            case .success(let c): consumption = c
            case .failure(let r): return .failure(r)
            }
            let days: Int64
            switch quantity(event.data.days, "days") {
            case .success(let d): days = d
            case .failure(let r): return .failure(r)
            }
            if let max = rule.maxDays, days > max { return fail(.aboveMaximum, "\(days) days is above the maximum of \(max)") }
            let perDay: Int64
            if let fixed = rule.fixedBaselineWhPerDay {
                perDay = fixed
            } else {
                switch quantity(event.data.baselineWh, "baseline_wh", minimum: 0) {
                case .success(let b): perDay = b
                case .failure(let r): return .failure(r)
                }
            }
            let (baseline, overflow) = perDay.multipliedReportingOverflow(by: days)
            guard !overflow else { return fail(.invalidData, "baseline × days too large") }
            let saved = max(0, baseline - consumption)
            guard let g = rule.flatFactor(selfReported: selfReported)!.floorOfProduct(saved, dividedBy: 1000) else {
                return fail(.invalidData, "saving too large")
            }
            return .success(g)
        }
    }
}

/// The published versions of one province's rules.
package struct RuleSetHistory: Sendable {
    /// Sorted by version, highest first.
    package let versions: [RuleSet]

    package init(_ versions: [RuleSet]) {
        self.versions = versions.sorted { $0.version > $1.version }
    }

    /// The highest version whose `effective_from` ≤ `occurredAt`: the one that judges the event,
    /// however late it is synced. nil means `no_ruleset`.
    package func inForce(at occurredAt: Date) -> RuleSet? {
        let ms = Instant.milliseconds(occurredAt)
        return versions.first { $0.effectiveFromMs <= ms }
    }
}

/// Checks that need facts only the database has.
package enum RuleSetValidator {
    /// Refuses a version not above the latest published one, and an `effective_from` before the
    /// earliest instant that cannot change a verdict already given (the caller computes it, e.g.
    /// just after the latest judged event of the province). Issues point at the document's lines.
    package static func checkPublication(_ ruleSet: RuleSet, latestPublishedVersion: Int?, earliestAllowedEffectiveFrom: Date?) -> [ValidationIssue] {
        var issues: [ValidationIssue] = []
        if let latest = latestPublishedVersion, ruleSet.version <= latest {
            issues.append(
                ValidationIssue(
                    path: "version", line: ruleSet.versionPosition?.line, column: ruleSet.versionPosition?.column,
                    code: .versionNotIncreasing,
                    message: "version \(ruleSet.version) is not greater than the latest published version \(latest) of \(ruleSet.province)"))
        }
        if let earliest = earliestAllowedEffectiveFrom {
            let earliestMs = Instant.milliseconds(earliest)
            if ruleSet.effectiveFromMs < earliestMs {
                let offset = ruleSet.zone.offsetSeconds(atMs: earliestMs)
                issues.append(
                    ValidationIssue(
                        path: "effective_from", line: ruleSet.effectiveFromPosition?.line, column: ruleSet.effectiveFromPosition?.column,
                        code: .retroactiveEffectiveFrom,
                        message:
                            "events of \(ruleSet.province) have already been judged under earlier rules; effective_from must be at or after \(Instant.format(earliestMs, offsetSeconds: offset))"
                    ))
            }
        }
        return issues
    }
}
