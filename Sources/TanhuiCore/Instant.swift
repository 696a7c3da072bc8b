import Foundation

/// Integer time arithmetic. Evaluation compares and subtracts instants as Int64 milliseconds
/// since the Unix epoch: `Date` is a binary64 number of seconds, so it is converted once, at
/// the boundary (rounded to the nearest millisecond), and never used for arithmetic.
enum Instant {
    static let msPerDay: Int64 = 86_400_000

    @inline(__always)
    static func milliseconds(_ date: Date) -> Int64 {
        // Round half away from zero without a libm call: truncation after adding ±0.5.
        let ms = date.timeIntervalSince1970 * 1000
        return Int64(ms < 0 ? ms - 0.5 : ms + 0.5)
    }

    static func date(_ ms: Int64) -> Date {
        Date(timeIntervalSince1970: Double(ms) / 1000)
    }

    @inline(__always)
    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// (year, month 1–12, day 1–31) for days since 1970-01-01.
    static func civil(fromDays z0: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (month <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, month, day)
    }

    static func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    static func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
        switch m {
        case 2: isLeap(y) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Parses an RFC 3339 timestamp that carries its UTC offset (`Z` or `±HH:MM`) into epoch milliseconds.
    ///
    /// Zone-less forms are refused: a rule set's instants must not depend on where it is read.
    /// Fractions finer than a millisecond are truncated.
    static func parseRFC3339(_ text: String) -> Result<Int64, TimestampError> {
        let b = Array(text.utf8)
        func digits(_ at: Int, _ count: Int) -> Int64? {
            guard at + count <= b.count else { return nil }
            var v: Int64 = 0
            for i in at..<(at + count) {
                guard (48...57).contains(b[i]) else { return nil }
                v = v * 10 + Int64(b[i] - 48)
            }
            return v
        }
        guard b.count >= 10, let year = digits(0, 4), b.count > 4, b[4] == 45, let month = digits(5, 2),
            b[7] == 45, let day = digits(8, 2)
        else { return .failure(.malformed) }
        guard b.count > 10 else { return .failure(.missingTime) }
        guard [84, 116, 32].contains(b[10]), b.count >= 19, let hour = digits(11, 2), b[13] == 58,
            let minute = digits(14, 2), b[16] == 58, let second = digits(17, 2)
        else { return .failure(.malformed) }
        var i = 19
        var millis: Int64 = 0
        if i < b.count && b[i] == 46 {
            i += 1
            var n = 0
            while i < b.count, (48...57).contains(b[i]) {
                if n < 3 { millis = millis * 10 + Int64(b[i] - 48) }
                n += 1
                i += 1
            }
            guard n > 0 else { return .failure(.malformed) }
            var k = n
            while k < 3 {
                millis *= 10
                k += 1
            }
        }
        guard i < b.count else { return .failure(.missingOffset) }
        var offsetMinutes: Int64 = 0
        if b[i] == 90 || b[i] == 122 {  // Z z
            i += 1
        } else if b[i] == 43 || b[i] == 45 {  // + -
            guard let oh = digits(i + 1, 2), i + 3 < b.count, b[i + 3] == 58, let om = digits(i + 4, 2),
                oh <= 23, om <= 59
            else { return .failure(.malformed) }
            offsetMinutes = (oh * 60 + om) * (b[i] == 45 ? -1 : 1)
            i += 6
        } else {
            return .failure(.malformed)
        }
        guard i == b.count else { return .failure(.malformed) }
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year, month), hour <= 23, minute <= 59,
            second <= 59
        else { return .failure(.outOfRange) }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60
        return .success(seconds * 1000 + millis)
    }

    enum TimestampError: Error {
        case malformed, missingTime, missingOffset, outOfRange

        var message: String {
            switch self {
            case .malformed: "not an RFC 3339 timestamp like 2027-01-01T00:00:00+08:00"
            case .missingTime: "a date alone is ambiguous; give a time and UTC offset, e.g. 2027-01-01T00:00:00+08:00"
            case .missingOffset: "no UTC offset; add Z or ±HH:MM, e.g. +08:00"
            case .outOfRange: "date or time field out of range"
            }
        }
    }

    /// `2027-03-01T00:00:00+08:00`-style text for an instant in a zone (for messages only).
    static func format(_ ms: Int64, offsetSeconds: Int) -> String {
        let local = floorDiv(ms, 1000) + Int64(offsetSeconds)
        let days = floorDiv(local, 86_400)
        let secs = local - days * 86_400
        let (y, m, d) = civil(fromDays: days)
        let sign = offsetSeconds < 0 ? "-" : "+"
        let off = abs(offsetSeconds) / 60
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let zone = offsetSeconds == 0 ? "Z" : "\(sign)\(two(Int64(off / 60))):\(two(Int64(off % 60)))"
        let year = (0...999).contains(y) ? String(String(y + 10_000).dropFirst()) : "\(y)"
        return "\(year)-\(two(m))-\(two(d))T\(two(secs / 3600)):\(two(secs / 60 % 60)):\(two(secs % 60))\(zone)"
    }
}
