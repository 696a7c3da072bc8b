package import Foundation
import TanhuiCore
package import TanhuiPostgres

/// What a partner's key may do. A key holds one or more scopes; each route family asks for one.
package enum PartnerScope: String, Sendable, CaseIterable, Codable, Comparable {
    /// Spend points a citizen chooses to redeem (holds, captures, voids, refunds).
    case redeem
    /// Report verified records of citizens' actions.
    case feed

    package static func < (lhs: PartnerScope, rhs: PartnerScope) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A partner of one province (merchant, transit or bike operator, data platform), as
/// registered by an admin and authenticated by its API key.
package struct PartnerIdentity: Sendable, Equatable, Codable {
    package var province: String
    package var id: UUID
    package var name: String
    package var scopes: [PartnerScope]
    package var createdBy: String
    package var createdAt: Date
    package var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case province, id, name, scopes
        case createdBy = "created_by"
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }

    /// How ledger rows and logs name the partner.
    package var actor: String { "partner \(name) (\(id.canonicalText))" }
}

package enum PartnerError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidName
    case unknownProvince(String)
    case noScope
    case notFound(province: String, id: UUID)

    package var description: String {
        switch self {
        case .invalidName: return "partner name must be 1–200 characters"
        case .unknownProvince(let code): return "unknown province \(code) (use ISO 3166-2:CN codes such as CN-GD)"
        case .noScope: return "give at least one scope: \(PartnerScope.allCases.map(\.rawValue).joined(separator: ", "))"
        case .notFound(let province, let id): return "no partner \(id.canonicalText) in \(province)"
        }
    }
}

/// The partner registry: one province per partner, keys shown once and stored as SHA-256,
/// revocation immediate and final (a revoked partner's records keep naming it).
package final class PartnerService: Sendable {
    let pool: PostgresPool

    /// Keys look like `thp_` + 43 base64url characters (32 random bytes).
    package static let keyPrefix = "thp_"

    package init(pool: PostgresPool) {
        self.pool = pool
    }

    /// Registers a partner; returns it with its key, which is not stored and cannot be shown again.
    package func create(province: String, name: String, scopes: [PartnerScope], createdBy: String) async throws -> (PartnerIdentity, key: String) {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(trimmed.count) else { throw PartnerError.invalidName }
        guard Province.isKnown(province) else { throw PartnerError.unknownProvince(province) }
        let sortedScopes = Array(Set(scopes)).sorted()
        guard !sortedScopes.isEmpty else { throw PartnerError.noScope }
        let key = APIKey.generate(prefix: Self.keyPrefix)
        let id = UUID()
        let creator = String(createdBy.prefix(200))
        let identity = try await pool.withConnection { connection in
            let row = try connection.query(
                """
                INSERT INTO partners (province, partner_id, name, scopes, key_sha256, created_by)
                VALUES (\(province), \(id), \(trimmed), \(PostgresArray(sortedScopes.map(\.rawValue)))::text[], \(APIKey.sha256(key)), \(creator))
                RETURNING created_at
                """
            ).rows[0]
            return PartnerIdentity(
                province: province, id: id, name: trimmed, scopes: sortedScopes, createdBy: creator, createdAt: try row.decode(0), revokedAt: nil)
        }
        return (identity, key)
    }

    /// The active partner of `province` holding `key`, or nil (unknown, revoked, or another
    /// province's key).
    package func authenticate(key: String, province: String) async throws -> PartnerIdentity? {
        guard APIKey.isPlausible(key, prefix: Self.keyPrefix) else { return nil }
        let hash = APIKey.sha256(key)
        return try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT \(Self.columns) FROM partners WHERE province = \(province) AND key_sha256 = \(hash) AND revoked_at IS NULL
                """
            ).first.map(Self.decode)
        }
    }

    /// Partners, of one province or all, oldest first.
    package func list(province: String? = nil) async throws -> [PartnerIdentity] {
        try await pool.withConnection { connection in
            if let province {
                return try connection.query("SELECT \(Self.columns) FROM partners WHERE province = \(province) ORDER BY created_at, partner_id")
                    .rows.map(Self.decode)
            }
            return try connection.query(
                "SELECT \(Self.columns) FROM partners ORDER BY province, created_at, partner_id /* citus: multi-shard (the admin list of every province) */"
            )
            .rows.map(Self.decode)
        }
    }

    /// Revokes a partner's key at once; revoking twice is harmless.
    package func revoke(province: String, id: UUID) async throws -> PartnerIdentity {
        let found = try await pool.withTransaction { connection in
            try connection.query("UPDATE partners SET revoked_at = now() WHERE province = \(province) AND partner_id = \(id) AND revoked_at IS NULL")
            return try connection.query("SELECT \(Self.columns) FROM partners WHERE province = \(province) AND partner_id = \(id)").first.map(
                Self.decode)
        }
        guard let found else { throw PartnerError.notFound(province: province, id: id) }
        return found
    }

    static let columns: SQLFragment = "province, partner_id, name, array_to_string(scopes, ','), created_by, created_at, revoked_at"

    static func decode(_ row: PostgresRow) throws -> PartnerIdentity {
        PartnerIdentity(
            province: try row.decode(0), id: try row.decode(1), name: try row.decode(2),
            scopes: try row.decode(3, as: String.self).split(separator: ",").compactMap { PartnerScope(rawValue: String($0)) },
            createdBy: try row.decode(4), createdAt: try row.decode(5), revokedAt: try row.decode(6, as: Date?.self))
    }
}
