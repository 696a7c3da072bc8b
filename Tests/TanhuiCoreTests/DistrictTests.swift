import Foundation
import Testing

@testable import TanhuiCore

@Suite struct DistrictTests {
    @Test(arguments: [("310104", "CN-SH"), ("440305", "CN-GD"), ("110101", "CN-BJ"), ("500101", "CN-CQ"), ("650102", "CN-XJ")])
    func countiesOfTheirProvinceAreAccepted(code: String, province: String) {
        #expect(District.problem(code, province: province) == nil)
    }

    @Test(arguments: [
        ("310104", "CN-GD", "start with 44"), ("440300", "CN-GD", "prefecture-level"), ("440000", "CN-GD", "prefecture-level"),
        ("4403051", "CN-GD", "six-digit"), ("44030", "CN-GD", "six-digit"), ("44O305", "CN-GD", "six-digit"), ("４４０３０５", "CN-GD", "six-digit"),
        ("810001", "CN-HK", "no county codes"), ("", "CN-GD", "six-digit"),
    ])
    func othersAreRefusedWithAReason(code: String, province: String, reason: String) {
        let problem = District.problem(code, province: province)
        #expect(problem?.contains(reason) == true, "\(code) \(province): \(problem ?? "accepted")")
    }

    @Test("every province has a GB/T 2260 prefix, and no two share one")
    func prefixesCoverTheProvinces() {
        #expect(Set(District.provincePrefix.keys) == Set(Province.names.keys))
        #expect(Set(District.provincePrefix.values).count == Province.names.count)
    }

    @Test("data.district is decoded, validated against the event's province, and part of the event")
    func wireDistrict() throws {
        func decode(_ district: Any) -> Result<EventWire, EventInvalid> {
            EventWire.decode(
                [
                    "id": UUID().uuidString, "kind": "waste_sorting", "province": "CN-GD", "occurred_at": "2027-03-01T08:00:00+08:00",
                    "data": ["district": district],
                ] as [String: Any])
        }
        #expect(try decode("440305").get().event.data.district == "440305")
        guard case .failure(let invalid) = decode("310104") else {
            Issue.record("a Shanghai district in a Guangdong event must be invalid")
            return
        }
        #expect(invalid.issues.map(\.path) == ["data.district"])
        guard case .failure(let wrongType) = decode(440305) else {
            Issue.record("a number is not a district")
            return
        }
        #expect(wrongType.issues.map(\.path) == ["data.district"])
    }
}
