package import Foundation

/// A Swift value that can be sent as a query parameter.
///
/// Parameters travel in PostgreSQL's text format; the statement's SQL names the type
/// where the server cannot infer it (`$1::uuid`). Values never become part of SQL text.
package protocol PostgresEncodable: Sendable {
    /// The text-format representation, or nil for SQL NULL.
    var postgresText: String? { get }
    /// Appends the same text's UTF-8 bytes and answers true, or appends nothing and answers
    /// false for SQL NULL. Ids and integers write their characters in place: array
    /// parameters carry thousands of them per statement, and a `String` per element showed
    /// as a quarter of the server's CPU in a partner upload's profile.
    func appendPostgresText(to bytes: inout [UInt8]) -> Bool
    /// Whether the text can contain a quote or a backslash (an array element is then escaped).
    static var postgresTextMayNeedEscaping: Bool { get }
}

extension PostgresEncodable {
    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        guard let text = postgresText else { return false }
        bytes.append(contentsOf: text.utf8)
        return true
    }
    package static var postgresTextMayNeedEscaping: Bool { true }
}

/// Appends `value` in decimal (a leading '-' when negative), without an intermediate String.
func appendDecimal(_ value: Int64, to bytes: inout [UInt8]) {
    if value < 0 { bytes.append(UInt8(ascii: "-")) }
    var magnitude = value.magnitude
    // 20 digits hold UInt64.max; filled from the end, appended in one copy.
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
        var position = 20
        repeat {
            position -= 1
            digits[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[position...]))
    }
}

/// Appends `value` as exactly `width` decimal digits (0 ≤ value < 10^width).
func appendDigits(_ value: Int64, width: Int, to bytes: inout [UInt8]) {
    var divisor: Int64 = 1
    for _ in 1..<width { divisor *= 10 }
    var rest = value
    while divisor > 0 {
        bytes.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest / divisor))
        rest %= divisor
        divisor /= 10
    }
}

