import Crypto
import Foundation

extension SHA256 {
    /// Lower-case hex SHA-256 of a string's UTF-8 bytes: the form every stored hash takes
    /// (documents, keys, canonical events, chain links) and the form the SQL CHECKs require.
    static func hex(_ text: String) -> String {
        var copy = text
        return copy.withUTF8 { hash(data: $0).hexString }
    }
}

extension Sequence where Element == UInt8 {
    /// Hex by table lookup: `String(format:)` per byte was a visible share of push CPU.
    var hexString: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
