package import Foundation

/// One published version of a province's carbon-inclusion rules, as parsed and validated.
///
/// Obtain one from `RuleSetParser.parse`; the parser guarantees every invariant the evaluator
/// relies on (positive factors, known kinds in caps and campaigns, non-overlapping campaigns…).
/// The stored form is the operator's original document bytes, not this value.
package struct RuleSet: Sendable {
    /// ISO 3166-2:CN code, e.g. `CN-GD`.
    package let province: String
    /// Strictly increasing per province.
    package let version: Int
    /// First instant at which this version applies (events are judged by the version in force at `occurred_at`).
    package let effectiveFrom: Date
    /// When the version's approval ends (a scene approved until a date, renewed by a later
    /// version): events at or after it that this version would judge are `ruleset_expired`.
    package let validUntil: Date?
    /// Zone that defines the day/week/month boundaries of caps.
    package let timeZone: TimeZone
    /// Grams CO2e per point; points = floor(grams × multiplier / gramsPerPoint).
    package let gramsPerPoint: Int64
    /// Events older than this many days when received are not credited (`too_old`).
    package let submissionWindowDays: Int
    /// Free text stored with every award (methodology name and version).
    package let methodology: String
    package let activities: [Activity]
    package let caps: [Cap]
    package let campaigns: [Campaign]
    /// How long each award's points stay spendable (`points_validity`); nil: they never expire.
    package let pointsValidity: PointsValidity?

    // Compiled lookups, derived from the fields above at parse time.
    let effectiveFromMs: Int64
    let validUntilMs: Int64?
    let activityIndex: [String: Int]
    /// Per-activity lookups for the evaluator, in `activities` order.
    let rules: [ActivityRule]
    let zone: ZoneOffsets
    let versionPosition: SourcePosition?
    let effectiveFromPosition: SourcePosition?

    init(
        province: String, version: Int, effectiveFromMs: Int64, timeZone: TimeZone, gramsPerPoint: Int64,
        submissionWindowDays: Int, methodology: String, activities: [Activity], caps: [Cap], campaigns: [Campaign],
        pointsValidity: PointsValidity? = nil, versionPosition: SourcePosition?, effectiveFromPosition: SourcePosition?, validUntilMs: Int64? = nil
    ) {
        self.pointsValidity = pointsValidity
        self.province = province
        self.version = version
        self.effectiveFromMs = effectiveFromMs
        self.effectiveFrom = Instant.date(effectiveFromMs)
        self.validUntilMs = validUntilMs
        self.validUntil = validUntilMs.map(Instant.date)
        self.timeZone = timeZone
        self.gramsPerPoint = gramsPerPoint
        self.submissionWindowDays = submissionWindowDays
        self.methodology = methodology
        self.activities = activities
        self.caps = caps
        self.campaigns = campaigns
        self.versionPosition = versionPosition
        self.effectiveFromPosition = effectiveFromPosition
        var index: [String: Int] = [:]
        for (i, a) in activities.enumerated() { index[a.kind] = i }
        activityIndex = index
        let zone = ZoneOffsets(timeZone: timeZone, fromMs: effectiveFromMs)
        self.zone = zone
        let header = RuleSetHeader(province: province, version: version, methodology: methodology, pointsValidity: pointsValidity)
        rules = activities.map { a in
            ActivityRule(
                activity: a, header: header, zone: zone,
                capIndices: caps.indices.filter { caps[$0].kind == nil || caps[$0].kind == a.kind }, caps: caps,
                campaigns: campaigns.filter { $0.kinds.contains(a.kind) }.sorted { $0.fromMs < $1.fromMs })
        }
    }

    /// The activity rule for a kind, if this rule set covers it.
    package func activity(kind: String) -> Activity? {
        rule(kind: kind)?.activity
    }

    /// Linear scan for the usual handful of kinds: comparing small strings is cheaper than hashing.
    @inline(__always)
    func rule(kind: String) -> ActivityRule? {
        if rules.count <= 16 {
            for r in rules where r.kind == kind { return r }
            return nil
        }
        return activityIndex[kind].map { rules[$0] }
    }
}

