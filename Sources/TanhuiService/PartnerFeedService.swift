import Crypto
package import Foundation
package import TanhuiPostgres

/// What a feed partner is registered for beyond its key: the Ed25519 public key that signs its
/// uploads, the kinds it may report, and the evidence sources it owns.
package struct FeedProfile: Sendable, Equatable {
    /// Base64 of the 32-byte Ed25519 public key; nil: the partner cannot upload records yet.
    package var signingKey: String?
    package var kinds: [String]
    package var evidenceSources: [String]
}

/// A link between a partner's subject (its own opaque user id) and a citizen.
package struct PartnerLink: Sendable, Equatable {
    package var province: String
    package var id: UUID
    package var partnerID: UUID
    package var partnerName: String
    package var subject: String
    package var citizen: UUID
    package var scene: String
    package var grantedAt: Date
    package var revokedAt: Date?
}

/// A link code as the citizen's app receives it (the code itself is stored only hashed).
package struct LinkCode: Sendable {
    package var code: String
    package var province: String
    package var partnerID: UUID
    package var partnerName: String
    package var scene: String
    package var expiresAt: Date
}

package enum PartnerFeedError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidSigningKey
    case invalidKind(String)
    case invalidEvidenceSource(String)
    case evidenceSourceOwned(source: String, owner: UUID)
    case unknownPartner
    case invalidScene
    case invalidSubject
    /// Unknown, expired, already used, or issued for another partner: one answer for all.
    case unknownLinkCode
    case subjectLinked
    case tooManyLinkCodes

    package var description: String {
        switch self {
        case .invalidSigningKey: return "the signing key must be base64 of a 32-byte Ed25519 public key"
        case .invalidKind(let kind): return "kind \(kind) is not a lower-case identifier (e.g. transit_trip)"
        case .invalidEvidenceSource(let source): return "evidence source \(source) must be 1–200 characters without spaces"
        case .evidenceSourceOwned(let source, let owner):
            return "evidence source \(source) is already owned by partner \(owner.canonicalText) in this province"
        case .unknownPartner: return "no active feed partner with this id"
        case .invalidScene: return "scene must be 1–100 characters"
        case .invalidSubject: return "subject must be 1–200 characters without control characters"
        case .unknownLinkCode: return "the link code is unknown, expired, already used or for another partner"
        case .subjectLinked: return "this subject is already linked to another citizen; the citizen must revoke that link first"
        case .tooManyLinkCodes: return "too many unused link codes for this partner; use one or wait 10 minutes"
        }
    }
}

extension PartnerFeedError: ServiceRefusal {}

