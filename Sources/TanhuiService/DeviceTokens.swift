import Crypto
package import Foundation
package import JWTKit
import Synchronization

/// The claims of a device token: which citizen, which device, until when.
/// The citizen comes only from here, so a device cannot read or write another's data.
package struct DeviceClaims: JWTPayload, Equatable {
    package var sub: SubjectClaim
    package var device: String
    package var exp: ExpirationClaim
    package var iat: IssuedAtClaim

    package func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        guard UUID(uuidString: sub.value) != nil else {
            throw JWTError.claimVerificationFailure(failedClaim: sub, reason: "sub must be a citizen UUID")
        }
        guard (1...200).contains(device.utf8.count) else {
            throw JWTError.claimVerificationFailure(failedClaim: sub, reason: "device must be 1–200 bytes")
        }
        // Partners' records are stored under `partner:<id>`; a device under that name would be
        // judged as self-reported but read by the audit as a partner's.
        guard !Self.isReserved(device: device) else {
            throw JWTError.claimVerificationFailure(failedClaim: sub, reason: "device ids starting with partner: are reserved")
        }
    }

    /// Device ids the pipeline uses for partners' records.
    package static func isReserved(device: String) -> Bool { device.lowercased().hasPrefix("partner:") }

    package var citizen: UUID { UUID(uuidString: sub.value)! }
}

/// Issues and verifies HS256 device tokens with `TANHUI_TOKEN_SECRET`.
///
/// Only HS256 with our key verifies: `alg: none`, other algorithms and other keys are refused.
package struct DeviceTokens: Sendable {
    package static let maximumTTL: TimeInterval = 366 * 86_400
    let keys: JWTKeyCollection
    /// Derived from the same secret, for authenticating pull cursors.
    package let cursorSecret: [UInt8]
    /// Tokens already verified, until they expire: a device sends the same token with every
    /// request, and `JWTKeyCollection` is an actor, so uncached verification serialises every
    /// request of the process on one executor. Bounded; cleared whole when full.
    private let verified = VerifiedTokens()
    static let maximumCachedTokens = 50_000

    final class VerifiedTokens: Sendable {
        let entries = Mutex<[String: DeviceClaims]>([:])
    }

    package init(secret: [UInt8]) async {
        precondition(secret.count >= 32, "the configuration requires 32 bytes or more")
        cursorSecret = Array(SHA256.hash(data: Data("tanhui-cursor-key".utf8) + Data(secret)))
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: "tanhui-device")
    }

    package func issue(citizen: UUID, device: String, ttl: TimeInterval, now: Date = Date()) async throws -> String {
        let claims = DeviceClaims(
            sub: SubjectClaim(value: citizen.uuidString.lowercased()), device: device,
            exp: ExpirationClaim(value: now.addingTimeInterval(ttl)), iat: IssuedAtClaim(value: now)
        )
        return try await keys.sign(claims, kid: "tanhui-device")
    }

    /// The verified claims, or nil for any invalid, expired or foreign token.
    package func verify(_ token: String, now: Date = Date()) async -> DeviceClaims? {
        guard token.utf8.count <= 4096 else { return nil }
        if let cached = verified.entries.withLock({ $0[token] }) {
            if cached.exp.value > now { return cached }
            verified.entries.withLock { _ = $0.removeValue(forKey: token) }
            return nil
        }
        guard let claims = try? await keys.verify(token, as: DeviceClaims.self) else { return nil }
        verified.entries.withLock { entries in
            if entries.count >= Self.maximumCachedTokens { entries.removeAll(keepingCapacity: true) }
            entries[token] = claims
        }
        return claims
    }
}