/// What every award of a rule set repeats, shared by reference.
final class RuleSetHeader: Sendable {
    let province: String
    let version: Int
    let methodology: String
    let pointsValidity: PointsValidity?

    init(province: String, version: Int, methodology: String, pointsValidity: PointsValidity?) {
        self.province = province
        self.version = version
        self.methodology = methodology
        self.pointsValidity = pointsValidity
    }
}

/// An activity with everything the evaluator needs for it, shared by reference so evaluating
/// an event copies one pointer instead of tables, and an `Award` can explain itself lazily.
/// Immutable (only `let`s of Sendable types), hence Sendable.
final class ActivityRule: Sendable {
    let activity: Activity
    let kind: String
    let header: RuleSetHeader
    let zone: ZoneOffsets
    /// Indices into `RuleSet.caps` that apply (the kind's own and the all-kinds caps), and those caps, in document order.
    let capIndices: [Int]
    let caps: [Cap]
    let hasMonthCap: Bool
    /// Campaigns including this kind, sorted by start, with their windows as plain integers.
    let campaigns: [Campaign]
    let campaignFromMs: [Int64]
    let campaignToMs: [Int64]
    /// Mode or material names and factors, for a linear scan.
    let variantNames: [String]
    let variantFactors: [ExactDecimal]
    /// The flat factor, when the method has one.
    let flatFactor: ExactDecimal?
    /// The same factors for self-reported events: each × `self_reported.factor_multiplier`
    /// (exact; the parser refuses a product that would need rounding), or the factors above.
    let selfReportedVariantFactors: [ExactDecimal]
    let selfReportedFlatFactor: ExactDecimal?
    let unitLabel: String
    let series: String?
    // The method's parameters as plain values, so the hot path never copies the enum payloads
    // (their dictionaries and strings would cost a retain/release each).
    let method: MethodTag
    let limits: TripLimits
    let minWeightGrams: Int64?
    let maxWeightGrams: Int64?
    let minUnits: Int64?
    let maxUnits: Int64?
    let maxDays: Int64?
    /// nil for an `own_history` baseline.
    let fixedBaselineWhPerDay: Int64?

    enum MethodTag: UInt8 {
        case perDistance, perTrip, perEvent, perWeight, perCount, baselineDelta
    }

    init(activity: Activity, header: RuleSetHeader, zone: ZoneOffsets, capIndices: [Int], caps: [Cap], campaigns: [Campaign]) {
        self.activity = activity
        kind = activity.kind
        self.header = header
        self.zone = zone
        self.capIndices = capIndices
        self.caps = capIndices.map { caps[$0] }
        hasMonthCap = self.caps.contains { $0.period == .month }
        self.campaigns = campaigns
        campaignFromMs = campaigns.map(\.fromMs)
        campaignToMs = campaigns.map(\.toMs)
        var table: [String: ExactDecimal] = [:]
        var flat: ExactDecimal?
        var series: String?
        var limits = TripLimits(minDistanceKm: nil, maxDistanceKm: nil, minDurationSeconds: nil, maxSpeedKmh: nil)
        var minWeight: Int64?
        var maxWeight: Int64?
        var minUnits: Int64?
        var maxUnits: Int64?
        var maxDays: Int64?
        var fixed: Int64?
        switch activity.method {
        case .perDistance(let r):
            method = .perDistance
            limits = r.limits
            unitLabel = "g/km"
            switch r.gramsPerKm {
            case .flat(let f): flat = f
            case .byName(let t): table = t
            }
        case .perTrip(let r):
            method = .perTrip
            limits = r.limits
            unitLabel = "g/trip"
            switch r.gramsPerTrip {
            case .flat(let f): flat = f
            case .byName(let t): table = t
            }
        case .perEvent(let f):
            method = .perEvent
            unitLabel = "g/event"
            flat = f
        case .perWeight(let r):
            method = .perWeight
            unitLabel = "g/kg"
            table = r.gramsPerKg
            minWeight = r.minWeightGrams
            maxWeight = r.maxWeightGrams
        case .perCount(let r):
            method = .perCount
            unitLabel = "g/\(r.unit)"
            flat = r.gramsPerUnit
            minUnits = r.minUnits
            maxUnits = r.maxUnits
        case .baselineDelta(let r):
            method = .baselineDelta
            unitLabel = "g/kWh"
            flat = r.gramsPerKwh
            series = r.gridSeries
            maxDays = r.maxDays
            if case .fixed(let wh) = r.baseline { fixed = wh }
        }
        self.limits = limits
        minWeightGrams = minWeight
        maxWeightGrams = maxWeight
        self.minUnits = minUnits
        self.maxUnits = maxUnits
        self.maxDays = maxDays
        fixedBaselineWhPerDay = fixed
        let names = table.keys.sorted()
        variantNames = names
        let factors = names.map { table[$0]! }
        variantFactors = factors
        flatFactor = flat
        if let multiplier = activity.selfReported?.factorMultiplier {
            // The parser guarantees every product is exact; 0 (credit nothing) is the safe fallback.
            selfReportedVariantFactors = factors.map { $0.exactProduct(multiplier) ?? ExactDecimal(0) }
            selfReportedFlatFactor = flat.map { $0.exactProduct(multiplier) ?? ExactDecimal(0) }
        } else {
            selfReportedVariantFactors = factors
            selfReportedFlatFactor = flat
        }
        self.series = series
    }

