import Crypto
package import Foundation
package import TanhuiCore
import TanhuiPostgres

/// A citizen's position in their ledger: per province, the last transaction number seen.
///
/// Opaque to clients (`v2.<base64url positions>.<MAC>`), authenticated with the token secret
/// and bound to its citizen (the MAC covers the citizen id), so a forged, corrupted or
/// another citizen's cursor is recognised and answered with a reset, never misread.
/// Transaction numbers are assigned per citizen under a row lock held to commit, so a
/// cursor never skips an entry however concurrent writers interleave.
package struct PullCursor: Sendable, Equatable {
    package var positions: [String: Int64]

    package init(positions: [String: Int64] = [:]) {
        self.positions = positions
    }

    package func encode(citizen: UUID, secret: [UInt8]) -> String {
        let body = positions.keys.sorted().map { "\($0)=\(positions[$0]!)" }.joined(separator: ";")
        let payload = Self.base64url(Data(body.utf8))
        return "v2.\(payload).\(Self.mac(payload, citizen: citizen, secret: secret))"
    }

    package static func decode(_ text: String, citizen: UUID, secret: [UInt8]) -> PullCursor? {
        guard text.utf8.count <= 2048 else { return nil }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v2",
            constantTimeEqual(Array(mac(String(parts[1]), citizen: citizen, secret: secret).utf8), Array(parts[2].utf8))
        else { return nil }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let body = String(data: data, encoding: .utf8) else { return nil }
        var positions: [String: Int64] = [:]
        for pair in body.split(separator: ";") {
            let fields = pair.split(separator: "=")
            guard fields.count == 2, let seq = Int64(fields[1]), seq >= 0, Province.isKnown(String(fields[0])) else { return nil }
            positions[String(fields[0])] = seq
        }
        return PullCursor(positions: positions)
    }

    /// Compares every byte whatever the first difference, so response timing does not reveal
    /// how much of a forged MAC was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
            of: "=", with: "")
    }

    static func mac(_ payload: String, citizen: UUID, secret: [UInt8]) -> String {
        let message = "tanhui-cursor-v2:" + citizen.canonicalText + ":" + payload
        let code = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: secret))
        return base64url(Data(code.prefix(16)))
    }
}

package struct ProvinceBalance: Sendable, Equatable {
    package var province: String
    package var points: Int64
    package var gramsCO2e: Int64
    package var lastSeq: Int64
    /// Points on hold for partners (not spendable; `points` is what is available).
    package var heldPoints: Int64 = 0
    /// The next (at most 3) instants at which some of the citizen's points expire, with how
    /// many (lots not yet expired, by expiry instant; migration 0010).
    package var expiring: [LotLedger.Expiring] = []
}

/// What a pull returns.
package struct PullPage: Sendable {
    package var lines: [StatementLine]
    package var balances: [ProvinceBalance]
    package var next: PullCursor
    package var hasMore: Bool
    /// The cursor was unknown (forged, corrupted, or ahead of this ledger): start over from `next`.
    package var reset: Bool
}

extension LedgerService {
    static func balancesQuery(_ citizen: UUID) -> PostgresQuery {
        "SELECT province, balance_points, balance_grams, last_seq, held_points FROM citizen_accounts WHERE citizen_id = \(citizen) ORDER BY province /* citus: multi-shard (a token names no province) */"
    }

    static func verdictsQuery(citizen: UUID, ids: [UUID]) -> PostgresQuery {
        """
        -- citus: multi-shard (a token names no province)
        SELECT e.event_id, e.status, e.code, e.message, e.province, t.points, t.grams_co2e, t.rule_set_version, t.points_before_caps
        FROM citizen_accounts a
        JOIN events e ON e.province = a.province AND e.event_id = ANY(\(PostgresArray(ids))::uuid[])
        LEFT JOIN ledger_transactions t ON t.province = e.province AND t.event_id = e.event_id AND t.kind = 'award'
        WHERE a.citizen_id = \(citizen) AND e.citizen_id = \(citizen)
        ORDER BY e.province DESC
        """
    }

