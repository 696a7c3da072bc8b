import Foundation
import Testing

@testable import TanhuiCore

/// A compact rule set exercising every method; tests edit it by string replacement.
let baseDocument = """
    province: CN-GD
    version: 3
    effective_from: 2027-01-01T00:00:00+08:00
    timezone: Asia/Shanghai
    grams_per_point: 10
    submission_window_days: 30
    methodology: "test methodology"
    activities:
      - kind: transit_trip
        method: per_distance
        modes: { metro: { grams_per_km: 46.7 }, bus: { grams_per_km: 26.9 } }
        min_distance_km: 0.5
        max_distance_km: 200
        max_speed_kmh: 120
      - kind: bike_ride
        method: per_distance
        grams_per_km: 43
        min_distance_km: 0.3
        min_duration_s: 60
        max_speed_kmh: 25
      - kind: bus_ride
        method: per_trip
        modes: { bus: { grams_per_trip: 52.5 } }
        min_distance_km: 0.2
      - kind: waste_sorting
        method: per_event
        grams_per_event: 40
      - kind: recycling
        method: per_weight
        materials: { paper: { grams_per_kg: 900 }, aluminium: { grams_per_kg: 15000 } }
        min_weight_kg: 0.1
        max_weight_kg: 100
      - kind: walking
        method: per_count
        grams_per_unit: 0.02
        unit: steps
        min_units: 100
        max_units: 100000
      - kind: power_saving
        method: baseline_delta
        grid_factor: { grams_per_kwh: 386.9, series: "MEE 2022 South grid" }
        baseline: { type: fixed, wh_per_day: 8000 }
        max_days: 31
      - kind: power_own
        method: baseline_delta
        grid_factor: { grams_per_kwh: 386.9, series: "MEE 2022 South grid" }
        baseline: { type: own_history }
    caps:
      - { kind: bike_ride, period: day, max_points: 100 }
      - { period: day, max_points: 500 }
    campaigns:
      - { name: "Car-free day", kinds: [transit_trip, bike_ride],
          from: 2027-09-22T00:00:00+08:00, to: 2027-09-23T00:00:00+08:00, multiplier: 2 }
    """

func parseOK(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> RuleSet {
    do {
        return try RuleSetParser.parse(text)
    } catch {
        Issue.record("unexpected issues:\n\(error)", sourceLocation: sourceLocation)
        throw error
    }
}

func issues(_ text: String) -> [ValidationIssue] {
    do {
        _ = try RuleSetParser.parse(text)
        return []
    } catch {
        return error.issues
    }
}

/// An RFC 3339 instant for tests (parsed by the production parser, so no float formatting is involved).
func at(_ text: String) -> Date {
    guard case .success(let ms) = Instant.parseRFC3339(text) else { fatalError("bad test timestamp \(text)") }
    return Instant.date(ms)
}

func event(
    _ kind: String, _ when: String = "2027-03-01T08:00:00+08:00", ended: String? = nil, province: String = "CN-GD",
    _ data: EventData = EventData()
) -> ActionEvent {
    ActionEvent(kind: kind, province: province, occurredAt: at(when), endedAt: ended.map(at), data: data)
}
