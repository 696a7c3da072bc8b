package import Foundation

/// A citizen's green action as submitted for crediting.
package struct ActionEvent: Sendable, Equatable {
    package var id: UUID
    /// Activity kind, e.g. `transit_trip`; must match a kind of the province's rule set.
    package var kind: String
    /// ISO 3166-2:CN code of the province whose programme credits it.
    package var province: String
    /// When the action happened (or started); selects the rule-set version and the cap periods.
    package var occurredAt: Date
    /// When a trip ended; needed for duration and speed checks.
    package var endedAt: Date?
    package var data: EventData

    package init(id: UUID = UUID(), kind: String, province: String, occurredAt: Date, endedAt: Date? = nil, data: EventData = EventData()) {
        self.id = id
        self.kind = kind
        self.province = province
        self.occurredAt = occurredAt
        self.endedAt = endedAt
        self.data = data
    }

    /// Upper bound on every quantity, far above any real action, so products with factors stay exact in 128 bits.
    package static let maxQuantity: Int64 = 1_000_000_000_000

    /// Checks that do not need a rule set: quantities positive and bounded, `ended_at` not before `occurred_at`.
    /// Paths use the wire names (`data.distance_m`), and every issue has code `invalid`.
    package func validateShape() -> [ValidationIssue] {
        var issues: [ValidationIssue] = []
        func bad(_ path: String, _ message: String) {
            issues.append(ValidationIssue(path: path, code: .invalid, message: message))
        }
        if kind.isEmpty { bad("kind", "kind must not be empty") }
        if province.isEmpty { bad("province", "province must not be empty") }
        if let endedAt, endedAt < occurredAt { bad("ended_at", "ended_at is before occurred_at") }
        func positive(_ value: Int64?, _ path: String, allowZero: Bool = false) {
            guard let value else { return }
            if value < 0 || (!allowZero && value == 0) {
                bad(path, "\(path) must be \(allowZero ? "zero or more" : "positive"), found \(value)")
            } else if value > Self.maxQuantity {
                bad(path, "\(path) \(value) is above the limit \(Self.maxQuantity)")
            }
        }
        positive(data.distanceMeters, "data.distance_m")
        positive(data.weightGrams, "data.weight_g")
        positive(data.count, "data.count")
        positive(data.consumptionWh, "data.consumption_wh", allowZero: true)
        positive(data.baselineWh, "data.baseline_wh", allowZero: true)
        if let days = data.days, days < 1 || days > 3660 { bad("data.days", "data.days must be 1…3660, found \(days)") }
        if data.mode?.isEmpty == true { bad("data.mode", "data.mode must not be empty") }
        if data.material?.isEmpty == true { bad("data.material", "data.material must not be empty") }
        if let district = data.district, !province.isEmpty, let issue = District.validate(district, province: province) {
            issues.append(issue)
        }
        return issues
    }
}

/// Method-specific event quantities, all integers in base units. Which are needed depends on the method.
package struct EventData: Sendable, Equatable {
    /// Transit mode for `modes` tables (wire name `mode`).
    package var mode: String?
    /// Recycled material for `per_weight` (wire name `material`).
    package var material: String?
    /// Trip distance in metres (`distance_m`).
    package var distanceMeters: Int64?
    /// Weight in grams (`weight_g`).
    package var weightGrams: Int64?
    /// Units counted, e.g. steps (`count`).
    package var count: Int64?
    /// Electricity used over the period, Wh (`consumption_wh`).
    package var consumptionWh: Int64?
    /// The household's own daily baseline, Wh per day (`baseline_wh`), for `own_history` baselines.
    package var baselineWh: Int64?
    /// Days covered by a consumption reading (`days`).
    package var days: Int64?
    /// GB/T 2260 county code where the action happened (`district`), for reports only;
    /// checked against the province by `District.validate`.
    package var district: String?

    package init(
        mode: String? = nil, material: String? = nil, distanceMeters: Int64? = nil, weightGrams: Int64? = nil, count: Int64? = nil,
        consumptionWh: Int64? = nil, baselineWh: Int64? = nil, days: Int64? = nil, district: String? = nil
    ) {
        self.mode = mode
        self.material = material
        self.distanceMeters = distanceMeters
        self.weightGrams = weightGrams
        self.count = count
        self.consumptionWh = consumptionWh
        self.baselineWh = baselineWh
        self.days = days
        self.district = district
    }
}
