import Foundation

/// Human-readable change list between two versions, for `rules diff` and review before publishing.
package enum RuleSetDiff {
    /// One line per change, e.g. `transit_trip.modes.metro.grams_per_km: 46.7 → 48.1`,
    /// `activities: added walking (per_count)`, `caps: removed bike_ride per day (max_points 100)`.
    package static func diff(_ old: RuleSet, _ new: RuleSet) -> [String] {
        var lines: [String] = []
        func field(_ name: String, _ a: String, _ b: String) {
            if a != b { lines.append("\(name): \(a) → \(b)") }
        }
        field("province", old.province, new.province)
        field("version", String(old.version), String(new.version))
        field("effective_from", stamp(old), stamp(new))
        field("valid_until", until(old), until(new))
        field("timezone", old.timeZone.identifier, new.timeZone.identifier)
        field("grams_per_point", String(old.gramsPerPoint), String(new.gramsPerPoint))
        field("submission_window_days", String(old.submissionWindowDays), String(new.submissionWindowDays))
        field("methodology", quoted(old.methodology), quoted(new.methodology))
        // A validity change applies to awards judged by the new version only; lots keep their expiry.
        field("points_validity", old.pointsValidity?.description ?? "never expire", new.pointsValidity?.description ?? "never expire")

        let oldKinds = old.activities.map(\.kind)
        let newKinds = new.activities.map(\.kind)
        for a in old.activities where !newKinds.contains(a.kind) {
            lines.append("activities: removed \(a.kind) (\(a.method.name))")
        }
        for a in new.activities where !oldKinds.contains(a.kind) {
            lines.append("activities: added \(a.kind) (\(a.method.name)): " + flatten(a).map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        }
        for a in old.activities {
            guard let b = new.activity(kind: a.kind) else { continue }
            compare(prefix: a.kind, flatten(a), flatten(b), into: &lines)
        }

        func capKey(_ c: Cap) -> String { "\(c.kind ?? "all kinds") per \(c.period.rawValue)" }
        func capLimits(_ c: Cap) -> [(String, String)] {
            [("max_points", c.maxPoints.map(String.init)), ("max_events", c.maxEvents.map(String.init))].compactMap { k, v in v.map { (k, $0) } }
        }
        let oldCaps = Dictionary(old.caps.map { (capKey($0), $0) }, uniquingKeysWith: { a, _ in a })
        let newCaps = Dictionary(new.caps.map { (capKey($0), $0) }, uniquingKeysWith: { a, _ in a })
        for c in old.caps where newCaps[capKey(c)] == nil {
            lines.append("caps: removed \(capKey(c)) (" + capLimits(c).map { "\($0.0) \($0.1)" }.joined(separator: ", ") + ")")
        }
        for c in new.caps where oldCaps[capKey(c)] == nil {
            lines.append("caps: added \(capKey(c)) (" + capLimits(c).map { "\($0.0) \($0.1)" }.joined(separator: ", ") + ")")
        }
        for c in old.caps {
            guard let d = newCaps[capKey(c)] else { continue }
            compare(prefix: "caps[\(capKey(c))]", capLimits(c), capLimits(d), into: &lines)
        }

        func campaignFields(_ c: Campaign, _ r: RuleSet) -> [(String, String)] {
            [
                ("kinds", c.kinds.joined(separator: ", ")), ("from", Instant.format(c.fromMs, offsetSeconds: r.zone.offsetSeconds(atMs: c.fromMs))),
                ("to", Instant.format(c.toMs, offsetSeconds: r.zone.offsetSeconds(atMs: c.toMs))), ("multiplier", c.multiplier.description),
            ]
        }
        let newNames = new.campaigns.map(\.name)
        let oldNames = old.campaigns.map(\.name)
        for c in old.campaigns where !newNames.contains(c.name) { lines.append("campaigns: removed \(quoted(c.name))") }
        for c in new.campaigns where !oldNames.contains(c.name) {
            lines.append("campaigns: added \(quoted(c.name)) (" + campaignFields(c, new).map { "\($0.0) \($0.1)" }.joined(separator: "; ") + ")")
        }
        for c in old.campaigns {
            guard let d = new.campaigns.first(where: { $0.name == c.name }) else { continue }
            compare(prefix: "campaigns[\(quoted(c.name))]", campaignFields(c, old), campaignFields(d, new), into: &lines)
        }
        return lines
    }

    private static func stamp(_ r: RuleSet) -> String {
        Instant.format(r.effectiveFromMs, offsetSeconds: r.zone.offsetSeconds(atMs: r.effectiveFromMs))
    }

    private static func until(_ r: RuleSet) -> String {
        r.validUntilMs.map { Instant.format($0, offsetSeconds: r.zone.offsetSeconds(atMs: $0)) } ?? "none"
    }

    private static func quoted(_ s: String) -> String { "\"\(s)\"" }

    private static func compare(prefix: String, _ a: [(String, String)], _ b: [(String, String)], into lines: inout [String]) {
        let bd = Dictionary(b, uniquingKeysWith: { x, _ in x })
        let ad = Dictionary(a, uniquingKeysWith: { x, _ in x })
        for (k, v) in a {
            if let w = bd[k] {
                if v != w { lines.append("\(prefix).\(k): \(v) → \(w)") }
            } else {
                lines.append("\(prefix).\(k): removed (was \(v))")
            }
        }
        for (k, w) in b where ad[k] == nil { lines.append("\(prefix).\(k): added \(w)") }
    }

    /// An activity as ordered (document-style path, value) pairs, so any two can be compared field by field.
    static func flatten(_ a: Activity) -> [(String, String)] {
        var out: [(String, String)] = [("method", a.method.name)]
        func table(_ t: FactorTable, _ key: String) {
            switch t {
            case .flat(let f): out.append((key, f.description))
            case .byName(let m): for name in m.keys.sorted() { out.append(("modes.\(name).\(key)", m[name]!.description)) }
            }
        }
        func limits(_ l: TripLimits) {
            if let v = l.minDistanceKm { out.append(("min_distance_km", v.description)) }
            if let v = l.maxDistanceKm { out.append(("max_distance_km", v.description)) }
            if let v = l.minDurationSeconds { out.append(("min_duration_s", String(v))) }
            if let v = l.maxSpeedKmh { out.append(("max_speed_kmh", v.description)) }
        }
        switch a.method {
        case .perDistance(let r):
            table(r.gramsPerKm, "grams_per_km")
            limits(r.limits)
        case .perTrip(let r):
            table(r.gramsPerTrip, "grams_per_trip")
            limits(r.limits)
        case .perEvent(let f):
            out.append(("grams_per_event", f.description))
        case .perWeight(let r):
            for name in r.gramsPerKg.keys.sorted() { out.append(("materials.\(name).grams_per_kg", r.gramsPerKg[name]!.description)) }
            if let v = r.minWeightKg { out.append(("min_weight_kg", v.description)) }
            if let v = r.maxWeightKg { out.append(("max_weight_kg", v.description)) }
        case .perCount(let r):
            out.append(("grams_per_unit", r.gramsPerUnit.description))
            out.append(("unit", r.unit))
            if let v = r.minUnits { out.append(("min_units", String(v))) }
            if let v = r.maxUnits { out.append(("max_units", String(v))) }
        case .baselineDelta(let r):
            out.append(("grid_factor.grams_per_kwh", r.gramsPerKwh.description))
            out.append(("grid_factor.series", quoted(r.gridSeries)))
            switch r.baseline {
            case .fixed(let wh):
                out.append(("baseline.type", "fixed"))
                out.append(("baseline.wh_per_day", String(wh)))
            case .ownHistory:
                out.append(("baseline.type", "own_history"))
            }
            if let v = r.maxDays { out.append(("max_days", String(v))) }
        }
        if a.acknowledgeHighFactor { out.append(("acknowledge_high_factor", "true")) }
        if let s = a.source { out.append(("source", quoted(s))) }
        if a.sources != .any { out.append(("sources", a.sources.rawValue)) }
        if let terms = a.selfReported { out.append(("self_reported.factor_multiplier", terms.factorMultiplier.description)) }
        return out
    }
}
