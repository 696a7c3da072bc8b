import Foundation
import Testing

@testable import TanhuiCore

@Suite("JSONValue: strict JSON straight from bytes")
struct JSONValueTests {
    static func parse(_ text: String) throws -> JSONValue { try JSONValue.parse(Array(text.utf8)) }

    @Test("objects, arrays, literals, numbers as written, escapes and surrogate pairs")
    func parsesDocuments() throws {
        let value = try Self.parse(#" {"a": [1, -0.5, 2e3, true, false, null], "s": "q\"\\\/\n\u00e9\ud83d\ude00", "e": {}} "#)
        #expect(value["a"] == .array([.number("1"), .number("-0.5"), .number("2e3"), .bool(true), .bool(false), .null]))
        #expect(value["s"] == .string("q\"\\/\né😀"))
        #expect(value["e"] == .object([:]))
        #expect(try Self.parse(#""plain ünïcode""#) == .string("plain ünïcode"))
    }

    @Test(
        "refuses what JSON does not allow",
        arguments: [
            "", "{", "[1,]", "{\"a\":1,}", "NaN", "Infinity", "-", "01", "1.", ".5", "1e", "{\"a\" 1}", "[1 2]", "\"\u{01}\"",
            "\"\\ud83d\"", "\"\\ude00\"", "\"\\x\"", "\"unterminated", "{} {}", "tru", "nul", "'a'", "[1]//c",
        ])
    func refuses(text: String) {
        #expect(throws: JSONValue.ParseError.self) { try Self.parse(text) }
    }

    @Test("invalid UTF-8 and nesting beyond the bound are refused")
    func boundsAndEncoding() throws {
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse([0x22, 0xff, 0xfe, 0x22]) }
        let deep = String(repeating: "[", count: JSONValue.maximumDepth + 1) + String(repeating: "]", count: JSONValue.maximumDepth + 1)
        #expect(throws: JSONValue.ParseError.self) { try Self.parse(deep) }
        let ok = String(repeating: "[", count: JSONValue.maximumDepth) + String(repeating: "]", count: JSONValue.maximumDepth)
        #expect(try Self.parse(ok) != .null)
    }

    @Test("events decode the same from bytes as from JSONSerialization, quantities exact or refused")
    func eventQuantities() throws {
        let text =
            #"{"id":"0b9e4a52-6f0e-4c57-9d61-3f7f2a8c1d10","kind":"walking","province":"CN-GD","occurred_at":"2027-03-01T07:31:00+08:00","data":{"count":1000}}"#
        guard case .success(let wire) = EventWire.decode(try Self.parse(text)) else {
            Issue.record("should decode")
            return
        }
        #expect(wire.event.data.count == 1000)
        for (number, ok) in [
            ("1.0", true), ("1e3", true), ("1.5", false), ("9000000000000001", false), ("-9223372036854775808", false), ("true", false),
            ("\"5\"", false),
        ] {
            let event = text.replacingOccurrences(of: ":1000}", with: ":\(number)}")
            let result = EventWire.decode(try Self.parse(event))
            if case .success = result { #expect(ok, "\(number) must be refused") } else { #expect(!ok, "\(number) must decode") }
        }
    }
}

@Suite("Timestamp.textUTC: instants to PostgreSQL from integers alone")
struct TimestampTextTests {
    @Test(
        "formats milliseconds exactly and round-trips through the parser",
        arguments: [
            Int64(0), 1, -1, 999, 1_795_000_000_123, 946_684_800_000, 4_102_444_799_999, -62_135_596_800_000,
        ])
    func roundTrips(milliseconds: Int64) {
        let text = Timestamp.textUTC(milliseconds: milliseconds)
        #expect(text.hasSuffix("Z") && text.contains("."))
        #expect(Timestamp.milliseconds(text) == milliseconds, "\(text)")
    }

    @Test("known values")
    func knownValues() {
        #expect(Timestamp.textUTC(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.textUTC(milliseconds: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Timestamp.textUTC(milliseconds: 1_795_000_000_007) == "2026-11-18T11:06:40.007Z")
    }
}
