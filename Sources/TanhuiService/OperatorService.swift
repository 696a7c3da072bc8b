package import Foundation
import TanhuiCore
package import TanhuiPostgres

/// A province operator, as authenticated by an API key.
package struct OperatorIdentity: Sendable, Equatable, Codable {
    package var id: UUID
    package var name: String
    package var provinces: [String]
    /// What the key may do in rule-set governance: `author`, `approver`, `publisher`.
    package var roles: [String] = OperatorRole.allCases.map(\.rawValue)
    package var createdAt: Date
    package var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, provinces, roles
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }
}

package enum OperatorError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidName
    case unknownProvince(String)
    case notFound(UUID)
    case unknownRole(String)

    package var description: String {
        switch self {
        case .unknownRole(let role): return "unknown role \(role) (author, approver, publisher)"
        case .invalidName: return "operator name must be 1–200 characters"
        case .unknownProvince(let code): return "unknown province \(code) (use ISO 3166-2:CN codes such as CN-GD)"
        case .notFound(let id): return "no operator \(id.canonicalText)"
        }
    }
}

/// What an operator key may do in rule-set governance (a key may hold several).
package enum OperatorRole: String, Sendable, CaseIterable, Codable {
    case author, approver, publisher
}

extension OperatorIdentity {
    package func has(_ role: OperatorRole) -> Bool { roles.contains(role.rawValue) }
}

/// Operator API keys: shown once at creation, stored only as SHA-256, scoped to provinces.
package final class OperatorService: Sendable {
    let pool: PostgresPool

    /// Keys look like `thk_` + 43 base64url characters (32 random bytes).
    package static let keyPrefix = "thk_"

    package init(pool: PostgresPool) {
        self.pool = pool
    }

    static func hash(key: String) -> String {
        APIKey.sha256(key)
    }

    /// Creates an operator; returns it with its key, which is not stored and cannot be shown again.
    package func create(
        name: String, provinces: [String], roles: [String] = OperatorRole.allCases.map(\.rawValue)
    ) async throws -> (OperatorIdentity, key: String) {
        for role in roles where OperatorRole(rawValue: role) == nil { throw OperatorError.unknownRole(role) }
        let roleList = OperatorRole.allCases.map(\.rawValue).filter(roles.contains)
        guard !roleList.isEmpty else { throw OperatorError.unknownRole("(none)") }
        let roleArray = "{" + roleList.joined(separator: ",") + "}"
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(trimmed.count) else { throw OperatorError.invalidName }
        guard !provinces.isEmpty else { throw OperatorError.unknownProvince("(none)") }
        for code in provinces where !Province.isKnown(code) { throw OperatorError.unknownProvince(code) }
        let key = APIKey.generate(prefix: Self.keyPrefix)
        let id = UUID()
        let sortedProvinces = Array(Set(provinces)).sorted()
        let provinceArray = "{" + sortedProvinces.joined(separator: ",") + "}"
        let identity = try await pool.withConnection { connection in
            let row = try connection.query(
                """
                INSERT INTO operators (id, name, key_sha256, provinces, roles)
                VALUES (\(id), \(trimmed), \(Self.hash(key: key)), \(provinceArray)::text[], \(roleArray)::text[])
                RETURNING created_at
                """
            ).rows[0]
            return OperatorIdentity(id: id, name: trimmed, provinces: sortedProvinces, roles: roleList, createdAt: try row.decode(0), revokedAt: nil)
        }
        return (identity, key)
    }

    /// The active operator holding `key`, or nil (unknown or revoked).
    package func authenticate(key: String) async throws -> OperatorIdentity? {
        guard APIKey.isPlausible(key, prefix: Self.keyPrefix) else { return nil }
        let hash = Self.hash(key: key)
        return try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT id, name, array_to_string(provinces, ','), created_at, revoked_at, array_to_string(roles, ',') FROM operators
                WHERE key_sha256 = \(hash) AND revoked_at IS NULL
                """
            ).first.map(Self.decode)
        }
    }

    package func list() async throws -> [OperatorIdentity] {
        try await pool.withConnection { connection in
            try connection.query(
                "SELECT id, name, array_to_string(provinces, ','), created_at, revoked_at, array_to_string(roles, ',') FROM operators ORDER BY created_at, id"
            )
            .rows.map(Self.decode)
        }
    }

    /// Revokes a key; revoking twice is harmless.
    package func revoke(id: UUID) async throws -> OperatorIdentity {
        let found = try await pool.withTransaction { connection in
            // Not `coalesce(revoked_at, now())`: Citus refuses non-immutable functions inside
            // COALESCE or CASE of a modification (operators is a reference table there).
            try connection.query("UPDATE operators SET revoked_at = now() WHERE id = \(id) AND revoked_at IS NULL")
            return try connection.query(
                """
                SELECT id, name, array_to_string(provinces, ','), created_at, revoked_at, array_to_string(roles, ',') FROM operators WHERE id = \(id)
                """
            ).first.map(Self.decode)
        }
        guard let found else { throw OperatorError.notFound(id) }
        return found
    }

    private static func decode(_ row: PostgresRow) throws -> OperatorIdentity {
        OperatorIdentity(
            id: try row.decode(0), name: try row.decode(1),
            provinces: try row.decode(2, as: String.self).split(separator: ",").map(String.init),
            roles: try row.decode(5, as: String.self).split(separator: ",").map(String.init),
            createdAt: try row.decode(3), revokedAt: try row.decode(4, as: Date?.self)
        )
    }
}
