import Foundation
import Testing

@testable import TanhuiCore

@Suite struct RuleSetDiffTests {
    @Test func listsFactorCapCampaignAndHeaderChanges() throws {
        let old = try parseOK(baseDocument)
        let newDoc =
            baseDocument
            .replacingOccurrences(of: "version: 3", with: "version: 4")
            .replacingOccurrences(of: "grams_per_point: 10", with: "grams_per_point: 20")
            .replacingOccurrences(of: "submission_window_days: 30", with: "submission_window_days: 7")
            .replacingOccurrences(of: "methodology: \"test methodology\"", with: "methodology: \"v2\"")
            .replacingOccurrences(of: "metro: { grams_per_km: 46.7 }", with: "metro: { grams_per_km: 48.1 }, tram: { grams_per_km: 30 }")
            .replacingOccurrences(of: "    min_distance_km: 0.3\n", with: "")
            .replacingOccurrences(of: "  - kind: waste_sorting\n    method: per_event\n    grams_per_event: 40\n", with: "")
            .replacingOccurrences(of: "caps:\n", with: "caps:\n  - { kind: walking, period: day, max_points: 29 }\n")
            .replacingOccurrences(of: "- { period: day, max_points: 500 }", with: "- { period: day, max_points: 600, max_events: 20 }")
            .replacingOccurrences(of: "multiplier: 2 }", with: "multiplier: 1.5 }")
            + "\n  - { name: \"Green week\", kinds: [bike_ride], from: 2027-10-01T00:00:00+08:00, to: 2027-10-08T00:00:00+08:00, multiplier: 1.2 }\n"
        let new = try parseOK(newDoc)
        let lines = RuleSetDiff.diff(old, new)
        let expected = [
            "version: 3 → 4",
            "grams_per_point: 10 → 20",
            "submission_window_days: 30 → 7",
            "methodology: \"test methodology\" → \"v2\"",
            "activities: removed waste_sorting (per_event)",
            "transit_trip.modes.metro.grams_per_km: 46.7 → 48.1",
            "transit_trip.modes.tram.grams_per_km: added 30",
            "bike_ride.min_distance_km: removed (was 0.3)",
            "caps: added walking per day (max_points 29)",
            "caps[all kinds per day].max_points: 500 → 600",
            "caps[all kinds per day].max_events: added 20",
            "campaigns: added \"Green week\" (kinds bike_ride; from 2027-10-01T00:00:00+08:00; to 2027-10-08T00:00:00+08:00; multiplier 1.2)",
            "campaigns[\"Car-free day\"].multiplier: 2 → 1.5",
        ]
        #expect(lines == expected, "\(lines.joined(separator: "\n"))")
        #expect(RuleSetDiff.diff(old, old).isEmpty)
        let back = RuleSetDiff.diff(new, old)
        #expect(back.contains("activities: added waste_sorting (per_event): method per_event, grams_per_event 40"))
        #expect(back.contains("caps: removed walking per day (max_points 29)"))
        #expect(back.contains("campaigns: removed \"Green week\""))
    }
}