    package func balances(citizen: UUID, now: Date = Date()) async throws -> [ProvinceBalance] {
        try await pool.withConnection { connection in
            var balances = try connection.query(Self.balancesQuery(citizen)).rows.map {
                ProvinceBalance(
                    province: try $0.decode(0), points: try $0.decode(1), gramsCO2e: try $0.decode(2), lastSeq: try $0.decode(3),
                    heldPoints: try $0.decode(4))
            }
            guard !balances.isEmpty else { return balances }
            var expiring: [String: [LotLedger.Expiring]] = [:]
            for row in try connection.query(LotLedger.expiringQuery(citizen: citizen, provinces: balances.map(\.province), after: now)).rows {
                let province: String = try row.decode(0)
                if expiring[province, default: []].count < LotLedger.expiringShown {
                    expiring[province, default: []].append(LotLedger.Expiring(expiresAt: try row.decode(1), points: try row.decode(2)))
                }
            }
            for index in balances.indices { balances[index].expiring = expiring[balances[index].province] ?? [] }
            return balances
        }
    }

    /// Where a pull starts: the beginning, a decoded cursor, or a cursor that could not be
    /// read (forged or corrupted), which is answered like an unknown position: with a reset.
    package enum PullStart: Sendable {
        case beginning
        case cursor(PullCursor)
        case unreadable
    }

    /// The citizen's ledger changes after `start`, oldest first.
    package func pull(citizen: UUID, from start: PullStart, limit: Int) async throws -> PullPage {
        let balances = try await balances(citizen: citizen)
        let heads = Dictionary(uniqueKeysWithValues: balances.map { ($0.province, $0.lastSeq) })
        switch start {
        case .beginning:
            return try await page(citizen: citizen, from: PullCursor(), limit: limit, balances: balances)
        case .cursor(let cursor) where cursor.positions.allSatisfy({ $0.value <= heads[$0.key] ?? 0 }):
            return try await page(citizen: citizen, from: cursor, limit: limit, balances: balances)
        case .cursor, .unreadable:
            // Unknown position: say so, with a snapshot and the head to continue from.
            return PullPage(lines: [], balances: balances, next: PullCursor(positions: heads), hasMore: false, reset: true)
        }
    }

    private func page(citizen: UUID, from cursor: PullCursor, limit: Int, balances: [ProvinceBalance]) async throws -> PullPage {
        let limit = min(max(limit, 1), Self.maximumPage - 1)
        var lines = try await statement(citizen: citizen, after: cursor.positions, limit: limit + 1)
        let hasMore = lines.count > limit
        if hasMore { lines.removeLast() }
        var next = cursor
        for line in lines { next.positions[line.province] = max(next.positions[line.province] ?? 0, line.citizenSeq) }
        return PullPage(lines: lines, balances: balances, next: next, hasMore: hasMore, reset: false)
    }

    /// Stored verdicts of the citizen's own events (ids of others' events read as unknown).
    /// Looked up by (province, id) in the provinces where the citizen has an account; an id
    /// the citizen used in two provinces reports the first province's verdict.
    package func verdicts(citizen: UUID, ids: [UUID]) async throws -> [UUID: Verdict] {
        try await pool.withConnection { connection in
            var found: [UUID: Verdict] = [:]
            for row in try connection.query(Self.verdictsQuery(citizen: citizen, ids: ids)).rows {
                let id: UUID = try row.decode(0)
                let points = try row.decode(5, as: Int64?.self)
                found[id] = Verdict(
                    id: id.canonicalText, status: Verdict.Status(rawValue: try row.decode(1)) ?? .rejected,
                    code: try row.decode(2, as: String?.self), message: try row.decode(3, as: String?.self),
                    award: try points.map { points in
                        AwardSummary(
                            gramsCO2e: try row.decode(6), points: points, province: try row.decode(4), ruleSetVersion: try row.decode(7),
                            capped: points < (try row.decode(8, as: Int64?.self) ?? points))
                    })
            }
            return found
        }
    }
}
