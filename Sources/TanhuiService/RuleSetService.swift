import Crypto
package import Foundation
import Synchronization
package import TanhuiCore
package import TanhuiPostgres

/// A published version as listed: everything but the document itself.
package struct RuleSetSummary: Sendable, Equatable, Codable {
    package var province: String
    package var version: Int
    package var effectiveFrom: Date
    package var methodology: String
    package var contentSHA256: String
    package var publishedAt: Date
    package var publishedBy: String
    /// The document's `valid_until` (end of the approval), so operators see when renewal is due.
    package var validUntil: Date?

    enum CodingKeys: String, CodingKey {
        case province, version, methodology
        case effectiveFrom = "effective_from"
        case validUntil = "valid_until"
        case contentSHA256 = "content_sha256"
        case publishedAt = "published_at"
        case publishedBy = "published_by"
    }
}

/// A published version with its document exactly as it was published.
package struct StoredRuleSet: Sendable {
    package var summary: RuleSetSummary
    package var document: String
    package var format: String
}

/// The document has problems; nothing was stored. Every problem is listed.
package struct RuleSetRejected: Error, Sendable {
    package let issues: [ValidationIssue]

    package init(issues: [ValidationIssue]) {
        self.issues = issues
    }
}

package enum RuleSetLookupError: Error, Sendable, Equatable {
    case notFound(province: String, version: Int)
    /// The caller may not act for this province (an operator key scoped elsewhere).
    case forbidden(province: String)
}

/// What `publish` did.
package enum PublishOutcome: Sendable {
    case published(RuleSetSummary)
    /// `ifAbsent` and the identical document was already published under that version.
    case alreadyPublished(RuleSetSummary)

    package var summary: RuleSetSummary {
        switch self {
        case .published(let summary), .alreadyPublished(let summary): return summary
        }
    }
}

/// Totals of a dry run.
/// Whose events a simulation judges: a citizen's device (self-reported) or a feed partner's records.
package enum SimulationSource: String, Sendable, CaseIterable {
    case device
    case partner
}

package struct SimulationReport: Sendable {
    package struct Line: Sendable {
        package let eventID: String
        package let evaluation: Evaluation?
        /// Set when the event itself is malformed (never evaluated).
        package let invalid: [ValidationIssue]
    }

    package var lines: [Line] = []
    package var accepted = 0
    package var rejected = 0
    package var invalid = 0
    package var gramsCO2e: Int64 = 0
    package var points: Int64 = 0
    package var rejectionsByCode: [String: Int] = [:]
}

