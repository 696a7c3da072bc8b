import Crypto
package import Foundation
import TanhuiCore
package import TanhuiPostgres

/// Spending points: redeem tokens a citizen's device hands out, and a partner's two-phase
/// redemptions (hold, then capture or void; refunds of captured points).
///
/// Every move is a double-entry ledger transaction between `citizen:<uuid>` (available),
/// `held:<uuid>`, `partner:<uuid>` and (for lot expiry) `expired`, written like a reversal:
/// the province's publication lock shared (so the sealer's watermark covers the seal ids),
/// then the citizen's account row `FOR UPDATE`, which serialises every spend of a citizen
/// with their pushes — and so makes capture and void of one hold strictly ordered.
package final class RedemptionService: Sendable {
    let pool: PostgresPool

    /// Redeem tokens live at most this long.
    package static let tokenLifetime: TimeInterval = 300
    /// Holds live at most this long (the default when a partner names none).
    package static let maximumHoldSeconds = 900
    /// Most points one redemption may hold.
    package static let maximumPoints: Int64 = 1_000_000_000
    /// Token prefix (`thr_` + 43 base64url characters).
    package static let tokenPrefix = "thr_"
    /// The ledger transaction kinds this service writes.
    package static let kinds: Set<String> = ["hold", "capture", "void", "refund", "expiry"]

    package init(pool: PostgresPool) {
        self.pool = pool
    }

    // MARK: Tokens

    package struct RedeemToken: Sendable, Equatable {
        package var token: String
        package var province: String
        package var offerID: UUID?
        package var expiresAt: Date
    }

    /// A single-use token for `citizen` in `province`, optionally bound to one offer.
    package func issueToken(citizen: UUID, province: String, offer: UUID?, now: Date = Date()) async throws -> RedeemToken {
        guard Province.isKnown(province) else { throw RedemptionError.unknownProvince(province) }
        let token = APIKey.generate(prefix: Self.tokenPrefix)
        let created = Self.wholeMilliseconds(now)
        let expires = created.addingTimeInterval(Self.tokenLifetime)
        try await pool.withConnection { connection in
            if let offer {
                let found = try connection.query(
                    "SELECT valid_to > \(created) FROM offers WHERE province = \(province) AND offer_id = \(offer)"
                ).first
                guard let found else { throw RedemptionError.unknownOffer(offer) }
                guard try found.decode(0, as: Bool.self) else { throw RedemptionError.offerNotValid(offer) }
            }
            try connection.query(
                """
                INSERT INTO redeem_tokens (province, token_sha256, citizen_id, offer_id, created_at, expires_at)
                VALUES (\(province), \(APIKey.sha256(token)), \(citizen), \(offer), \(created), \(expires))
                """)
        }
        return RedeemToken(token: token, province: province, offerID: offer, expiresAt: expires)
    }

    // MARK: Redemptions

    /// What a partner asks to hold: a token the citizen showed, and an offer or a number of points.
    package struct HoldRequest: Sendable, Equatable {
        package var id: UUID
        package var redeemToken: String
        package var offerID: UUID?
        package var points: Int64?
        package var partnerRef: String?
        package var holdSeconds: Int

        package init(id: UUID, redeemToken: String, offerID: UUID?, points: Int64?, partnerRef: String?, holdSeconds: Int = maximumHoldSeconds) {
            self.id = id
            self.redeemToken = redeemToken
            self.offerID = offerID
            self.points = points
            self.partnerRef = partnerRef
            self.holdSeconds = holdSeconds
        }

        /// What "the same request" means for idempotency (the hold time included).
        var sha256: String {
            SHA256.hex(
                [redeemToken, offerID?.canonicalText ?? "-", points.map(String.init) ?? "-", partnerRef ?? "-", String(holdSeconds)]
                    .map { "\($0.utf8.count):\($0);" }.joined())
        }
    }

    package enum State: String, Sendable, Codable {
        case held, captured, voided, expired
    }

    /// A redemption as its partner sees it.
    package struct Redemption: Sendable, Equatable {
        package var province: String
        package var partnerID: UUID
        package var id: UUID
        package var citizenID: UUID
        package var offerID: UUID?
        package var points: Int64
        package var partnerRef: String?
        package var state: State
        package var createdAt: Date
        package var expiresAt: Date
        package var resolvedAt: Date?
        package var refundedPoints: Int64
    }

    /// Places a hold. Idempotent by `request.id` for this partner, forever.
    package func hold(_ request: HoldRequest, partner: PartnerIdentity, now: Date = Date()) async throws -> Redemption {
        guard partner.scopes.contains(.redeem) else { throw RedemptionError.notAllowed }
        guard (request.offerID == nil) != (request.points == nil) else { throw RedemptionError.invalid("give exactly one of offer_id and points") }
        if let points = request.points, !(1...Self.maximumPoints).contains(points) {
            throw RedemptionError.invalid("points must be an integer in 1…\(Self.maximumPoints)")
        }
        if let ref = request.partnerRef, !Self.isBoundedText(ref) {
            throw RedemptionError.invalid("partner_ref is at most 200 characters, none a control character")
        }
        guard (1...Self.maximumHoldSeconds).contains(request.holdSeconds) else {
            throw RedemptionError.invalid("hold_seconds must be in 1…\(Self.maximumHoldSeconds)")
        }
        let province = partner.province
        let requestHash = request.sha256
        let now = Self.wholeMilliseconds(now)
        do {
            return try await pool.withTransaction { connection in
                try Self.lockPublicationShared(province, on: connection)
                if let existing = try Self.find(province: province, partner: partner.id, id: request.id, on: connection) {
                    guard existing.hash == requestHash else { throw RedemptionError.idReused(request.id) }
                    return existing.redemption
                }
                guard APIKey.isPlausible(request.redeemToken, prefix: Self.tokenPrefix) else { throw RedemptionError.tokenUnknown }
                let tokenHash = APIKey.sha256(request.redeemToken)
                guard
                    let token = try connection.query(
                        """
                        UPDATE redeem_tokens SET used_at = \(now)
                        WHERE province = \(province) AND token_sha256 = \(tokenHash) AND used_at IS NULL AND expires_at > \(now)
                        RETURNING citizen_id, offer_id
                        """
                    ).first
                else {
                    let state = try connection.query(
                        "SELECT used_at IS NOT NULL FROM redeem_tokens WHERE province = \(province) AND token_sha256 = \(tokenHash)"
                    ).first
                    guard let state else { throw RedemptionError.tokenUnknown }
                    // A concurrent request under the same id may have used it: answer as a replay.
                    if let existing = try Self.find(province: province, partner: partner.id, id: request.id, on: connection) {
                        guard existing.hash == requestHash else { throw RedemptionError.idReused(request.id) }
                        return existing.redemption
                    }
                    let used = try state.decode(0, as: Bool.self)
                    throw used ? RedemptionError.tokenUsed : RedemptionError.tokenExpired
                }
                let citizen: UUID = try token.decode(0)
                let boundOffer = try token.decode(1, as: UUID?.self)
                if let boundOffer, boundOffer != request.offerID { throw RedemptionError.tokenBoundToOffer(boundOffer) }
                var points = request.points ?? 0
                if let offerID = request.offerID {
                    points = try Self.claimOfferUnit(offerID, province: province, partner: partner.id, citizen: citizen, now: now, on: connection)
                }
                var account = try Self.lockAccount(province: province, citizen: citizen, on: connection)
                // Lots already due expire first, so a hold never reserves points that have lapsed.
                if try LotLedger.expireDue(province: province, citizen: citizen, asOf: now, account: account, now: now, on: connection) > 0 {
                    account = try Self.lockAccount(province: province, citizen: citizen, on: connection)
                }
                guard account.available >= points else { throw RedemptionError.insufficientPoints(available: account.available, asked: points) }
                let transactionID = try Self.post(
                    kind: "hold", province: province, citizen: citizen, recordID: request.id, account: account,
                    entries: [(Self.citizenAccount(citizen), -points), (Self.heldAccount(citizen), points)], availableDelta: -points,
                    heldDelta: points, actor: partner.actor, now: now, on: connection)
                let expires = now.addingTimeInterval(TimeInterval(request.holdSeconds))
                try connection.query(
                    """
                    INSERT INTO redemptions (province, partner_id, redemption_id, request_sha256, citizen_id, offer_id, points, partner_ref,
                        hold_transaction_id, created_at, expires_at, seal_id)
                    VALUES (\(province), \(partner.id), \(request.id), \(requestHash), \(citizen), \(request.offerID), \(points), \(request.partnerRef),
                        \(transactionID), \(now), \(expires), nextval('ledger_transaction_ids'))
                    """)
                return Redemption(
                    province: province, partnerID: partner.id, id: request.id, citizenID: citizen, offerID: request.offerID, points: points,
                    partnerRef: request.partnerRef, state: .held, createdAt: now, expiresAt: expires, resolvedAt: nil, refundedPoints: 0)
            }
        } catch let error as PostgresError where error.isUniqueViolation {
            // A concurrent request under the same id won; answer as a replay would.
            let existing = try await pool.withConnection { connection in
                try Self.find(province: province, partner: partner.id, id: request.id, on: connection)
            }
            guard let existing else { throw error }
            guard existing.hash == requestHash else { throw RedemptionError.idReused(request.id) }
            return existing.redemption
        }
    }

    /// Captures a hold: the held points go to the partner. Idempotent; refused after a void or the TTL.
    package func capture(id: UUID, partner: PartnerIdentity, now: Date = Date()) async throws -> Redemption {
        try await resolve(id: id, partner: partner, as: .captured, now: now)
    }

    /// Voids a hold: the held points return to the citizen. Idempotent; refused after a capture.
    package func void(id: UUID, partner: PartnerIdentity, now: Date = Date()) async throws -> Redemption {
        try await resolve(id: id, partner: partner, as: .voided, now: now)
    }

    private func resolve(id: UUID, partner: PartnerIdentity, as outcome: State, now: Date) async throws -> Redemption {
        guard partner.scopes.contains(.redeem) else { throw RedemptionError.notAllowed }
        let province = partner.province
        let now = Self.wholeMilliseconds(now)
        return try await pool.withTransaction { connection in
            try Self.lockPublicationShared(province, on: connection)
            guard let found = try Self.find(province: province, partner: partner.id, id: id, on: connection) else {
                throw RedemptionError.notFound(id)
            }
            // The account row lock orders capture and void of this hold; re-read after it.
            let account = try Self.lockAccount(province: province, citizen: found.redemption.citizenID, on: connection)
            let current = try Self.find(province: province, partner: partner.id, id: id, on: connection)!.redemption
            if current.state == outcome { return current }
            guard current.state == .held else { throw RedemptionError.alreadyResolved(id, current.state) }
            if outcome == .captured && now >= current.expiresAt { throw RedemptionError.holdExpired(id) }
            return try Self.writeOutcome(current, outcome: outcome, account: account, actor: partner.actor, now: now, on: connection)
        }
    }

    /// Refunds captured points to the citizen. Idempotent by `refundID` for this partner.
    package func refund(id: UUID, refundID: UUID, points: Int64, partner: PartnerIdentity, now: Date = Date()) async throws -> Redemption {
        guard partner.scopes.contains(.redeem) else { throw RedemptionError.notAllowed }
        guard (1...Self.maximumPoints).contains(points) else { throw RedemptionError.invalid("points must be an integer in 1…\(Self.maximumPoints)") }
        let province = partner.province
        let now = Self.wholeMilliseconds(now)
        do {
            return try await pool.withTransaction { connection in
                try Self.lockPublicationShared(province, on: connection)
                guard let found = try Self.find(province: province, partner: partner.id, id: id, on: connection) else {
                    throw RedemptionError.notFound(id)
                }
                let account = try Self.lockAccount(province: province, citizen: found.redemption.citizenID, on: connection)
                if let prior = try connection.query(
                    "SELECT redemption_id, points FROM redemption_refunds WHERE province = \(province) AND partner_id = \(partner.id) AND refund_id = \(refundID)"
                ).first {
                    guard try prior.decode(0, as: UUID.self) == id, try prior.decode(1, as: Int64.self) == points else {
                        throw RedemptionError.idReused(refundID)
                    }
                    return try Self.find(province: province, partner: partner.id, id: id, on: connection)!.redemption
                }
                let current = try Self.find(province: province, partner: partner.id, id: id, on: connection)!.redemption
                guard current.state == .captured else { throw RedemptionError.notCaptured(id) }
                guard points <= current.points - current.refundedPoints else {
                    throw RedemptionError.refundTooLarge(refundable: current.points - current.refundedPoints, asked: points)
                }
                // Points go back to the lots the capture drew; those of a lot past its expiry expire at once.
                let returns = try LotLedger.planRefund(
                    points, refundable: current.points - current.refundedPoints, province: province, partner: partner.id, redemption: id, at: now,
                    on: connection)
                let lapsed = returns.filter(\.expired).reduce(Int64(0)) { $0 + $1.points }
                var entries = [(Self.partnerAccount(partner.id), -points)]
                if points > lapsed { entries.append((Self.citizenAccount(current.citizenID), points - lapsed)) }
                if lapsed > 0 { entries.append(("expired", lapsed)) }
                let transactionID = try Self.post(
                    kind: "refund", province: province, citizen: current.citizenID, recordID: refundID, account: account, entries: entries,
                    availableDelta: points - lapsed, heldDelta: 0, actor: partner.actor, now: now, on: connection)
                try LotLedger.recordRefund(
                    returns, province: province, citizen: current.citizenID, transactionID: transactionID, at: now, on: connection)
                try connection.query(
                    """
                    INSERT INTO redemption_refunds (province, partner_id, refund_id, redemption_id, points, transaction_id, created_at, seal_id)
                    VALUES (\(province), \(partner.id), \(refundID), \(id), \(points), \(transactionID), \(now), nextval('ledger_transaction_ids'))
                    """)
                var refunded = current
                refunded.refundedPoints += points
                return refunded
            }
        } catch let error as PostgresError where error.isUniqueViolation {
            throw RedemptionError.idReused(refundID)
        }
    }

    /// The partner's view of one of its redemptions.
    package func redemption(id: UUID, partner: PartnerIdentity) async throws -> Redemption {
        let found = try await pool.withConnection { connection in
            try Self.find(province: partner.province, partner: partner.id, id: id, on: connection)
        }
        guard let found else { throw RedemptionError.notFound(id) }
        return found.redemption
    }

    /// Voids every hold of every province (or one) whose TTL has passed at `asOf`, oldest
    /// first, at most `limit` per province per call; returns how many were voided.
    @discardableResult
    package func expireHolds(asOf: Date = Date(), province only: String? = nil, limit: Int = 1000) async throws -> Int {
        let asOf = Self.wholeMilliseconds(asOf)
        let provinces = try await pool.withConnection { connection in
            try connection.query(
                "SELECT DISTINCT province FROM partners WHERE \(only)::text IS NULL OR province = \(only) ORDER BY province /* citus: multi-shard (every province's holds) */"
            ).rows.map { try $0.decode(0, as: String.self) }
        }
        var voided = 0
        for province in provinces {
            let due = try await pool.withConnection { connection in
                try connection.query(
                    """
                    SELECT r.partner_id, r.redemption_id FROM redemptions r
                    WHERE r.province = \(province) AND r.expires_at <= \(asOf)
                      AND NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                                      AND o.redemption_id = r.redemption_id)
                    ORDER BY r.expires_at LIMIT \(limit)
                    """
                ).rows.map { (try $0.decode(0, as: UUID.self), try $0.decode(1, as: UUID.self)) }
            }
            for (partner, id) in due {
                let done = try await pool.withTransaction { connection -> Bool in
                    try Self.lockPublicationShared(province, on: connection)
                    guard let found = try Self.find(province: province, partner: partner, id: id, on: connection) else { return false }
                    let account = try Self.lockAccount(province: province, citizen: found.redemption.citizenID, on: connection)
                    let current = try Self.find(province: province, partner: partner, id: id, on: connection)!.redemption
                    guard current.state == .held, current.expiresAt <= asOf else { return false }
                    // The outcome is dated at the TTL (when the hold ended); its ledger
                    // transaction when it was written, like every other.
                    _ = try Self.writeOutcome(
                        current, outcome: .expired, account: account, actor: "hold expiry", now: Self.wholeMilliseconds(Date()),
                        outcomeAt: current.expiresAt, on: connection)
                    return true
                }
                if done { voided += 1 }
            }
        }
        return voided
    }

    /// At most 200 Unicode scalars (what PostgreSQL's length() counts), none below U+0020.
    package static func isBoundedText(_ text: String) -> Bool {
        text.unicodeScalars.count <= 200 && !text.unicodeScalars.contains { $0.value < 0x20 }
    }

    // MARK: Ledger writes

    static func citizenAccount(_ citizen: UUID) -> String { "citizen:" + citizen.canonicalText }
    static func heldAccount(_ citizen: UUID) -> String { "held:" + citizen.canonicalText }
    static func partnerAccount(_ partner: UUID) -> String { "partner:" + partner.canonicalText }

    /// Instants are stored to the millisecond.
    static func wholeMilliseconds(_ date: Date) -> Date { Date(timeIntervalSince1970: Double(Timestamp.milliseconds(of: date)) / 1000) }

    static func lockPublicationShared(_ province: String, on connection: PostgresConnection) throws {
        try connection.query("SELECT pg_advisory_xact_lock_shared(hashtext(\(RuleSetService.publicationLockKey(province))))")
    }

    struct LockedAccount {
        var lastSeq: Int64
        var available: Int64
        var held: Int64
    }

    /// The citizen's account row, locked; a citizen without one has nothing to spend.
    static func lockAccount(province: String, citizen: UUID, on connection: PostgresConnection) throws -> LockedAccount {
        guard
            let row = try connection.query(
                """
                SELECT last_seq, balance_points, held_points FROM citizen_accounts WHERE province = \(province) AND citizen_id = \(citizen) FOR UPDATE
                """
            ).first
        else { return LockedAccount(lastSeq: -1, available: 0, held: 0) }
        return LockedAccount(lastSeq: try row.decode(0), available: try row.decode(1), held: try row.decode(2))
    }

    /// Appends one balanced transaction of the citizen (next citizen_seq) and updates the
    /// account caches. `recordID` names the redemption or refund (in the event_id column).
    static func post(
        kind: String, province: String, citizen: UUID, recordID: UUID, account: LockedAccount, entries: [(String, Int64)], availableDelta: Int64,
        heldDelta: Int64, actor: String, now: Date, on connection: PostgresConnection
    ) throws -> Int64 {
        precondition(account.lastSeq >= 0, "callers check the account exists")
        precondition(entries.reduce(0) { $0 + $1.1 } == 0, "entries balance")
        let transactionID = try connection.query("SELECT nextval('ledger_transaction_ids')").scalar(Int64.self)
        let seq = account.lastSeq + 1
        _ = try connection.pipeline([
            """
            INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e,
                rule_set_version, methodology, actor, created_at)
            SELECT \(province), \(transactionID), \(kind), \(citizen), \(seq), \(recordID), \(availableDelta), 0, max(version), 'redemption',
                \(actor), \(now)
            FROM rule_sets WHERE province = \(province)
            RETURNING 1
            """,
            """
            INSERT INTO ledger_entries (province, transaction_id, account, points)
            SELECT \(province), \(transactionID), a, p FROM unnest(\(PostgresArray(entries.map(\.0)))::text[], \(PostgresArray(entries.map(\.1)))::bigint[]) AS e(a, p)
            RETURNING 1
            """,
            """
            UPDATE citizen_accounts SET balance_points = balance_points + \(availableDelta), held_points = held_points + \(heldDelta), last_seq = \(seq)
            WHERE province = \(province) AND citizen_id = \(citizen)
            """,
        ])
        return transactionID
    }

    /// Writes a hold's capture or void (by the partner, or `expired` at its TTL).
    static func writeOutcome(
        _ current: Redemption, outcome: State, account: LockedAccount, actor: String, now: Date, outcomeAt: Date? = nil,
        on connection: PostgresConnection
    ) throws -> Redemption {
        let outcomeAt = outcomeAt ?? now
        let points = current.points
        let citizen = current.citizenID
        let captured = outcome == .captured
        let transactionID = try post(
            kind: captured ? "capture" : "void", province: current.province, citizen: citizen, recordID: current.id, account: account,
            entries: [(heldAccount(citizen), -points), (captured ? partnerAccount(current.partnerID) : citizenAccount(citizen), points)],
            availableDelta: captured ? 0 : points, heldDelta: -points, actor: actor, now: now, on: connection)
        // A capture spends the points: lots oldest expiry first, the draw recorded.
        if captured {
            try LotLedger.draw(points, province: current.province, citizen: citizen, transactionID: transactionID, at: now, on: connection)
        }
        try connection.query(
            """
            INSERT INTO redemption_outcomes (province, partner_id, redemption_id, outcome, transaction_id, created_at, seal_id)
            VALUES (\(current.province), \(current.partnerID), \(current.id), \(outcome.rawValue), \(transactionID), \(outcomeAt), nextval('ledger_transaction_ids'))
            """)
        var resolved = current
        resolved.state = outcome
        resolved.resolvedAt = outcomeAt
        return resolved
    }

    /// Takes one unit of an offer for `citizen`, under the offer's lock; returns its cost.
    static func claimOfferUnit(
        _ offerID: UUID, province: String, partner: UUID, citizen: UUID, now: Date, on connection: PostgresConnection
    ) throws
        -> Int64
    {
        try connection.query("SELECT pg_advisory_xact_lock(hashtext(\("tanhui.offer." + province + "." + offerID.canonicalText)))")
        guard
            let offer = try connection.query(
                """
                SELECT partner_id, points_cost, total_limit, per_citizen_count::bigint, per_citizen_period, valid_from <= \(now) AND \(now) < valid_to
                FROM offers WHERE province = \(province) AND offer_id = \(offerID)
                """
            ).first
        else { throw RedemptionError.unknownOffer(offerID) }
        if let only = try offer.decode(0, as: UUID?.self), only != partner { throw RedemptionError.unknownOffer(offerID) }
        guard try offer.decode(5, as: Bool.self) else { throw RedemptionError.offerNotValid(offerID) }
        // A unit stays taken unless its hold was voided or timed out.
        let live: SQLFragment = """
            NOT EXISTS (SELECT 1 FROM redemption_outcomes o WHERE o.province = r.province AND o.partner_id = r.partner_id
                        AND o.redemption_id = r.redemption_id AND o.outcome <> 'captured')
            /* citus: multi-shard (a fragment: the statements using it fix r.province) */
            """
        if let total = try offer.decode(2, as: Int64?.self) {
            let used = try connection.query(
                "SELECT count(*) FROM redemptions r WHERE r.province = \(province) AND r.offer_id = \(offerID) AND \(live)"
            ).scalar(Int64.self)
            if used >= total { throw RedemptionError.offerSoldOut(offerID) }
        }
        if let count = try offer.decode(3, as: Int64?.self), let period = try offer.decode(4, as: String?.self) {
            let since = OfferService.periodStart(period, at: now)
            let used = try connection.query(
                """
                SELECT count(*) FROM redemptions r
                WHERE r.province = \(province) AND r.offer_id = \(offerID) AND r.citizen_id = \(citizen) AND r.created_at >= \(since) AND \(live)
                """
            ).scalar(Int64.self)
            if used >= count { throw RedemptionError.offerLimitReached(offerID) }
        }
        return try offer.decode(1)
    }

    struct Found {
        var redemption: Redemption
        var hash: String
    }

    static func find(province: String, partner: UUID, id: UUID, on connection: PostgresConnection) throws -> Found? {
        guard
            let row = try connection.query(
                """
                SELECT r.citizen_id, r.offer_id, r.points, r.partner_ref, r.created_at, r.expires_at, r.request_sha256, o.outcome, o.created_at,
                       (SELECT coalesce(sum(f.points), 0) FROM redemption_refunds f
                        WHERE f.province = r.province AND f.partner_id = r.partner_id AND f.redemption_id = r.redemption_id)::bigint
                FROM redemptions r
                LEFT JOIN redemption_outcomes o ON o.province = r.province AND o.partner_id = r.partner_id AND o.redemption_id = r.redemption_id
                WHERE r.province = \(province) AND r.partner_id = \(partner) AND r.redemption_id = \(id)
                """
            ).first
        else { return nil }
        let outcome = try row.decode(7, as: String?.self)
        return Found(
            redemption: Redemption(
                province: province, partnerID: partner, id: id, citizenID: try row.decode(0), offerID: try row.decode(1, as: UUID?.self),
                points: try row.decode(2), partnerRef: try row.decode(3, as: String?.self), state: outcome.flatMap(State.init(rawValue:)) ?? .held,
                createdAt: try row.decode(4), expiresAt: try row.decode(5), resolvedAt: try row.decode(8, as: Date?.self),
                refundedPoints: try row.decode(9)),
            hash: try row.decode(6))
    }
}