/// Feed partners: their signing keys, kinds and evidence sources, citizens' links, and the
/// signed record uploads that go through the push path's judge and write path.
package final class PartnerFeedService: Sendable {
    let pool: PostgresPool
    let ledger: LedgerService

    /// A link code is valid 10 minutes (the interval in `requestLinkCode`).
    /// Unused, unexpired codes a citizen may hold per partner.
    package static let maximumOpenLinkCodes = 5
    /// Records per upload.
    package static let maximumRecordsPerUpload = 5_000
    /// Link code alphabet: no 0/O, 1/I/L, U (read aloud and typed by hand).
    static let codeAlphabet = Array("ABCDEFGHJKMNPQRSTVWXYZ23456789")
    static let codeLength = 10

    package init(pool: PostgresPool, ledger: LedgerService) {
        self.pool = pool
        self.ledger = ledger
    }

    // MARK: Registry

    /// Checks a base64 Ed25519 public key; returns it normalised.
    package static func normalisedSigningKey(_ text: String) throws -> String {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespaces)), data.count == 32,
            (try? Curve25519.Signing.PublicKey(rawRepresentation: data)) != nil
        else { throw PartnerFeedError.invalidSigningKey }
        return data.base64EncodedString()
    }

    static func checkKind(_ kind: String) throws {
        guard (1...40).contains(kind.utf8.count), kind.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || $0 == 95 || ($0 >= 48 && $0 <= 57) }),
            let first = kind.utf8.first, first >= 97, first <= 122
        else { throw PartnerFeedError.invalidKind(kind) }
    }

    static func checkEvidenceSource(_ source: String) throws {
        guard (1...200).contains(source.utf8.count), !source.unicodeScalars.contains(where: { $0.value <= 0x20 }) else {
            throw PartnerFeedError.invalidEvidenceSource(source)
        }
    }

    /// Checks what `configure` would be given, before anything is written.
    package static func validate(signingKey: String?, kinds: [String]?, evidenceSources: [String]) throws {
        if let signingKey { _ = try normalisedSigningKey(signingKey) }
        for kind in kinds ?? [] { try checkKind(kind) }
        guard (kinds ?? []).count <= 32 else { throw PartnerFeedError.invalidKind("(more than 32 kinds)") }
        for source in evidenceSources { try checkEvidenceSource(source) }
    }

    /// Sets (or rotates) the signing key, replaces the kinds when given, and adds owned
    /// evidence sources (ownership is unique per province and never moves silently).
    package func configure(
        province: String, partner id: UUID, signingKey: String?, kinds: [String]?, evidenceSources: [String]
    ) async throws
        -> FeedProfile
    {
        try Self.validate(signingKey: signingKey, kinds: kinds, evidenceSources: evidenceSources)
        let key = try signingKey.map(Self.normalisedSigningKey)
        try await pool.withTransaction { connection in
            guard
                try connection.query("SELECT 1 FROM partners WHERE province = \(province) AND partner_id = \(id) FOR UPDATE").first != nil
            else { throw PartnerError.notFound(province: province, id: id) }
            if let key {
                try connection.query("UPDATE partners SET signing_key = \(key) WHERE province = \(province) AND partner_id = \(id)")
            }
            if let kinds {
                let sorted = Array(Set(kinds)).sorted()
                try connection.query(
                    "UPDATE partners SET kinds = \(PostgresArray(sorted))::text[] WHERE province = \(province) AND partner_id = \(id)")
            }
            for source in Array(Set(evidenceSources)).sorted() {
                try connection.query(
                    """
                    INSERT INTO partner_evidence_sources (province, evidence_source, partner_id) VALUES (\(province), \(source), \(id))
                    ON CONFLICT DO NOTHING
                    """)
                let owner: UUID = try connection.query(
                    "SELECT partner_id FROM partner_evidence_sources WHERE province = \(province) AND evidence_source = \(source)"
                ).scalar(UUID.self)
                guard owner == id else { throw PartnerFeedError.evidenceSourceOwned(source: source, owner: owner) }
            }
        }
        return try await profile(province: province, partner: id)
    }

    /// The owners of those of `sources` that are owned in `province`.
    package func owners(province: String, sources: [String]) async throws -> [(String, UUID)] {
        guard !sources.isEmpty else { return [] }
        return try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT evidence_source, partner_id FROM partner_evidence_sources
                WHERE province = \(province) AND evidence_source = ANY(\(PostgresArray(sources))::text[]) ORDER BY evidence_source
                """
            ).rows.map { (try $0.decode(0, as: String.self), try $0.decode(1, as: UUID.self)) }
        }
    }

    package func profile(province: String, partner id: UUID) async throws -> FeedProfile {
        try await pool.withConnection { connection in
            guard
                let row = try connection.query(
                    "SELECT signing_key, array_to_string(kinds, ',') FROM partners WHERE province = \(province) AND partner_id = \(id)"
                ).first
            else { throw PartnerError.notFound(province: province, id: id) }
            let sources = try connection.query(
                "SELECT evidence_source FROM partner_evidence_sources WHERE province = \(province) AND partner_id = \(id) ORDER BY evidence_source"
            ).rows.map { try $0.decode(0, as: String.self) }
            return FeedProfile(
                signingKey: try row.decode(0, as: String?.self),
                kinds: try row.decode(1, as: String.self).split(separator: ",").map(String.init), evidenceSources: sources)
        }
    }

    // MARK: Links

    static func codeHash(_ code: String) -> String { SHA256.hex("tanhui-link-code-v1:" + code) }

    /// A code for the citizen to type into the partner's app, valid 10 minutes, once.
    package func requestLinkCode(citizen: UUID, device: String, partner id: UUID, scene: String) async throws -> LinkCode {
        // Counted in code points, as PostgreSQL's length() does.
        guard (1...100).contains(scene.unicodeScalars.count), !scene.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw PartnerFeedError.invalidScene
        }
        var random = SystemRandomNumberGenerator()
        let code = String((0..<Self.codeLength).map { _ in Self.codeAlphabet[Int.random(in: 0..<Self.codeAlphabet.count, using: &random)] })
        return try await pool.withConnection { connection in
            // A device token names no province: the partner id finds it.
            guard
                let partner = try connection.query(
                    """
                    SELECT province, name FROM partners WHERE partner_id = \(id) AND revoked_at IS NULL AND 'feed' = ANY(scopes)
                    /* citus: multi-shard (a device token names no province; the partner id finds it) */
                    """
                ).first
            else { throw PartnerFeedError.unknownPartner }
            let province: String = try partner.decode(0)
            let open = try connection.query(
                """
                SELECT count(*) FROM partner_link_codes WHERE province = \(province) AND partner_id = \(id) AND citizen_id = \(citizen)
                  AND used_at IS NULL AND expires_at > now()
                """
            ).scalar(Int64.self)
            guard open < Self.maximumOpenLinkCodes else { throw PartnerFeedError.tooManyLinkCodes }
            let expires: Date = try connection.query(
                """
                INSERT INTO partner_link_codes (province, code_sha256, partner_id, citizen_id, device_id, scene, expires_at)
                VALUES (\(province), \(Self.codeHash(code)), \(id), \(citizen), \(String(device.prefix(200))), \(scene),
                        now() + interval '10 minutes')
                RETURNING expires_at
                """
            ).scalar(Date.self)
            return LinkCode(code: code, province: province, partnerID: id, partnerName: try partner.decode(1), scene: scene, expiresAt: expires)
        }
    }

    /// The partner confirms a code its user typed: the link is granted now, for `subject`.
    package func confirmLink(partner: PartnerIdentity, code: String, subject: String) async throws -> PartnerLink {
        guard (1...200).contains(subject.utf8.count), !subject.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw PartnerFeedError.invalidSubject
        }
        let normalised = code.uppercased().filter { !$0.isWhitespace && $0 != "-" }
        guard normalised.count == Self.codeLength, normalised.allSatisfy({ Self.codeAlphabet.contains($0) }) else {
            throw PartnerFeedError.unknownLinkCode
        }
        let province = partner.province
        return try await pool.withTransaction { connection in
            // Seal ids are drawn under the publication lock (shared), like every sealed record.
            try connection.query("SELECT pg_advisory_xact_lock_shared(hashtext(\(RuleSetService.publicationLockKey(province))))")
            guard
                let row = try connection.query(
                    """
                    SELECT citizen_id, scene FROM partner_link_codes
                    WHERE province = \(province) AND code_sha256 = \(Self.codeHash(normalised)) AND partner_id = \(partner.id)
                      AND used_at IS NULL AND expires_at > now()
                    FOR UPDATE
                    """
                ).first
            else { throw PartnerFeedError.unknownLinkCode }
            let citizen: UUID = try row.decode(0)
            let scene: String = try row.decode(1)
            try connection.query(
                "UPDATE partner_link_codes SET used_at = now() WHERE province = \(province) AND code_sha256 = \(Self.codeHash(normalised))")
            try connection.query("SELECT pg_advisory_xact_lock(hashtext(\("tanhui.link." + province + "." + partner.id.uuidString + "." + subject)))")
            if let active = try Self.activeLinks(province: province, partner: partner.id, subjects: [subject], on: connection).first {
                guard active.citizen == citizen else { throw PartnerFeedError.subjectLinked }
                return PartnerLink(
                    province: province, id: active.id, partnerID: partner.id, partnerName: partner.name, subject: subject, citizen: citizen,
                    scene: active.scene, grantedAt: active.grantedAt, revokedAt: nil)
            }
            let id = UUID()
            let granted: Date = try connection.query(
                """
                INSERT INTO partner_link_changes (province, link_id, change, partner_id, subject, citizen_id, scene, at, actor)
                VALUES (\(province), \(id), 'granted', \(partner.id), \(subject), \(citizen), \(scene), clock_timestamp(), \(String(partner.actor.unicodeScalars.prefix(300))))
                RETURNING at
                """
            ).scalar(Date.self)
            return PartnerLink(
                province: province, id: id, partnerID: partner.id, partnerName: partner.name, subject: subject, citizen: citizen, scene: scene,
                grantedAt: granted, revokedAt: nil)
        }
    }

    struct ActiveLink {
        var id: UUID
        var subject: String
        var citizen: UUID
        var scene: String
        var grantedAt: Date
    }

    static func activeLinks(province: String, partner: UUID, subjects: [String], on connection: PostgresConnection) throws -> [ActiveLink] {
        try connection.query(
            """
            SELECT g.link_id, g.subject, g.citizen_id, g.scene, g.at FROM partner_link_changes g
            WHERE g.province = \(province) AND g.partner_id = \(partner) AND g.subject = ANY(\(PostgresArray(subjects))::text[]) AND g.change = 'granted'
              AND NOT EXISTS (SELECT 1 FROM partner_link_changes r WHERE r.province = g.province AND r.link_id = g.link_id AND r.change = 'revoked')
            """
        ).rows.map {
            ActiveLink(
                id: try $0.decode(0), subject: try $0.decode(1), citizen: try $0.decode(2), scene: try $0.decode(3), grantedAt: try $0.decode(4))
        }
    }

    static let linkColumns: SQLFragment = """
        g.province, g.link_id, g.partner_id, p.name, g.subject, g.citizen_id, g.scene, g.at, r.at
        """

    static func decodeLink(_ row: PostgresRow) throws -> PartnerLink {
        PartnerLink(
            province: try row.decode(0), id: try row.decode(1), partnerID: try row.decode(2), partnerName: try row.decode(3),
            subject: try row.decode(4),
            citizen: try row.decode(5), scene: try row.decode(6), grantedAt: try row.decode(7), revokedAt: try row.decode(8, as: Date?.self))
    }

    /// The citizen's links, every province, newest first (revoked ones included).
    package func links(citizen: UUID) async throws -> [PartnerLink] {
        try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT \(Self.linkColumns) FROM partner_link_changes g
                JOIN partners p ON p.province = g.province AND p.partner_id = g.partner_id
                LEFT JOIN partner_link_changes r ON r.province = g.province AND r.link_id = g.link_id AND r.change = 'revoked'
                WHERE g.citizen_id = \(citizen) AND g.change = 'granted'
                ORDER BY g.at DESC, g.link_id LIMIT 1000
                /* citus: multi-shard (a device token names no province) */
                """
            ).rows.map(Self.decodeLink)
        }
    }

    /// Revokes one of the citizen's links now (revoking twice keeps the first instant); nil
    /// when the citizen has no such link.
    package func revokeLink(citizen: UUID, device: String, link id: UUID) async throws -> PartnerLink? {
        guard
            let province = try await pool.withConnection({ connection in
                try connection.query(
                    """
                    SELECT province FROM partner_link_changes WHERE link_id = \(id) AND citizen_id = \(citizen) AND change = 'granted'
                    /* citus: multi-shard (a device token names no province) */
                    """
                ).first.map { try $0.decode(0, as: String.self) }
            })
        else { return nil }
        return try await pool.withTransaction { connection in
            try connection.query("SELECT pg_advisory_xact_lock_shared(hashtext(\(RuleSetService.publicationLockKey(province))))")
            // The instant is read first: Citus refuses volatile functions in a distributed INSERT … SELECT.
            let now: Date = try connection.query("SELECT clock_timestamp()").scalar(Date.self)
            try connection.query(
                """
                INSERT INTO partner_link_changes (province, link_id, change, partner_id, subject, citizen_id, scene, at, actor)
                SELECT province, link_id, 'revoked', partner_id, subject, citizen_id, scene, \(now)::timestamptz, \("device " + String(device.prefix(200)))
                FROM partner_link_changes WHERE province = \(province) AND link_id = \(id) AND change = 'granted'
                ON CONFLICT DO NOTHING
                """)
            return try connection.query(
                """
                SELECT \(Self.linkColumns) FROM partner_link_changes g
                JOIN partners p ON p.province = g.province AND p.partner_id = g.partner_id
                LEFT JOIN partner_link_changes r ON r.province = g.province AND r.link_id = g.link_id AND r.change = 'revoked'
                WHERE g.province = \(province) AND g.link_id = \(id) AND g.change = 'granted'
                """
            ).first.map(Self.decodeLink)
        }
    }
}