/// Province rule sets: validation with database facts, atomic publication, history lookup.
///
/// Versions are immutable once published (the table is append-only); the parsed history of
/// each province is cached and refreshed only when a newer version appears.
package final class RuleSetService: Sendable {
    let pool: PostgresPool
    private let cache = Mutex<[String: CachedHistory]>([:])

    struct CachedHistory: Sendable {
        let latestVersion: Int
        let history: RuleSetHistory
    }

    package init(pool: PostgresPool) {
        self.pool = pool
    }

    /// SHA-256 of the document's UTF-8 bytes, lower-case hex.
    package static func contentHash(of document: String) -> String {
        SHA256.hex(document)
    }

    static func format(of document: String) -> String {
        document.drop(while: { $0.isWhitespace }).first == "{" ? "json" : "yaml"
    }

    /// Parses and checks the document, including the checks that need the database
    /// (version above the latest, no retroactive effective_from). Changes nothing.
    package func validate(document: String) async throws -> RuleSet {
        let ruleSet = try Self.parse(document)
        try await pool.withConnection { connection in
            let issues = try Self.publicationIssues(ruleSet, on: connection)
            if !issues.isEmpty { throw RuleSetRejected(issues: issues) }
        }
        return ruleSet
    }

    static func parse(_ document: String) throws(RuleSetRejected) -> RuleSet {
        do {
            return try RuleSetParser.parse(document)
        } catch {
            throw RuleSetRejected(issues: error.issues)
        }
    }

    static func publicationIssues(_ ruleSet: RuleSet, on connection: PostgresConnection) throws -> [ValidationIssue] {
        // Two statements (on Citus the first is routed to the province's shard whole, and a
        // function reading a distributed table, events, must not run there), one round trip:
        // the exclusive publication lock is held meanwhile, so the province's pushes wait.
        let results = try connection.pipeline([
            "SELECT max(version) FROM rule_sets WHERE province = \(ruleSet.province)",
            "SELECT tanhui_province_judged_through(\(ruleSet.province))",
        ])
        let latest = try results[0].rows[0].decode(0, as: Int?.self)
        // A verdict exists at `judged`, so the new version must start strictly after it:
        // from the next whole second, an instant operators can write down.
        let judged = try results[1].rows[0].decode(0, as: Date?.self)
        return RuleSetValidator.checkPublication(
            ruleSet,
            latestPublishedVersion: latest,
            earliestAllowedEffectiveFrom: judged.map { Date(timeIntervalSince1970: ($0.timeIntervalSince1970 + 0.000_001).rounded(.down) + 1) }
        )
    }

    /// Validates and stores the document atomically. `allowedProvinces` (nil: any) scopes
    /// operators; `ifAbsent` makes republishing the identical version a no-op (start-up scripts).
    /// `directBy` (an operator key over HTTP) publishes only where the province's policy allows
    /// direct publication; without it the caller is an admin with database credentials (CLI).
    package func publish(
        document: String, publishedBy: String, allowedProvinces: Set<String>? = nil, ifAbsent: Bool = false,
        directBy: OperatorIdentity? = nil
    ) async throws -> PublishOutcome {
        let ruleSet = try Self.parse(document)
        if let allowedProvinces, !allowedProvinces.contains(ruleSet.province) {
            throw RuleSetLookupError.forbidden(province: ruleSet.province)
        }
        let hash = Self.contentHash(of: document)
        let outcome = try await pool.withTransaction { connection -> PublishOutcome in
            // One publisher per province at a time, so "latest version" cannot change under us.
            try connection.query("SELECT pg_advisory_xact_lock(hashtext(\(Self.publicationLockKey(ruleSet.province))))")
            if ifAbsent, let existing = try Self.summary(province: ruleSet.province, version: ruleSet.version, on: connection) {
                guard existing.contentSHA256 == hash else {
                    throw RuleSetRejected(issues: [
                        ValidationIssue(
                            path: "version", code: .versionNotIncreasing,
                            message: "\(ruleSet.province) version \(ruleSet.version) is already published with different content")
                    ])
                }
                return .alreadyPublished(existing)
            }
            // Under the lock, so a policy change cannot slip between the check and the insert.
            let policy = try GovernanceService.policy(province: ruleSet.province, on: connection)
            if let directBy { try GovernanceService.checkDirectPublication(by: directBy, policy: policy) }
            let issues = try Self.publicationIssues(ruleSet, on: connection)
            if !issues.isEmpty { throw RuleSetRejected(issues: issues) }
            try GovernanceService.recordDirectPublication(
                ruleSet: ruleSet, document: document, publishedBy: publishedBy, by: directBy, policy: policy, on: connection)
            return .published(try Self.insertedSummary(ruleSet, on: connection))
        }
        return outcome
    }

    /// Inserts a validated version (the caller holds the publication lock exclusively).
    static func insert(ruleSet: RuleSet, document: String, publishedBy: String, on connection: PostgresConnection) throws {
        let hash = Self.contentHash(of: document)
        let format = Self.format(of: document)
        try connection.query(
            """
            INSERT INTO rule_sets (province, version, effective_from, document, document_format, content_sha256, methodology, published_by)
            VALUES (\(ruleSet.province), \(ruleSet.version), \(ruleSet.effectiveFrom), \(document), \(format), \(hash), \(ruleSet.methodology), \(publishedBy))
            """)
    }

    static func insertedSummary(_ ruleSet: RuleSet, on connection: PostgresConnection) throws -> RuleSetSummary {
        guard let stored = try Self.summary(province: ruleSet.province, version: ruleSet.version, on: connection) else {
            throw PostgresError(kind: .unexpectedResult, operation: "publish", message: "published row not found")
        }
        return stored
    }

    /// Rows of `province, version, effective_from, methodology, content_sha256, published_at,
    /// published_by, document`: `valid_until` lives only in the document (the one place the
    /// judge reads it), so a document that names it is parsed.
    private static func decodeSummary(_ row: PostgresRow) throws -> RuleSetSummary {
        let document: String = try row.decode(7)
        return RuleSetSummary(
            province: try row.decode(0), version: try row.decode(1), effectiveFrom: try row.decode(2),
            methodology: try row.decode(3), contentSHA256: try row.decode(4), publishedAt: try row.decode(5), publishedBy: try row.decode(6),
            validUntil: document.contains("valid_until") ? (try? Self.parse(document))?.validUntil : nil
        )
    }

    static func summary(province: String, version: Int, on connection: PostgresConnection) throws -> RuleSetSummary? {
        try connection.query(
            """
            SELECT province, version, effective_from, methodology, content_sha256, published_at, published_by, document
            FROM rule_sets WHERE province = \(province) AND version = \(version)
            """
        ).first.map(decodeSummary)
    }

    package func list(province: String? = nil) async throws -> [RuleSetSummary] {
        try await pool.withConnection { connection in
            let summaries = try connection.query(
                """
                SELECT province, version, effective_from, methodology, content_sha256, published_at, published_by
                FROM rule_sets WHERE \(province)::text IS NULL OR province = \(province)
                ORDER BY province, version
                """
            ).rows.map { row in
                RuleSetSummary(
                    province: try row.decode(0), version: try row.decode(1), effectiveFrom: try row.decode(2),
                    methodology: try row.decode(3), contentSHA256: try row.decode(4), publishedAt: try row.decode(5), publishedBy: try row.decode(6))
            }
            // valid_until from the parsed histories the judge caches, not by re-reading every document.
            let latest = Dictionary(summaries.map { ($0.province, $0.version) }, uniquingKeysWith: max)
            var validUntil: [String: [Int: Date]] = [:]
            for (code, version) in latest {
                let history = try self.history(province: code, latestVersion: version, on: connection)
                validUntil[code] = Dictionary(
                    history.versions.compactMap { r in r.validUntil.map { (r.version, $0) } }, uniquingKeysWith: { a, _ in a })
            }
            return summaries.map { summary in
                var summary = summary
                summary.validUntil = validUntil[summary.province]?[summary.version]
                return summary
            }
        }
    }

    package func show(province: String, version: Int) async throws -> StoredRuleSet {
        // Versions are positive 32-bit integers; anything else cannot be published.
        guard (1...Int(Int32.max)).contains(version) else { throw RuleSetLookupError.notFound(province: province, version: version) }
        let found = try await pool.withConnection { connection -> StoredRuleSet? in
            guard
                let row = try connection.query(
                    """
                    SELECT province, version, effective_from, methodology, content_sha256, published_at, published_by, document, document_format
                    FROM rule_sets WHERE province = \(province) AND version = \(version)
                    """
                ).first
            else { return nil }
            return StoredRuleSet(summary: try Self.decodeSummary(row), document: try row.decode(7), format: try row.decode(8))
        }
        guard let found else { throw RuleSetLookupError.notFound(province: province, version: version) }
        return found
    }

    /// The parsed published version (documents are re-parsed from their stored bytes).
    package func ruleSet(province: String, version: Int) async throws -> RuleSet {
        let stored = try await show(province: province, version: version)
        return try Self.parse(stored.document)
    }

    package func diff(province: String, from oldVersion: Int, to newVersion: Int) async throws -> [String] {
        async let old = ruleSet(province: province, version: oldVersion)
        async let new = ruleSet(province: province, version: newVersion)
        return RuleSetDiff.diff(try await old, try await new)
    }

    /// Every published version of a province, parsed; cached until a newer version exists.
    package func history(province: String) async throws -> RuleSetHistory {
        try await pool.withConnection { connection in
            let latest = try connection.query("SELECT coalesce(max(version), 0) FROM rule_sets WHERE province = \(province)").scalar(Int.self)
            return try self.history(province: province, latestVersion: latest, on: connection)
        }
    }

    /// The history when `latestVersion` was just read on `connection` (inside a push's
    /// transaction, under the shared publication lock): reloads on that connection if stale.
    func history(province: String, latestVersion: Int, on connection: PostgresConnection) throws -> RuleSetHistory {
        if let cached = cache.withLock({ $0[province] }), cached.latestVersion == latestVersion {
            return cached.history
        }
        let documents = try connection.query(
            """
            SELECT document FROM rule_sets WHERE province = \(province) AND version <= \(latestVersion) ORDER BY version
            """
        ).rows.map { try $0.decode(0, as: String.self) }
        let history = RuleSetHistory(try documents.map { try Self.parse($0) })
        cache.withLock { $0[province] = CachedHistory(latestVersion: latestVersion, history: history) }
        return history
    }

    /// The advisory lock publication takes exclusively and every ledger write shares, so no
    /// verdict is judged under a version replaced while it was in flight.
    static func publicationLockKey(_ province: String) -> String { "tanhui.rules." + province }

    /// A dry run: evaluates events in order against one rule set, with caps accumulating as
    /// they would for one citizen. Pure; writes nothing. `source` says whose events they are:
    /// a citizen's device (self-reported, the default) or a feed partner's records, so trust
    /// keys (`sources`, `self_reported`) apply as they would in production.
    package static func simulate(
        ruleSet: RuleSet, events: [Result<EventWire, EventInvalid>], receivedAt: Date?, source: SimulationSource = .device
    ) -> SimulationReport {
        var report = SimulationReport()
        var usage = CapUsage()
        for (index, decoded) in events.enumerated() {
            switch decoded {
            case .failure(let invalid):
                report.invalid += 1
                report.lines.append(.init(eventID: "line \(index + 1)", evaluation: nil, invalid: invalid.issues))
            case .success(let wire):
                // Without an explicit receipt time, each event counts as synced when it happened.
                let evaluation = RuleEvaluator.evaluate(
                    event: wire.event, ruleSet: ruleSet, usage: usage, receivedAt: receivedAt ?? wire.event.endedAt ?? wire.event.occurredAt,
                    selfReported: source == .device)
                switch evaluation {
                case .accepted(let award):
                    usage.add(award.consumption)
                    report.accepted += 1
                    report.gramsCO2e += award.gramsCO2e
                    report.points += award.pointsAwarded
                case .rejected(let rejection):
                    report.rejected += 1
                    report.rejectionsByCode[rejection.code.rawValue, default: 0] += 1
                }
                report.lines.append(.init(eventID: wire.event.id.canonicalText, evaluation: evaluation, invalid: []))
            }
        }
        return report
    }
}
