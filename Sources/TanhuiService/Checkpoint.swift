package import Crypto
package import Foundation

/// A signed statement of a province chain's head, for operators to keep outside the database.
/// Anyone rewriting the chain later — even consistently — no longer matches it.
///
/// Text form (signed over every line before `signature`, each ending in a newline). v2 adds
/// the watermark the summary was taken at and the SHA-256 of that stored summary of balances
/// and cap usage (`tanhui audit --since` starts from it), and, when the checkpoint copied the
/// report rollup, the SHA-256 of that copy (`reports`, see `LedgerService.reportsDigest`);
/// v1 notes and v2 notes without `reports` still verify.
/// ```
/// tanhui-checkpoint v2
/// province CN-GD
/// sequence 42
/// head 9f86d0…
/// watermark 1234
/// summary 5e2b…
/// reports 0c4f…
/// time 1772323200
/// key <base64 Ed25519 public key>
/// signature <base64 Ed25519 signature>
/// ```
package struct Checkpoint: Sendable, Equatable {
    package var province: String
    package var sequence: Int64
    package var headHash: String
    package var time: Date
    /// v2: every record with a seal id up to this is sealed at or before `sequence`, and none after.
    package var watermark: Int64?
    /// v2: SHA-256 of the summary stored for (province, watermark), see `LedgerService.summaryLine`.
    package var summarySHA256: String?
    /// v2, optional: SHA-256 of the report rollup copied for (province, watermark).
    package var reportsSHA256: String?
    package var publicKey: Data
    package var signature: Data

    package enum Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        case malformed(String)
        case badSignature
        case untrustedKey

        package var description: String {
            switch self {
            case .malformed(let detail): return "malformed checkpoint: \(detail)"
            case .badSignature: return "checkpoint signature is not valid"
            case .untrustedKey: return "checkpoint is signed by a key other than the trusted one"
            }
        }
    }

    var signedText: String {
        if let watermark, let summarySHA256 {
            return """
                tanhui-checkpoint v2
                province \(province)
                sequence \(sequence)
                head \(headHash)
                watermark \(watermark)
                summary \(summarySHA256)
                \(reportsSHA256.map { "reports \($0)\n" } ?? "")time \(Int64(time.timeIntervalSince1970))
                key \(publicKey.base64EncodedString())

                """
        }
        return """
            tanhui-checkpoint v1
            province \(province)
            sequence \(sequence)
            head \(headHash)
            time \(Int64(time.timeIntervalSince1970))
            key \(publicKey.base64EncodedString())

            """
    }

    package var note: String {
        signedText + "signature \(signature.base64EncodedString())\n"
    }

    /// Signs a head with the checkpoint key (`TANHUI_CHECKPOINT_KEY`).
    package static func sign(
        province: String, sequence: Int64, headHash: String, time: Date, watermark: Int64? = nil, summarySHA256: String? = nil,
        reportsSHA256: String? = nil, privateKey: Curve25519.Signing.PrivateKey
    ) throws -> Checkpoint {
        var checkpoint = Checkpoint(
            province: province, sequence: sequence, headHash: headHash,
            time: Date(timeIntervalSince1970: time.timeIntervalSince1970.rounded(.down)),
            watermark: watermark, summarySHA256: summarySHA256, reportsSHA256: reportsSHA256,
            publicKey: privateKey.publicKey.rawRepresentation, signature: Data()
        )
        checkpoint.signature = try signText(checkpoint.signedText, privateKey: privateKey)
        return checkpoint
    }

    /// The checkpoint key's signature over a signed note's text (checkpoints, partner receipts).
    package static func signText(_ signedText: String, privateKey: Curve25519.Signing.PrivateKey) throws -> Data {
        try privateKey.signature(for: Data(signedText.utf8))
    }

    /// Parses a note and checks its signature against `trustedKey` (the signer must be it).
    package static func verify(note: String, trustedKey: Curve25519.Signing.PublicKey) throws(Invalid) -> Checkpoint {
        var fields: [String: String] = [:]
        let lines = note.split(separator: "\n", omittingEmptySubsequences: false)
        guard let version = lines.first, version == "tanhui-checkpoint v1" || version == "tanhui-checkpoint v2" else {
            throw .malformed("first line must be 'tanhui-checkpoint v1' or 'tanhui-checkpoint v2'")
        }
        for line in lines.dropFirst() where !line.isEmpty {
            guard let space = line.firstIndex(of: " ") else { throw .malformed("line without a value: \(line.prefix(40))") }
            fields[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        guard let province = fields["province"], let sequenceText = fields["sequence"], let sequence = Int64(sequenceText),
            let head = fields["head"], head.count == 64, let timeText = fields["time"], let seconds = Int64(timeText),
            let keyText = fields["key"], let key = Data(base64Encoded: keyText),
            let signatureText = fields["signature"], let signature = Data(base64Encoded: signatureText)
        else { throw .malformed("missing or unreadable field") }
        var watermark: Int64?
        var summary: String?
        var reports: String?
        if version == "tanhui-checkpoint v2" {
            guard let text = fields["watermark"], let value = Int64(text), let digest = fields["summary"], digest.count == 64 else {
                throw .malformed("a v2 checkpoint needs watermark and summary")
            }
            watermark = value
            summary = digest
            if let text = fields["reports"] {
                guard text.utf8.count == 64 else { throw .malformed("reports must be a SHA-256 in hex") }
                reports = text
            }
        }
        let checkpoint = Checkpoint(
            province: province, sequence: sequence, headHash: head, time: Date(timeIntervalSince1970: TimeInterval(seconds)),
            watermark: watermark, summarySHA256: summary, reportsSHA256: reports, publicKey: key, signature: signature)
        guard key == trustedKey.rawRepresentation else { throw .untrustedKey }
        guard trustedKey.isValidSignature(signature, for: Data(checkpoint.signedText.utf8)) else { throw .badSignature }
        return checkpoint
    }
}
