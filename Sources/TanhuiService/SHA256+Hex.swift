import Crypto
import Foundation

extension SHA256 {
    /// Lower-case hex SHA-256 of a string's UTF-8 bytes: the form every stored hash takes
    /// (documents, keys, canonical events, chain links) and the form the SQL CHECKs require.
    static func hex(_ text: String) -> String {
        hash(data: Data(text.utf8)).hexString
    }
}

extension Sequence where Element == UInt8 {
    var hexString: String {
        map { String(format: "%02x", $0) }.joined()
    }
}