    @inline(__always)
    func factor(variant: String, selfReported: Bool) -> ExactDecimal? {
        for i in variantNames.indices where variantNames[i] == variant {
            return selfReported ? selfReportedVariantFactors[i] : variantFactors[i]
        }
        return nil
    }

    @inline(__always)
    func flatFactor(selfReported: Bool) -> ExactDecimal? {
        selfReported ? selfReportedFlatFactor : flatFactor
    }

    /// Local calendar day (days since 1970-01-01 in the rule set's zone) of an instant.
    @inline(__always)
    func localDay(atMs ms: Int64) -> Int64 {
        Instant.floorDiv(ms + Int64(zone.offsetSeconds(atMs: ms)) * 1000, Instant.msPerDay)
    }

    /// The period index of cap `i` for a local day.
    @inline(__always)
    func periodIndex(_ period: CapPeriod, day: Int64, monthIndex: Int64) -> Int64 {
        switch period {
        case .day: day
        case .week: Instant.floorDiv(day + 3, 7)
        case .month: monthIndex
        }
    }

    @inline(__always)
    func monthIndex(day: Int64) -> Int64 {
        guard hasMonthCap else { return 0 }
        let (y, m, _) = Instant.civil(fromDays: day)
        return y * 12 + m - 1
    }

    func windows(day: Int64) -> [CapWindow] {
        let month = monthIndex(day: day)
        return caps.indices.map { i in
            let cap = caps[i]
            return CapWindow(
                capIndex: capIndices[i],
                id: .init(kind: cap.kind, period: cap.period, periodIndex: periodIndex(cap.period, day: day, monthIndex: month)),
                maxPoints: cap.maxPoints, maxEvents: cap.maxEvents)
        }
    }
}

extension RuleSet: Equatable {
    /// Equal when the rules are equal; source positions and derived lookups are ignored.
    package static func == (a: RuleSet, b: RuleSet) -> Bool {
        a.province == b.province && a.version == b.version && a.effectiveFromMs == b.effectiveFromMs
            && a.validUntilMs == b.validUntilMs
            && a.timeZone.identifier == b.timeZone.identifier && a.gramsPerPoint == b.gramsPerPoint
            && a.submissionWindowDays == b.submissionWindowDays && a.methodology == b.methodology
            && a.activities == b.activities && a.caps == b.caps && a.campaigns == b.campaigns
            && a.pointsValidity == b.pointsValidity
    }
}

/// 1-based position of a value in the source document.
struct SourcePosition: Sendable, Hashable {
    let line: Int
    let column: Int
}