/// Refusals of the redemption API, each with the HTTP status it answers with.
package enum RedemptionError: Error, Sendable, Equatable, CustomStringConvertible, ServiceRefusal {
    case invalid(String)
    case unknownProvince(String)
    case notAllowed
    case notFound(UUID)
    case idReused(UUID)
    case tokenUnknown
    case tokenUsed
    case tokenExpired
    case tokenBoundToOffer(UUID)
    case insufficientPoints(available: Int64, asked: Int64)
    case alreadyResolved(UUID, RedemptionService.State)
    case holdExpired(UUID)
    case notCaptured(UUID)
    case refundTooLarge(refundable: Int64, asked: Int64)
    case unknownOffer(UUID)
    case offerNotValid(UUID)
    case offerSoldOut(UUID)
    case offerLimitReached(UUID)

    package var code: String {
        switch self {
        case .invalid: return "malformed_request"
        case .unknownProvince: return "unknown_province"
        case .notAllowed: return "forbidden"
        case .notFound: return "not_found"
        case .idReused: return "id_reused"
        case .tokenUnknown: return "token_unknown"
        case .tokenUsed: return "token_used"
        case .tokenExpired: return "token_expired"
        case .tokenBoundToOffer: return "token_bound_to_offer"
        case .insufficientPoints: return "insufficient_points"
        case .alreadyResolved: return "already_resolved"
        case .holdExpired: return "hold_expired"
        case .notCaptured: return "not_captured"
        case .refundTooLarge: return "refund_too_large"
        case .unknownOffer: return "unknown_offer"
        case .offerNotValid: return "offer_not_valid"
        case .offerSoldOut: return "offer_sold_out"
        case .offerLimitReached: return "offer_limit_reached"
        }
    }

    package var description: String {
        switch self {
        case .invalid(let text): return text
        case .unknownProvince(let code): return "unknown province \(code)"
        case .notAllowed: return "this partner key lacks the redeem scope"
        case .notFound(let id): return "no redemption \(id.canonicalText) of this partner"
        case .idReused(let id): return "id \(id.canonicalText) was already used for a different request"
        case .tokenUnknown: return "the redeem token is not known in this province"
        case .tokenUsed: return "the redeem token was already used"
        case .tokenExpired: return "the redeem token has expired; ask the citizen for a new one"
        case .tokenBoundToOffer(let id): return "the redeem token is for offer \(id.canonicalText) only"
        case .insufficientPoints(let available, let asked): return "the citizen has \(available) points available, \(asked) asked"
        case .alreadyResolved(let id, let state): return "redemption \(id.canonicalText) is already \(state.rawValue)"
        case .holdExpired(let id): return "the hold of redemption \(id.canonicalText) has expired"
        case .notCaptured(let id): return "redemption \(id.canonicalText) is not captured; only captured points can be refunded"
        case .refundTooLarge(let refundable, let asked): return "at most \(refundable) points can still be refunded, \(asked) asked"
        case .unknownOffer(let id): return "no offer \(id.canonicalText) of this partner"
        case .offerNotValid(let id): return "offer \(id.canonicalText) is outside its validity window"
        case .offerSoldOut(let id): return "offer \(id.canonicalText) has no units left"
        case .offerLimitReached(let id): return "the citizen has reached the per-citizen limit of offer \(id.canonicalText)"
        }
    }
}
