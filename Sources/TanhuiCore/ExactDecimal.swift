/// A non-negative decimal kept exactly as written: `46.7` is 467 × 10⁻¹, never a binary float.
///
/// Rule-set factors, limits and multipliers are all non-negative, so the type is too; a
/// minus sign is a parse error the rule-set parser turns into `not_positive`.
/// Values are normalised (trailing fraction zeros dropped), so `46.70 == 46.7`.
package struct ExactDecimal: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The digits without the decimal point: 467 for `46.7`.
    package let mantissa: Int64
    /// How many digits follow the decimal point: 1 for `46.7`.
    package let scale: Int

    /// Most fraction digits accepted; finer factors are not meaningful for grams.
    package static let maxScale = 9
    /// Most significant digits accepted, so every mantissa fits Int64 with room to spare.
    package static let maxDigits = 18

    package enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case negative
        case exponent
        case notANumber
        case malformed
        case tooManyFractionDigits
        case tooLarge

        package var description: String {
            switch self {
            case .empty: "empty number"
            case .negative: "must not be negative"
            case .exponent: "exponent notation (e.g. 1e3) is not allowed; write the digits out"
            case .notANumber: "not a decimal number"
            case .malformed: "malformed decimal; write digits with an optional fraction, e.g. 46.7"
            case .tooManyFractionDigits: "more than \(ExactDecimal.maxScale) digits after the decimal point"
            case .tooLarge: "more than \(ExactDecimal.maxDigits) significant digits"
            }
        }
    }

    /// An integer value.
    package init(_ integer: Int64) {
        precondition(integer >= 0, "ExactDecimal is non-negative")
        mantissa = integer
        scale = 0
    }

    /// `mantissa × 10^-scale`, normalised.
    package init(mantissa: Int64, scale: Int) {
        precondition(mantissa >= 0 && (0...Self.maxScale).contains(scale))
        var m = mantissa
        var s = scale
        while s > 0 && m % 10 == 0 {
            m /= 10
            s -= 1
        }
        self.mantissa = m
        self.scale = s
    }

    /// Parses the exact source text of a number (`"46.7"`, `"43"`, `"0.02"`).
    ///
    /// Accepts `digits[.digits]` only: no sign, exponent, leading `+`, leading zeros
    /// (YAML 1.1 would read `010` as octal) or bare `.5`.
    package init(parsing text: String) throws(ParseError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw .empty }
        if bytes[0] == UInt8(ascii: "-") { throw .negative }
        var digits: Int64 = 0
        var significant = 0
        var fraction = 0
        var seenPoint = false
        var intDigits = 0
        var fracDigits = 0
        for b in bytes {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if seenPoint { fracDigits += 1 } else { intDigits += 1 }
                if digits == 0 && b == UInt8(ascii: "0") {
                    if seenPoint { fraction += 1 }
                    continue
                }
                significant += 1
                guard significant <= Self.maxDigits else { throw .tooLarge }
                digits = digits * 10 + Int64(b - UInt8(ascii: "0"))
                if seenPoint { fraction += 1 }
            case UInt8(ascii: "."):
                guard !seenPoint else { throw .malformed }
                seenPoint = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                throw bytes.allSatisfy({ Self.isNumberByte($0) }) ? .exponent : .notANumber
            default:
                throw bytes.allSatisfy({ Self.isNumberByte($0) }) ? .malformed : .notANumber
            }
        }
        guard intDigits > 0, !seenPoint || fracDigits > 0 else { throw .malformed }
        if intDigits > 1 && bytes[0] == UInt8(ascii: "0") { throw .malformed }
        // Drop trailing fraction zeros before judging the scale: 0.5000000000 is fine.
        while fraction > 0 && digits % 10 == 0 && digits != 0 {
            digits /= 10
            fraction -= 1
        }
        if digits == 0 { fraction = 0 }
        guard fraction <= Self.maxScale else { throw .tooManyFractionDigits }
        mantissa = digits
        scale = fraction
    }

    private static func isNumberByte(_ b: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || b == UInt8(ascii: ".")
            || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-")
    }

    /// 10^scale.
    @inlinable
    package var denominator: Int64 {
        switch scale {
        case 0: 1
        case 1: 10
        case 2: 100
        case 3: 1_000
        case 4: 10_000
        case 5: 100_000
        case 6: 1_000_000
        case 7: 10_000_000
        case 8: 100_000_000
        default: 1_000_000_000
        }
    }

    package var isZero: Bool { mantissa == 0 }

    /// `floor(quantity × self / divisor)` computed exactly; nil if the result does not fit Int64.
    ///
    /// This is the one rounding step used for grams: e.g. grams = gramsPerKm.floorOfProduct(distanceMeters, dividedBy: 1000).
    /// `quantity` must be ≥ 0 and `divisor` > 0.
    @inlinable @inline(__always)
    package func floorOfProduct(_ quantity: Int64, dividedBy divisor: Int64 = 1) -> Int64? {
        let (product, overflow) = quantity.multipliedReportingOverflow(by: mantissa)
        let (den, denOverflow) = divisor.multipliedReportingOverflow(by: denominator)
        if !overflow && !denOverflow {
            return product / den
        }
        return wideFloorOfProduct(quantity, dividedBy: divisor)
    }

    /// The rare path: 128-bit intermediate when the 64-bit product overflows.
    @usableFromInline @inline(never)
    func wideFloorOfProduct(_ quantity: Int64, dividedBy divisor: Int64) -> Int64? {
        let wide = Int128(quantity) * Int128(mantissa) / (Int128(divisor) * Int128(denominator))
        return wide <= Int128(Int64.max) ? Int64(wide) : nil
    }

    /// `self × other` exactly, or nil when the product needs more than `maxScale` fraction digits
    /// or `maxDigits` significant digits (then no ExactDecimal can hold it without rounding).
    package func exactProduct(_ other: ExactDecimal) -> ExactDecimal? {
        let (mantissa, overflow) = mantissa.multipliedReportingOverflow(by: other.mantissa)
        guard !overflow else { return nil }
        var m = mantissa
        var s = scale + other.scale
        while s > 0 && m % 10 == 0 {
            m /= 10
            s -= 1
        }
        guard s <= Self.maxScale, m < 1_000_000_000_000_000_000 else { return nil }
        return ExactDecimal(mantissa: m, scale: s)
    }

    /// Smallest integer ≥ self × unit; for thresholds such as `min_distance_km` in metres.
    package func ceilTimes(_ unit: Int64) -> Int64 {
        let num = Int128(mantissa) * Int128(unit)
        let den = Int128(denominator)
        let q = (num + den - 1) / den
        return q <= Int128(Int64.max) ? Int64(q) : Int64.max
    }

    /// Largest integer ≤ self × unit; for thresholds such as `max_distance_km` in metres.
    package func floorTimes(_ unit: Int64) -> Int64 {
        let q = Int128(mantissa) * Int128(unit) / Int128(denominator)
        return q <= Int128(Int64.max) ? Int64(q) : Int64.max
    }

    package static func < (lhs: ExactDecimal, rhs: ExactDecimal) -> Bool {
        // Cross-multiply in 128 bits: both sides fit easily (mantissa < 10^18, denominators ≤ 10^9).
        Int128(lhs.mantissa) * Int128(rhs.denominator) < Int128(rhs.mantissa) * Int128(lhs.denominator)
    }

    /// Canonical text, e.g. `46.7`, `0.02`, `43`.
    package var description: String {
        guard scale > 0 else { return String(mantissa) }
        var digits = String(mantissa)
        if digits.count <= scale {
            digits = String(repeating: "0", count: scale - digits.count + 1) + digits
        }
        let split = digits.index(digits.endIndex, offsetBy: -scale)
        return digits[..<split] + "." + digits[split...]
    }
}