/// An instant as UTC text with millisecond precision (`2027-03-01T08:00:00.123Z`), from
/// integer epoch milliseconds: what the push path sends for every timestamptz element,
/// written in place. Years outside 0–9999 are written as plain integers, like
/// `Timestamp.textUTC` (a unit test holds the two to the same text).
package struct UTCMilliseconds: PostgresEncodable, Equatable {
    package var milliseconds: Int64

    package init(_ milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    package var postgresText: String? {
        var bytes: [UInt8] = []
        _ = appendPostgresText(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    package static var postgresTextMayNeedEscaping: Bool { false }

    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        let (seconds, fraction) = milliseconds.floorDivided(by: 1000)
        let (days, secondOfDay) = seconds.floorDivided(by: 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        if (0...9999).contains(year) { appendDigits(year, width: 4, to: &bytes) } else { appendDecimal(year, to: &bytes) }
        bytes.append(UInt8(ascii: "-"))
        appendDigits(month, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(day, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(secondOfDay / 3600, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay / 60 % 60, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay % 60, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "."))
        appendDigits(fraction, width: 3, to: &bytes)
        bytes.append(UInt8(ascii: "Z"))
        return true
    }
}

/// A Swift value that can be read from a text-format result column.
package protocol PostgresDecodable: Sendable {
    init(postgresText: String) throws(PostgresError)
    /// From the cell's bytes in place; by default through a String. Integers parse the bytes
    /// directly (the audit decodes millions of them).
    init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError)
}

extension PostgresDecodable {
    package init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        try self.init(postgresText: String(decoding: postgresBytes, as: UTF8.self))
    }
}

/// Decimal ASCII digits with an optional leading '-', overflow-checked; nil for anything else
/// (the caller falls back to the String parser, which gives the error or accepts other forms).
func parseDecimalInt64(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
    guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
    var index = 0
    let negative = bytes[0] == UInt8(ascii: "-")
    if negative { index = 1 }
    guard index < bytes.count else { return nil }
    var value: Int64 = 0
    while index < bytes.count {
        let digit = bytes[index] &- UInt8(ascii: "0")
        guard digit < 10 else { return nil }
        let (times, o1) = value.multipliedReportingOverflow(by: 10)
        // Accumulated negatively so Int64.min parses.
        let (next, o2) = times.subtractingReportingOverflow(Int64(digit))
        guard !o1, !o2 else { return nil }
        value = next
        index += 1
    }
    if negative { return value }
    let (positive, overflow) = Int64(0).subtractingReportingOverflow(value)
    return overflow ? nil : positive
}

extension PostgresError {
    static func invalidValue(_ message: String) -> PostgresError {
        PostgresError(kind: .invalidValue, operation: "decode", message: message)
    }
}

extension String: PostgresEncodable, PostgresDecodable {
    package var postgresText: String? { self }
    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        bytes.append(contentsOf: utf8)
        return true
    }
    package init(postgresText: String) { self = postgresText }
    package init(postgresBytes: UnsafeBufferPointer<UInt8>) { self = String(decoding: postgresBytes, as: UTF8.self) }
}

extension Int: PostgresEncodable, PostgresDecodable {
    package var postgresText: String? { String(self) }
    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        appendDecimal(Int64(self), to: &bytes)
        return true
    }
    package static var postgresTextMayNeedEscaping: Bool { false }
    package init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        if let value = parseDecimalInt64(postgresBytes), let exact = Int(exactly: value) {
            self = exact
        } else {
            try self.init(postgresText: String(decoding: postgresBytes, as: UTF8.self))
        }
    }
    package init(postgresText: String) throws(PostgresError) {
        guard let value = Int(postgresText) else { throw .invalidValue("not an integer: \(postgresText.prefix(40))") }
        self = value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    package var postgresText: String? { String(self) }
    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        appendDecimal(Int64(self), to: &bytes)
        return true
    }
    package static var postgresTextMayNeedEscaping: Bool { false }
    package init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        if let value = parseDecimalInt64(postgresBytes), let exact = Int64(exactly: value) {
            self = exact
        } else {
            try self.init(postgresText: String(decoding: postgresBytes, as: UTF8.self))
        }
    }
    package init(postgresText: String) throws(PostgresError) {
        guard let value = Int64(postgresText) else { throw .invalidValue("not an integer: \(postgresText.prefix(40))") }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    package var postgresText: String? { String(self) }
    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        appendDecimal(Int64(self), to: &bytes)
        return true
    }
    package static var postgresTextMayNeedEscaping: Bool { false }
    package init(postgresBytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) {
        if let value = parseDecimalInt64(postgresBytes), let exact = Int32(exactly: value) {
            self = exact
        } else {
            try self.init(postgresText: String(decoding: postgresBytes, as: UTF8.self))
        }
    }
    package init(postgresText: String) throws(PostgresError) {
        guard let value = Int32(postgresText) else { throw .invalidValue("not an integer: \(postgresText.prefix(40))") }
        self = value
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    package var postgresText: String? { self ? "t" : "f" }
    package static var postgresTextMayNeedEscaping: Bool { false }
    package init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw .invalidValue("not a boolean: \(postgresText.prefix(40))")
        }
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    /// Lower-case canonical text by table lookup (`uuidString` formats with sprintf and
    /// `lowercased()` walks Unicode: both showed in the push profile, once per row).
    package var postgresText: String? { canonicalText }
    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 36) { text in
            _ = writeCanonical(into: text)
            bytes.append(contentsOf: UnsafeBufferPointer(text))
        }
        return true
    }

    package static var postgresTextMayNeedEscaping: Bool { false }

    /// Writes the 36 characters of the canonical lower-case form; answers 36.
    private func writeCanonical(into text: UnsafeMutableBufferPointer<UInt8>) -> Int {
        withUnsafeBytes(of: uuid) { raw in
            var position = 0
            for index in 0..<16 {
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    text[position] = UInt8(ascii: "-")
                    position += 1
                }
                let byte = raw[index]
                text[position] = Self.hexDigit(byte >> 4)
                text[position + 1] = Self.hexDigit(byte & 0x0F)
                position += 2
            }
            return position
        }
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "a") &+ (nibble &- 10)
    }

    /// PostgreSQL's uuid order, which is the order of the 16 bytes (and of the lower-case
    /// text), compared without formatting either id.
    package func precedes(_ other: UUID) -> Bool {
        withUnsafeBytes(of: uuid) { a in withUnsafeBytes(of: other.uuid) { b in a.lexicographicallyPrecedes(b) } }
    }

    /// The same text, non-optional: ids in canonical strings, hashes and account names.
    /// Written into the string's own storage: one allocation, no intermediate arrays.
    package var canonicalText: String {
        String(unsafeUninitializedCapacity: 36) { writeCanonical(into: $0) }
    }

    /// Parses PostgreSQL's canonical form (36 characters, hyphens at 8, 13, 18, 23) without
    /// sscanf; anything else goes through Foundation's parser.
    package init(postgresText: String) throws(PostgresError) {
        var text = postgresText
        if let value = text.withUTF8({ Self.parseCanonical($0) }) {
            self = value
            return
        }
        guard let value = UUID(uuidString: postgresText) else { throw .invalidValue("not a uuid: \(postgresText.prefix(40))") }
        self = value
    }

    static func parseCanonical(_ utf8: UnsafeBufferPointer<UInt8>) -> UUID? {
        guard utf8.count == 36 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        var index = 0
        var position = 0
        while position < 36 {
            if position == 8 || position == 13 || position == 18 || position == 23 {
                guard utf8[position] == UInt8(ascii: "-") else { return nil }
                position += 1
                continue
            }
            guard let high = hexValue(utf8[position]), let low = hexValue(utf8[position + 1]) else { return nil }
            bytes[index] = high << 4 | low
            index += 1
            position += 2
        }
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}