/// UTC offsets of the rule set's zone without per-event Foundation calls.
///
/// All province zones in use (Asia/Shanghai, Asia/Urumqi, Asia/Hong_Kong, …) have had a fixed
/// offset for decades; when tzdata knows no transition after `effective_from`, the offset is
/// cached and applied with integer arithmetic. Otherwise (or for instants before that) it asks
/// `TimeZone`.
struct ZoneOffsets: Sendable {
    let timeZone: TimeZone
    let fixedOffsetSeconds: Int?
    let fixedFromMs: Int64

    init(timeZone: TimeZone, fromMs: Int64) {
        self.timeZone = timeZone
        let from = Instant.date(fromMs)
        fixedOffsetSeconds =
            timeZone.nextDaylightSavingTimeTransition(after: from) == nil ? timeZone.secondsFromGMT(for: from) : nil
        fixedFromMs = fromMs
    }

    @inline(__always)
    func offsetSeconds(atMs ms: Int64) -> Int {
        if let fixedOffsetSeconds, ms >= fixedFromMs { return fixedOffsetSeconds }
        return timeZone.secondsFromGMT(for: Instant.date(ms))
    }
}

/// Trust in an activity's events: `partner_only` credits only a feed partner's signed records;
/// a citizen's self-reported events of that kind are rejected `self_report_not_accepted`.
package enum ActivitySources: String, Sendable, Equatable, CaseIterable {
    case any
    case partnerOnly = "partner_only"
}

/// Terms for self-reported events (a citizen's device) of an activity whose partner-sourced
/// records are evidenced: Hubei pays about half for a self check-in (52 points) of what an
/// evidenced bus trip earns (105).
package struct SelfReportedTerms: Sendable, Equatable {
    /// 0 < m ≤ 1: every grams factor of the activity is multiplied by it, exactly, for
    /// self-reported events; grams (and points from them) then follow the usual single floor.
    package let factorMultiplier: ExactDecimal

    package init(factorMultiplier: ExactDecimal) {
        self.factorMultiplier = factorMultiplier
    }
}

/// How one kind of green action earns grams CO2e.
package struct Activity: Sendable, Equatable {
    /// Identifier such as `transit_trip`; events name it in `kind`.
    package let kind: String
    package let method: Method
    /// Set when the operator confirmed a factor above its ceiling on purpose.
    package let acknowledgeHighFactor: Bool
    /// Optional free text naming the factor's source.
    package let source: String?
    /// Whose records of this kind are credited (trust key for partner feeds).
    package var sources: ActivitySources = .any
    /// Separate (lower) factors for self-reported events; nil: devices and partners earn alike.
    package var selfReported: SelfReportedTerms?

    package enum Method: Sendable, Equatable {
        /// grams = floor(distanceMeters × gramsPerKm / 1000).
        case perDistance(PerDistance)
        /// grams = floor(gramsPerTrip): a flat amount per ride.
        case perTrip(PerTrip)
        /// grams = floor(gramsPerEvent): e.g. a waste-sorting check-in.
        case perEvent(gramsPerEvent: ExactDecimal)
        /// grams = floor(weightGrams × gramsPerKg(material) / 1000).
        case perWeight(PerWeight)
        /// grams = floor(count × gramsPerUnit), e.g. steps.
        case perCount(PerCount)
        /// grams = floor(max(0, baselineWhPerDay × days − consumptionWh) × gramsPerKwh / 1000).
        case baselineDelta(BaselineDelta)

        /// The method's name in documents, e.g. `per_distance`.
        package var name: String {
            switch self {
            case .perDistance: "per_distance"
            case .perTrip: "per_trip"
            case .perEvent: "per_event"
            case .perWeight: "per_weight"
            case .perCount: "per_count"
            case .baselineDelta: "baseline_delta"
            }
        }
    }
}

/// One factor for all events, or one per named variant (transit mode, recycled material).
package enum FactorTable: Sendable, Equatable {
    case flat(ExactDecimal)
    case byName([String: ExactDecimal])
}

