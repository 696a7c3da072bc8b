/// Province-level divisions of China by their current ISO 3166-2:CN codes (letters since 2017).
package enum Province {
    /// All 34 codes with English names.
    package static let names: [String: String] = [
        "CN-AH": "Anhui", "CN-BJ": "Beijing", "CN-CQ": "Chongqing", "CN-FJ": "Fujian",
        "CN-GD": "Guangdong", "CN-GS": "Gansu", "CN-GX": "Guangxi", "CN-GZ": "Guizhou",
        "CN-HA": "Henan", "CN-HB": "Hubei", "CN-HE": "Hebei", "CN-HI": "Hainan",
        "CN-HK": "Hong Kong", "CN-HL": "Heilongjiang", "CN-HN": "Hunan", "CN-JL": "Jilin",
        "CN-JS": "Jiangsu", "CN-JX": "Jiangxi", "CN-LN": "Liaoning", "CN-MO": "Macao",
        "CN-NM": "Nei Mongol", "CN-NX": "Ningxia", "CN-QH": "Qinghai", "CN-SC": "Sichuan",
        "CN-SD": "Shandong", "CN-SH": "Shanghai", "CN-SN": "Shaanxi", "CN-SX": "Shanxi",
        "CN-TJ": "Tianjin", "CN-TW": "Taiwan", "CN-XJ": "Xinjiang", "CN-XZ": "Xizang",
        "CN-YN": "Yunnan", "CN-ZJ": "Zhejiang",
    ]

    /// Pre-2017 numeric codes, only to suggest the current one in error messages.
    static let numericToCurrent: [String: String] = [
        "11": "BJ", "12": "TJ", "13": "HE", "14": "SX", "15": "NM", "21": "LN", "22": "JL", "23": "HL",
        "31": "SH", "32": "JS", "33": "ZJ", "34": "AH", "35": "FJ", "36": "JX", "37": "SD", "41": "HA",
        "42": "HB", "43": "HN", "44": "GD", "45": "GX", "46": "HI", "50": "CQ", "51": "SC", "52": "GZ",
        "53": "YN", "54": "XZ", "61": "SN", "62": "GS", "63": "QH", "64": "NX", "65": "XJ", "71": "TW",
        "91": "HK", "92": "MO",
    ]

    package static func isKnown(_ code: String) -> Bool { names[code] != nil }

    /// A hint for a wrong code: the letter code for an old numeric one, or the upper-cased form.
    static func suggestion(for code: String) -> String? {
        if code.hasPrefix("CN-"), let letters = numericToCurrent[String(code.dropFirst(3))] { return "CN-" + letters }
        if isKnown(code.uppercased()) { return code.uppercased() }
        return nil
    }
}
