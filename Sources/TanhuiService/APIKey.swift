import Crypto
import Foundation

/// API keys of operators and partners: a prefix naming the holder's kind, then 32 random
/// bytes in base64url. Shown once at creation; only their SHA-256 is stored.
enum APIKey {
    static func generate(prefix: String) -> String {
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &random) }
        return prefix
            + Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func sha256(_ key: String) -> String {
        SHA256.hex(key)
    }

    /// Whether `key` could be one of ours at all (checked before any database work).
    static func isPlausible(_ key: String, prefix: String) -> Bool {
        key.hasPrefix(prefix) && key.utf8.count < 100
    }
}

/// An expected refusal (bad input, unknown record, wrong state) whose description is meant
/// for the person who asked: the CLI prints it and exits 1; it is never a crash or an exit 2.
package protocol ServiceRefusal: Error, CustomStringConvertible {}

extension OperatorError: ServiceRefusal {}
extension PartnerError: ServiceRefusal {}