/// Plausibility limits shared by per-distance and per-trip rules.
package struct TripLimits: Sendable, Equatable {
    package let minDistanceKm: ExactDecimal?
    package let maxDistanceKm: ExactDecimal?
    package let minDurationSeconds: Int64?
    package let maxSpeedKmh: ExactDecimal?
    /// Thresholds in metres: an integer distance d is below the minimum iff d < ceil(min × 1000).
    let minDistanceMeters: Int64?
    let maxDistanceMeters: Int64?

    package init(minDistanceKm: ExactDecimal?, maxDistanceKm: ExactDecimal?, minDurationSeconds: Int64?, maxSpeedKmh: ExactDecimal?) {
        self.minDistanceKm = minDistanceKm
        self.maxDistanceKm = maxDistanceKm
        self.minDurationSeconds = minDurationSeconds
        self.maxSpeedKmh = maxSpeedKmh
        minDistanceMeters = minDistanceKm?.ceilTimes(1000)
        maxDistanceMeters = maxDistanceKm?.floorTimes(1000)
    }

    var isEmpty: Bool { minDistanceKm == nil && maxDistanceKm == nil && minDurationSeconds == nil && maxSpeedKmh == nil }
}

package struct PerDistance: Sendable, Equatable {
    /// Grams CO2e saved per km, flat or by `mode`.
    package let gramsPerKm: FactorTable
    package let limits: TripLimits
}

package struct PerTrip: Sendable, Equatable {
    /// Grams CO2e per ride, flat or by `mode`.
    package let gramsPerTrip: FactorTable
    package let limits: TripLimits
}

package struct PerWeight: Sendable, Equatable {
    /// Grams CO2e saved per kg, by `material`.
    package let gramsPerKg: [String: ExactDecimal]
    package let minWeightKg: ExactDecimal?
    package let maxWeightKg: ExactDecimal?
    let minWeightGrams: Int64?
    let maxWeightGrams: Int64?

    init(gramsPerKg: [String: ExactDecimal], minWeightKg: ExactDecimal?, maxWeightKg: ExactDecimal?) {
        self.gramsPerKg = gramsPerKg
        self.minWeightKg = minWeightKg
        self.maxWeightKg = maxWeightKg
        minWeightGrams = minWeightKg?.ceilTimes(1000)
        maxWeightGrams = maxWeightKg?.floorTimes(1000)
    }
}

package struct PerCount: Sendable, Equatable {
    package let gramsPerUnit: ExactDecimal
    /// What is counted, e.g. `steps` (documentation and display).
    package let unit: String
    package let minUnits: Int64?
    package let maxUnits: Int64?
}

package struct BaselineDelta: Sendable, Equatable {
    package let gramsPerKwh: ExactDecimal
    /// Which published grid-factor series and year, e.g. "MEE 2022 South grid".
    package let gridSeries: String
    package let baseline: Baseline
    /// Longest billing period one event may cover, if limited.
    package let maxDays: Int64?

    package enum Baseline: Sendable, Equatable {
        /// A regional per-household-day figure in Wh.
        case fixed(whPerDay: Int64)
        /// The event carries the household's own earlier daily average (`baselineWh`), as Shenzhen does.
        case ownHistory
    }
}

/// A points ceiling per citizen, per province, per calendar period in the rule set's zone.
package struct Cap: Sendable, Equatable {
    /// The kind it limits; nil limits all kinds together.
    package let kind: String?
    package let period: CapPeriod
    package let maxPoints: Int64?
    /// At most this many events earn points in the period (e.g. Bologna's 4 trips a day).
    package let maxEvents: Int64?
}

package enum CapPeriod: String, Sendable, Equatable, CaseIterable {
    case day, week, month
}

/// A time-boxed points multiplier for some kinds, applied when `from ≤ occurred_at < to`.
package struct Campaign: Sendable, Equatable {
    package let name: String
    package let kinds: [String]
    package let from: Date
    package let to: Date
    /// ≥ 1, exact (e.g. 2 or 1.5).
    package let multiplier: ExactDecimal
    let fromMs: Int64
    let toMs: Int64

    init(name: String, kinds: [String], fromMs: Int64, toMs: Int64, multiplier: ExactDecimal) {
        self.name = name
        self.kinds = kinds
        self.fromMs = fromMs
        self.toMs = toMs
        self.from = Instant.date(fromMs)
        self.to = Instant.date(toMs)
        self.multiplier = multiplier
    }
}
