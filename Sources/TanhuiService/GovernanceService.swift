package import Foundation
package import TanhuiCore
package import TanhuiPostgres

/// A province's rule-set governance policy. Without one a province is governed with the
/// defaults, so a single leaked key cannot change what citizens earn.
package struct GovernancePolicy: Sendable, Equatable, Codable {
    package var province: String
    package var requiredApprovals: Int
    package var noticeDays: Int
    package var approverMayPublish: Bool
    /// Development only: a publisher key publishes at once through `POST …/rulesets`.
    package var directPublish: Bool
    /// nil: no policy was ever set (the defaults apply).
    package var policySeq: Int?

    package static let defaultRequiredApprovals = 2
    package static let defaultNoticeDays = 7

    package static func defaults(_ province: String) -> GovernancePolicy {
        GovernancePolicy(
            province: province, requiredApprovals: defaultRequiredApprovals, noticeDays: defaultNoticeDays, approverMayPublish: false,
            directPublish: false, policySeq: nil)
    }

    enum CodingKeys: String, CodingKey {
        case province
        case requiredApprovals = "required_approvals"
        case noticeDays = "notice_days"
        case approverMayPublish = "approver_may_publish"
        case directPublish = "direct_publish"
        case policySeq = "policy_seq"
    }
}

/// A governance refusal: the HTTP edge answers `status` with problem `code`; the CLI prints it.
package enum GovernanceError: ServiceRefusal, Equatable {
    case roleRequired(OperatorRole)
    case proposalRequired(province: String)
    case notFound(UUID)
    case selfReview
    case alreadyReviewed
    case closed(state: String)
    case invalidProposal
    case notEnoughApprovals(counted: Int, required: Int)
    case noticePeriod(earliestEffectiveFrom: Date)
    case approverMayNotPublish
    case badComment
    case badPolicy(String)

    package var status: Int {
        switch self {
        case .roleRequired, .proposalRequired, .selfReview, .approverMayNotPublish: return 403
        case .notFound: return 404
        case .alreadyReviewed, .closed, .invalidProposal, .notEnoughApprovals, .noticePeriod: return 409
        case .badComment, .badPolicy: return 400
        }
    }

    package var code: String {
        switch self {
        case .roleRequired: return "role_required"
        case .proposalRequired: return "proposal_required"
        case .notFound: return "not_found"
        case .selfReview: return "self_review"
        case .alreadyReviewed: return "already_reviewed"
        case .closed: return "proposal_closed"
        case .invalidProposal: return "proposal_invalid"
        case .notEnoughApprovals: return "approvals_missing"
        case .noticePeriod: return "notice_period"
        case .approverMayNotPublish: return "approver_may_not_publish"
        case .badComment: return "bad_comment"
        case .badPolicy: return "bad_policy"
        }
    }

    package var description: String {
        switch self {
        case .roleRequired(let role): return "this key lacks the \(role.rawValue) role"
        case .proposalRequired(let province):
            return "\(province) is governed: propose the rule set (POST …/ruleset-proposals); direct publication needs a direct-publish policy"
        case .notFound(let id): return "no proposal \(id.canonicalText) in this province"
        case .selfReview: return "the author of a proposal may not review it"
        case .alreadyReviewed: return "this key has already reviewed the proposal (each key counts once)"
        case .closed(let state): return "the proposal is \(state)"
        case .invalidProposal: return "the proposal did not validate; propose a corrected version"
        case .notEnoughApprovals(let counted, let required): return "\(counted) of \(required) required approvals count"
        case .noticePeriod(let earliest):
            return "effective_from must be on or after \(earliest.formatted(.iso8601)) (last approval + notice period)"
        case .approverMayNotPublish: return "the policy forbids an approver of a proposal to publish it"
        case .badComment: return "comment must be a string of at most 2000 characters"
        case .badPolicy(let why): return why
        }
    }
}

/// One review of a proposal.
package struct ProposalReview: Sendable, Equatable {
    package var reviewerID: UUID
    package var reviewerName: String
    package var verdict: String
    package var comment: String
    package var createdAt: Date
    /// Whether it counts towards publication now (an approval by an active approver key).
    package var counts: Bool
}

/// A proposal as stored, with its reviews and state.
package struct Proposal: Sendable {
    package var province: String
    package var id: UUID
    package var version: Int
    package var effectiveFrom: Date
    package var validUntil: Date?
    package var document: String
    package var contentSHA256: String
    package var valid: Bool
    package var issues: [String]
    package var authorID: UUID
    package var authorName: String
    package var createdAt: Date
    package var reviews: [ProposalReview]
    package var publishedVersion: Int?
    /// `open`, `rejected`, `published`, `invalid`.
    package var state: String
    package var countedApprovals: Int
    package var requiredApprovals: Int
    /// The instant the last required approval arrived, and the earliest effective_from it allows.
    package var approvedAt: Date?
    package var earliestEffectiveFrom: Date?
}

