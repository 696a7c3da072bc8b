import Crypto
import Foundation
import TanhuiPostgres

extension SHA256 {
    /// Lower-case hex SHA-256 of a string's UTF-8 bytes: the form every stored hash takes
    /// (documents, keys, canonical events, chain links) and the form the SQL CHECKs require.
    static func hex(_ text: String) -> String {
        var copy = text
        return copy.withUTF8 { hash(data: $0).hexString }
    }
}