/// Binary data, sent and read as bytea hex text (`\x0a1b…`).
package struct PostgresBytes: PostgresEncodable, PostgresDecodable, Equatable, Hashable {
    package var bytes: [UInt8]
    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    package var postgresText: String? { "\\x" + bytes.hexString }

    package init(postgresText: String) throws(PostgresError) {
        let utf8 = Array(postgresText.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            throw .invalidValue("bytea not in hex format")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((utf8.count - 2) / 2)
        var index = 2
        while index < utf8.count {
            guard let high = hexValue(utf8[index]), let low = hexValue(utf8[index + 1]) else {
                throw .invalidValue("bytea has a non-hex digit")
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.bytes = bytes
    }
}

private let lowercaseHexDigits: [UInt8] = Array("0123456789abcdef".utf8)

extension Sequence where Element == UInt8 {
    /// Lower-case hex by table lookup: the one encoder of the package (bytea, UUIDs, SHA-256
    /// digests); `String(format: "%02x")` per byte was a visible share of push CPU.
    package var hexString: String {
        withContiguousStorageIfAvailable { hex($0) } ?? Array(self).withUnsafeBufferPointer { hex($0) }
    }
}

/// Written straight into the string's storage: one allocation, no UTF-8 validation pass.
private func hex(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    String(unsafeUninitializedCapacity: bytes.count * 2) { text in
        var index = 0
        for byte in bytes {
            text[index] = lowercaseHexDigits[Int(byte >> 4)]
            text[index + 1] = lowercaseHexDigits[Int(byte & 0x0f)]
            index += 2
        }
        return index
    }
}

private func hexValue(_ ascii: UInt8) -> UInt8? {
    switch ascii {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return ascii - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return ascii - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return ascii - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// Instants travel as UTC text with microsecond precision, PostgreSQL's own resolution.
///
/// Sessions run with `TimeZone=UTC` and `DateStyle=ISO`, so timestamptz columns come back
/// as `2027-03-01 00:00:00.123456+00`; the parser below reads exactly that shape.
extension Date: PostgresEncodable, PostgresDecodable {
    package var postgresText: String? {
        let totalMicros = (timeIntervalSince1970 * 1_000_000).rounded()
        let micros = Int64(totalMicros)
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        let (days, secondOfDay) = seconds.floorDivided(by: 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        let text = String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
            Int(year), Int(month), Int(day),
            Int(secondOfDay / 3600), Int(secondOfDay / 60 % 60), Int(secondOfDay % 60), Int(fraction)
        )
        return text
    }

    package init(postgresText: String) throws(PostgresError) {
        guard let date = parsePostgresTimestamp(postgresText) else {
            throw .invalidValue("not a timestamptz in ISO style: \(postgresText.prefix(40))")
        }
        self = date
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    package var postgresText: String? {
        switch self {
        case .none: return nil
        case .some(let value): return value.postgresText
        }
    }
    package func appendPostgresText(to bytes: inout [UInt8]) -> Bool {
        switch self {
        case .none: return false
        case .some(let value): return value.appendPostgresText(to: &bytes)
        }
    }
    package static var postgresTextMayNeedEscaping: Bool { Wrapped.postgresTextMayNeedEscaping }
}

extension Int64 {
    func floorDivided(by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        var quotient = self / divisor
        var remainder = self % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }
}

/// Howard Hinnant's days-from-civil algorithms: exact proleptic Gregorian conversion.
func civilDate(daysSinceEpoch: Int64) -> (year: Int64, month: Int64, day: Int64) {
    let z = daysSinceEpoch + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let y = yoe + era * 400
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (m <= 2 ? y + 1 : y, m, d)
}

func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = month > 2 ? month - 3 : month + 9
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff](+|-)HH[:MM[:SS]]`, PostgreSQL's ISO output.
func parsePostgresTimestamp(_ text: String) -> Date? {
    let bytes = Array(text.utf8)
    var index = 0
    func number(_ digits: Int) -> Int64? {
        guard index + digits <= bytes.count else { return nil }
        var value: Int64 = 0
        for _ in 0..<digits {
            let byte = bytes[index]
            guard byte >= 48, byte <= 57 else { return nil }
            value = value * 10 + Int64(byte - 48)
            index += 1
        }
        return value
    }
    func expect(_ ascii: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == ascii else { return false }
        index += 1
        return true
    }
    guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2) else { return nil }
    guard index < bytes.count, bytes[index] == 32 || bytes[index] == 84 else { return nil }
    index += 1
    guard let hour = number(2), expect(58), let minute = number(2), expect(58), let second = number(2) else { return nil }
    var micros: Int64 = 0
    if expect(46) {
        var scale: Int64 = 100_000
        while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
            micros += Int64(bytes[index] - 48) * scale
            scale /= 10
            index += 1
        }
    }
    var offsetSeconds: Int64 = 0
    if index < bytes.count {
        let sign: Int64
        switch bytes[index] {
        case 43: sign = 1
        case 45: sign = -1
        case 90: sign = 0
        default: return nil
        }
        index += 1
        if sign != 0 {
            guard let offsetHours = number(2) else { return nil }
            var offset = offsetHours * 3600
            if expect(58) {
                guard let m = number(2) else { return nil }
                offset += m * 60
            }
            if expect(58) {
                guard let s = number(2) else { return nil }
                offset += s
            }
            offsetSeconds = sign * offset
        }
    }
    guard index == bytes.count else { return nil }
    let days = daysSinceEpoch(year: year, month: month, day: day)
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
    return Date(timeIntervalSince1970: Double(seconds) + Double(micros) / 1_000_000)
}
