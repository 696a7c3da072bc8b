/// County-level divisions by their GB/T 2260 six-digit codes (行政区划代码): two digits for
/// the province, two for the prefecture, two for the county (`310104` is Xuhui, Shanghai).
///
/// One pure check, used for `data.district` of pushed events and for any other source of
/// districts (partner feeds), so every path accepts exactly the same codes.
package enum District {
    /// GB/T 2260 province prefixes by ISO 3166-2:CN code. Hong Kong, Macao and Taiwan are
    /// listed (81, 82, 71) but GB/T 2260 defines no county codes under them.
    package static let provincePrefix: [String: String] = [
        "CN-BJ": "11", "CN-TJ": "12", "CN-HE": "13", "CN-SX": "14", "CN-NM": "15",
        "CN-LN": "21", "CN-JL": "22", "CN-HL": "23",
        "CN-SH": "31", "CN-JS": "32", "CN-ZJ": "33", "CN-AH": "34", "CN-FJ": "35", "CN-JX": "36", "CN-SD": "37",
        "CN-HA": "41", "CN-HB": "42", "CN-HN": "43", "CN-GD": "44", "CN-GX": "45", "CN-HI": "46",
        "CN-CQ": "50", "CN-SC": "51", "CN-GZ": "52", "CN-YN": "53", "CN-XZ": "54",
        "CN-SN": "61", "CN-GS": "62", "CN-QH": "63", "CN-NX": "64", "CN-XJ": "65",
        "CN-TW": "71", "CN-HK": "81", "CN-MO": "82",
    ]

    /// Provinces GB/T 2260 lists without counties.
    static let withoutCounties: Set<String> = ["CN-TW", "CN-HK", "CN-MO"]

    /// Why `code` is not a county of `province`, or nil when it is: six ASCII digits, the
    /// province's prefix, and neither the prefecture nor the county part `00` (those are
    /// province- or prefecture-level codes, too coarse for a district).
    package static func problem(_ code: String, province: String) -> String? {
        let digits = Array(code.utf8)
        guard digits.count == 6, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return "a district must be a GB/T 2260 six-digit county code such as 310104"
        }
        guard let prefix = provincePrefix[province] else { return "unknown province \(province)" }
        if withoutCounties.contains(province) { return "GB/T 2260 defines no county codes for \(province)" }
        guard code.hasPrefix(prefix) else {
            return "district \(code) is not in \(province) (its GB/T 2260 codes start with \(prefix))"
        }
        if code.utf8.dropFirst(2).prefix(2).elementsEqual("00".utf8) || code.hasSuffix("00") {
            return "district \(code) is a province- or prefecture-level code; send the county's code"
        }
        return nil
    }

    /// `problem` as a validation issue at `path` (code `invalid`).
    package static func validate(_ code: String, province: String, path: String = "data.district") -> ValidationIssue? {
        problem(code, province: province).map { ValidationIssue(path: path, code: .invalid, message: $0) }
    }
}