/// How publishing the proposal would change awards over a sample of recent accepted events.
package struct ProposalImpact: Sendable, Equatable {
    package struct Kind: Sendable, Equatable {
        package var kind: String
        package var events = 0
        package var changed = 0
        package var pointsInForce: Int64 = 0
        package var pointsProposed: Int64 = 0
    }
    package var sampleSize = 0
    package var comparedWithVersion: Int?
    package var kinds: [Kind] = []
}

/// Rule-set governance: policies, proposals, reviews, publication after approval and notice.
///
/// Every write takes the province's publication lock (shared for proposals and reviews,
/// exclusive for publication) before its seal id is drawn, as the sealer's watermark requires.
package final class GovernanceService: Sendable {
    let pool: PostgresPool
    let ruleSets: RuleSetService

    /// Recent accepted events simulated for a proposal's impact.
    package static let impactSampleSize = 2_000
    package static let maximumProposalsListed = 200
    package static let maximumCommentCharacters = 2_000

    package init(pool: PostgresPool, ruleSets: RuleSetService) {
        self.pool = pool
        self.ruleSets = ruleSets
    }

    // MARK: Policy

    static func policy(province: String, on connection: PostgresConnection) throws -> GovernancePolicy {
        guard
            let row = try connection.query(
                """
                SELECT policy_seq, required_approvals, notice_days, approver_may_publish, direct_publish FROM ruleset_policies
                WHERE province = \(province) ORDER BY policy_seq DESC LIMIT 1
                """
            ).first
        else { return .defaults(province) }
        return GovernancePolicy(
            province: province, requiredApprovals: try row.decode(1), noticeDays: try row.decode(2), approverMayPublish: try row.decode(3),
            directPublish: try row.decode(4), policySeq: try row.decode(0))
    }

    package func policy(province: String) async throws -> GovernancePolicy {
        try await pool.withConnection { try Self.policy(province: province, on: $0) }
    }

    /// Sets a province's policy (an admin, from the CLI); unset fields keep their current value.
    package func setPolicy(
        province: String, requiredApprovals: Int? = nil, noticeDays: Int? = nil, approverMayPublish: Bool? = nil, directPublish: Bool? = nil,
        setBy: String
    ) async throws -> GovernancePolicy {
        guard Province.isKnown(province) else { throw GovernanceError.badPolicy("unknown province \(province)") }
        if let requiredApprovals, !(1...10).contains(requiredApprovals) { throw GovernanceError.badPolicy("required approvals must be 1…10") }
        if let noticeDays, !(0...365).contains(noticeDays) { throw GovernanceError.badPolicy("notice days must be 0…365") }
        let by = String(setBy.prefix(200))
        return try await pool.withTransaction { connection in
            try connection.query("SELECT pg_advisory_xact_lock(hashtext(\(RuleSetService.publicationLockKey(province))))")
            var policy = try Self.policy(province: province, on: connection)
            policy.requiredApprovals = requiredApprovals ?? policy.requiredApprovals
            policy.noticeDays = noticeDays ?? policy.noticeDays
            policy.approverMayPublish = approverMayPublish ?? policy.approverMayPublish
            policy.directPublish = directPublish ?? policy.directPublish
            let seq = (policy.policySeq ?? 0) + 1
            try connection.query(
                """
                INSERT INTO ruleset_policies (province, policy_seq, required_approvals, notice_days, approver_may_publish, direct_publish, set_by)
                VALUES (\(province), \(seq), \(policy.requiredApprovals), \(policy.noticeDays), \(policy.approverMayPublish), \(policy.directPublish), \(by.isEmpty ? "admin" : by))
                """)
            policy.policySeq = seq
            return policy
        }
    }

    // MARK: Direct publication (RuleSetService.publish)

    static func checkDirectPublication(by identity: OperatorIdentity, policy: GovernancePolicy) throws {
        guard policy.directPublish else { throw GovernanceError.proposalRequired(province: policy.province) }
        guard identity.has(.publisher) else { throw GovernanceError.roleRequired(.publisher) }
    }

    static func recordDirectPublication(
        ruleSet: RuleSet, document: String, publishedBy: String, by identity: OperatorIdentity?, policy: GovernancePolicy,
        on connection: PostgresConnection
    ) throws {
        try RuleSetService.insert(ruleSet: ruleSet, document: document, publishedBy: publishedBy, on: connection)
        let mode = identity == nil ? "admin" : "direct"
        try connection.query(
            """
            INSERT INTO ruleset_publications (province, version, mode, policy_seq, publisher_id, published_by)
            VALUES (\(ruleSet.province), \(ruleSet.version), \(mode), \(policy.policySeq), \(identity?.id), \(publishedBy))
            """)
    }

    // MARK: Proposals

    static func describe(_ identity: OperatorIdentity) -> String {
        "operator \(identity.name) (\(identity.id.canonicalText))"
    }

    /// Stores a draft with its validation result. A document that does not parse is refused
    /// (422, nothing stored): without a version there is nothing to review.
    /// The approval period is the document's own `valid_until` (so the judge, the audit's replay
    /// and the chained document hash all see the same instant).
    package func propose(document: String, province: String, author: OperatorIdentity) async throws -> Proposal {
        guard author.has(.author) else { throw GovernanceError.roleRequired(.author) }
        let ruleSet = try RuleSetService.parse(document)
        guard ruleSet.province == province else { throw RuleSetLookupError.forbidden(province: ruleSet.province) }
        let validUntil = ruleSet.validUntil
        let id = UUID()
        try await pool.withTransaction { connection in
            try connection.query("SELECT pg_advisory_xact_lock_shared(hashtext(\(RuleSetService.publicationLockKey(province))))")
            let issues = try RuleSetService.publicationIssues(ruleSet, on: connection)
            let issueLines = issues.map { "\($0.path): \($0.code.rawValue): \($0.message)" }
            try connection.query(
                """
                INSERT INTO ruleset_proposals (province, proposal_id, version, effective_from, valid_until, document, document_format, content_sha256,
                                               valid, issues, author_id, author_name)
                VALUES (\(province), \(id), \(ruleSet.version), \(ruleSet.effectiveFrom), \(validUntil), \(document), \(RuleSetService.format(of: document)),
                        \(RuleSetService.contentHash(of: document)), \(issues.isEmpty), \(issueLines.joined(separator: "\n")), \(author.id), \(Self.describe(author)))
                """)
        }
        return try await proposal(province: province, id: id)
    }

    package func proposal(province: String, id: UUID) async throws -> Proposal {
        try await pool.withConnection { connection in
            guard let found = try Self.proposal(province: province, id: id, on: connection) else { throw GovernanceError.notFound(id) }
            return found
        }
    }

    package func proposals(province: String) async throws -> [Proposal] {
        try await pool.withConnection { connection in
            let ids = try connection.query(
                """
                SELECT proposal_id FROM ruleset_proposals WHERE province = \(province) ORDER BY created_at DESC, proposal_id
                LIMIT \(Self.maximumProposalsListed)
                """
            ).rows.map { try $0.decode(0, as: UUID.self) }
            return try ids.compactMap { try Self.proposal(province: province, id: $0, on: connection) }
        }
    }

    static func proposal(province: String, id: UUID, on connection: PostgresConnection) throws -> Proposal? {
        guard
            let row = try connection.query(
                """
                SELECT p.version, p.effective_from, p.valid_until, p.document, p.content_sha256, p.valid, p.issues, p.author_id, p.author_name,
                       p.created_at, (SELECT x.version FROM ruleset_publications x WHERE x.province = p.province AND x.proposal_id = p.proposal_id)
                FROM ruleset_proposals p WHERE p.province = \(province) AND p.proposal_id = \(id)
                """
            ).first
        else { return nil }
        let policy = try Self.policy(province: province, on: connection)
        let authorID: UUID = try row.decode(7)
        // An approval counts while its key is active, still an approver of this province, and
        // not the author's (refused when made; checked again in case of a forged row).
        let reviews = try connection.query(
            """
            SELECT r.reviewer_id, r.reviewer_name, r.verdict, r.comment, r.created_at,
                   coalesce(o.revoked_at IS NULL AND 'approver' = ANY(o.roles) AND \(province) = ANY(o.provinces), false)
            FROM ruleset_reviews r LEFT JOIN operators o ON o.id = r.reviewer_id
            WHERE r.province = \(province) AND r.proposal_id = \(id)
            ORDER BY r.created_at, r.review_id
            /* citus: multi-shard (operators is a reference table; joined on every shard) */
            """
        ).rows.map { review in
            let verdict: String = try review.decode(2)
            let reviewer: UUID = try review.decode(0)
            let active: Bool = try review.decode(5)
            return ProposalReview(
                reviewerID: reviewer, reviewerName: try review.decode(1), verdict: verdict, comment: try review.decode(3),
                createdAt: try review.decode(4), counts: verdict == "approve" && reviewer != authorID && active)
        }
        let issueText: String = try row.decode(6)
        let valid: Bool = try row.decode(5)
        let publishedVersion = try row.decode(10, as: Int?.self)
        let counted = reviews.filter(\.counts)
        var proposal = Proposal(
            province: province, id: id, version: try row.decode(0), effectiveFrom: try row.decode(1), validUntil: try row.decode(2, as: Date?.self),
            document: try row.decode(3), contentSHA256: try row.decode(4), valid: valid,
            issues: issueText.isEmpty ? [] : issueText.split(separator: "\n").map(String.init), authorID: authorID, authorName: try row.decode(8),
            createdAt: try row.decode(9), reviews: reviews, publishedVersion: publishedVersion,
            state: publishedVersion != nil
                ? "published" : reviews.contains(where: { $0.verdict == "reject" }) ? "rejected" : valid ? "open" : "invalid",
            countedApprovals: counted.count, requiredApprovals: policy.requiredApprovals)
        if counted.count >= policy.requiredApprovals {
            let approvedAt = counted[policy.requiredApprovals - 1].createdAt
            proposal.approvedAt = approvedAt
            proposal.earliestEffectiveFrom = approvedAt.addingTimeInterval(Double(policy.noticeDays) * 86_400)
        }
        return proposal
    }

    /// Approves or rejects (with a comment). Never the author; each key once.
    package func review(province: String, id: UUID, reviewer: OperatorIdentity, approve: Bool, comment: String) async throws -> Proposal {
        guard reviewer.has(.approver) else { throw GovernanceError.roleRequired(.approver) }
        guard comment.unicodeScalars.count <= Self.maximumCommentCharacters else { throw GovernanceError.badComment }
        try await pool.withTransaction { connection in
            try connection.query("SELECT pg_advisory_xact_lock_shared(hashtext(\(RuleSetService.publicationLockKey(province))))")
            guard let proposal = try Self.proposal(province: province, id: id, on: connection) else { throw GovernanceError.notFound(id) }
            guard proposal.authorID != reviewer.id else { throw GovernanceError.selfReview }
            guard proposal.state == "open" else { throw GovernanceError.closed(state: proposal.state) }
            guard !proposal.reviews.contains(where: { $0.reviewerID == reviewer.id }) else { throw GovernanceError.alreadyReviewed }
            let inserted = try connection.query(
                """
                INSERT INTO ruleset_reviews (province, review_id, proposal_id, reviewer_id, reviewer_name, verdict, comment)
                VALUES (\(province), \(UUID()), \(id), \(reviewer.id), \(Self.describe(reviewer)), \(approve ? "approve" : "reject"), \(comment))
                ON CONFLICT (province, proposal_id, reviewer_id) DO NOTHING RETURNING 1
                """)
            // Two concurrent reviews by one key: the loser learns it counted once.
            if inserted.rows.isEmpty { throw GovernanceError.alreadyReviewed }
        }
        return try await proposal(province: province, id: id)
    }

    /// Publishes an approved proposal whose effective_from respects the notice period.
    package func publish(province: String, id: UUID, publisher: OperatorIdentity) async throws -> RuleSetSummary {
        guard publisher.has(.publisher) else { throw GovernanceError.roleRequired(.publisher) }
        return try await pool.withTransaction { connection -> RuleSetSummary in
            try connection.query("SELECT pg_advisory_xact_lock(hashtext(\(RuleSetService.publicationLockKey(province))))")
            guard let proposal = try Self.proposal(province: province, id: id, on: connection) else { throw GovernanceError.notFound(id) }
            guard proposal.state == "open" else {
                throw proposal.state == "invalid" ? GovernanceError.invalidProposal : GovernanceError.closed(state: proposal.state)
            }
            let policy = try Self.policy(province: province, on: connection)
            let counted = proposal.reviews.filter(\.counts)
            if !policy.approverMayPublish, counted.contains(where: { $0.reviewerID == publisher.id }) {
                throw GovernanceError.approverMayNotPublish
            }
            guard let approvedAt = proposal.approvedAt, let earliest = proposal.earliestEffectiveFrom else {
                throw GovernanceError.notEnoughApprovals(counted: counted.count, required: policy.requiredApprovals)
            }
            guard proposal.effectiveFrom >= earliest else { throw GovernanceError.noticePeriod(earliestEffectiveFrom: earliest) }
            let ruleSet = try RuleSetService.parse(proposal.document)
            let issues = try RuleSetService.publicationIssues(ruleSet, on: connection)
            if !issues.isEmpty { throw RuleSetRejected(issues: issues) }
            let publishedBy = Self.describe(publisher)
            try RuleSetService.insert(ruleSet: ruleSet, document: proposal.document, publishedBy: publishedBy, on: connection)
            let approvers = counted.prefix(policy.requiredApprovals).map(\.reviewerID)
            try connection.query(
                """
                INSERT INTO ruleset_publications (province, version, mode, proposal_id, policy_seq, approver_ids, approved_at, publisher_id, published_by)
                VALUES (\(province), \(ruleSet.version), 'proposal', \(id), \(policy.policySeq), \(PostgresArray(approvers))::uuid[], \(approvedAt),
                        \(publisher.id), \(publishedBy))
                """)
            return try RuleSetService.insertedSummary(ruleSet, on: connection)
        }
    }

    // MARK: Impact

    /// Awards of the most recent accepted events under the version in force and under the
    /// proposal. Each event is moved forward by whole weeks (weekday and time of day kept) to
    /// on or after the proposal's effective_from, and judged alone (per-event rules and caps;
    /// a citizen's accumulated cap usage is not replayed).
    package func impact(of proposal: Proposal) async throws -> ProposalImpact {
        let proposed = try RuleSetService.parse(proposal.document)
        let province = proposal.province
        let (events, inForce) = try await pool.withConnection { connection -> ([ActionEvent], Int?) in
            let latest = try connection.query(
                "SELECT max(version) FROM rule_sets WHERE province = \(province) AND effective_from <= now()"
            ).rows[0].decode(0, as: Int?.self)
            let rows = try connection.query(
                """
                SELECT event_id, kind, occurred_at, ended_at, mode, material, distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days
                FROM events WHERE province = \(province) AND status = 'accepted' ORDER BY seal_id DESC LIMIT \(Self.impactSampleSize)
                """
            ).rows
            let events = try rows.map { row in
                ActionEvent(
                    id: try row.decode(0), kind: try row.decode(1), province: province, occurredAt: try row.decode(2),
                    endedAt: try row.decode(3, as: Date?.self),
                    data: EventData(
                        mode: try row.decode(4, as: String?.self), material: try row.decode(5, as: String?.self),
                        distanceMeters: try row.decode(6, as: Int64?.self), weightGrams: try row.decode(7, as: Int64?.self),
                        count: try row.decode(8, as: Int64?.self), consumptionWh: try row.decode(9, as: Int64?.self),
                        baselineWh: try row.decode(10, as: Int64?.self), days: try row.decode(11, as: Int64?.self)))
            }
            return (events, latest)
        }
        var current: RuleSet?
        if let inForce { current = try await ruleSets.ruleSet(province: province, version: inForce) }
        return Self.impact(events: events, inForce: current, proposed: proposed)
    }

    package static func impact(events: [ActionEvent], inForce: RuleSet?, proposed: RuleSet) -> ProposalImpact {
        var impact = ProposalImpact(sampleSize: events.count, comparedWithVersion: inForce?.version)
        var kinds: [String: ProposalImpact.Kind] = [:]
        let week = 7 * 86_400.0
        for event in events {
            var moved = event
            let gap = proposed.effectiveFrom.timeIntervalSince(event.occurredAt)
            if gap > 0 {
                let shift = (gap / week).rounded(.up) * week
                moved.occurredAt = event.occurredAt.addingTimeInterval(shift)
                moved.endedAt = event.endedAt?.addingTimeInterval(shift)
            }
            let received = moved.endedAt ?? moved.occurredAt
            func points(_ ruleSet: RuleSet?) -> Int64 {
                guard let ruleSet,
                    case .accepted(let award) = RuleEvaluator.evaluate(event: moved, ruleSet: ruleSet, usage: CapUsage(), receivedAt: received)
                else { return 0 }
                return award.pointsAwarded
            }
            let before = points(inForce)
            let after = points(proposed)
            var kind = kinds[event.kind] ?? ProposalImpact.Kind(kind: event.kind)
            kind.events += 1
            if before != after { kind.changed += 1 }
            // Saturating: a summary, never a ledger amount.
            kind.pointsInForce = Self.saturatingSum(kind.pointsInForce, before)
            kind.pointsProposed = Self.saturatingSum(kind.pointsProposed, after)
            kinds[event.kind] = kind
        }
        impact.kinds = kinds.values.sorted { $0.kind < $1.kind }
        return impact
    }

    static func saturatingSum(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }
}
