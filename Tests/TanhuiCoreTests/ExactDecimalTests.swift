import Testing

@testable import TanhuiCore

@Suite struct ExactDecimalTests {
    @Test(arguments: [
        ("46.7", Int64(467), 1), ("386.9", 3869, 1), ("0.02", 2, 2), ("43", 43, 0), ("0", 0, 0),
        ("46.70", 467, 1), ("0.5000000000", 5, 1), ("0.000000001", 1, 9), ("100", 100, 0),
    ])
    func parsesExactly(text: String, mantissa: Int64, scale: Int) throws {
        let d = try ExactDecimal(parsing: text)
        #expect(d.mantissa == mantissa)
        #expect(d.scale == scale)
    }

    @Test(arguments: [
        ("1e3", ExactDecimal.ParseError.exponent), ("4.67E1", .exponent), ("NaN", .notANumber), (".nan", .notANumber),
        ("inf", .notANumber), ("-1", .negative), ("-0.5", .negative), ("0.0000000001", .tooManyFractionDigits),
        ("", .empty), (".5", .malformed), ("5.", .malformed), ("1.2.3", .malformed), ("+5", .malformed),
        ("007", .malformed), ("1_000", .notANumber), ("12345678901234567890", .tooLarge), (" 1", .notANumber),
    ])
    func rejects(text: String, error: ExactDecimal.ParseError) {
        #expect(throws: error) { try ExactDecimal(parsing: text) }
    }

    @Test func descriptionRoundTrips() throws {
        for text in ["46.7", "0.02", "43", "0.000000001", "386.9", "1.5", "15000"] {
            #expect(try ExactDecimal(parsing: text).description == text)
        }
        #expect(ExactDecimal(mantissa: 4670, scale: 2).description == "46.7")
    }

    @Test func comparesByValue() throws {
        #expect(try ExactDecimal(parsing: "46.70") == ExactDecimal(parsing: "46.7"))
        #expect(try ExactDecimal(parsing: "0.3") < ExactDecimal(parsing: "0.31"))
        #expect(try ExactDecimal(parsing: "1000.5") > ExactDecimal(1000))
    }

    @Test func floorOfProductIsExact() throws {
        let metro = try ExactDecimal(parsing: "46.7")
        #expect(metro.floorOfProduct(12_400, dividedBy: 1000) == 579)  // 579.08 g
        #expect(metro.floorOfProduct(1000, dividedBy: 1000) == 46)
        #expect(metro.floorOfProduct(0, dividedBy: 1000) == 0)
        // 0.1 + 0.2 style traps do not exist: 3 × 0.1 is exactly 0.3.
        #expect(try ExactDecimal(parsing: "0.1").floorOfProduct(30) == 3)
        // A product overflowing Int64 falls back to 128-bit arithmetic.
        let big = try ExactDecimal(parsing: "19999.999999999")
        #expect(big.floorOfProduct(1_000_000_000_000, dividedBy: 1000) == 19_999_999_999_999)
        #expect(try ExactDecimal(parsing: "999999999999999999").floorOfProduct(1_000_000_000_000) == nil)
    }

    @Test func thresholds() throws {
        let d = try ExactDecimal(parsing: "0.3005")
        #expect(d.ceilTimes(1000) == 301)
        #expect(d.floorTimes(1000) == 300)
        #expect(try ExactDecimal(parsing: "0.5").ceilTimes(1000) == 500)
    }
}
