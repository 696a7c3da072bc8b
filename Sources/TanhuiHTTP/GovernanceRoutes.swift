import Foundation
import Hummingbird
import NIOCore
import NIOFoundationEssentialsCompat
import TanhuiCore
import TanhuiService

/// Rule-set proposals under `/v1/provinces/{code}/ruleset-proposals`: an author proposes,
/// approvers (never the author, each key once) approve or reject with a comment, a publisher
/// publishes once the approvals are in and the notice period has run.
enum GovernanceRoutes {
    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices) {
        let province = router.group("v1/provinces/:province")
            .add(middleware: OperatorKeyMiddleware(operators: services.operators))

        province.post("ruleset-proposals") { request, context -> EditedResponse<ProposalBody> in
            let code = try context.province
            let document = try await OperatorRoutes.readDocument(request, province: code)
            let proposal = try await services.governance.propose(document: document, province: code, author: context.operatorIdentity!)
            return EditedResponse(status: .created, response: try await body(proposal, services: services))
        }

        province.get("ruleset-proposals") { _, context -> ProposalList in
            let proposals = try await services.governance.proposals(province: try context.province)
            return ProposalList(proposals: proposals.map { ProposalBody($0) })
        }

        province.get("ruleset-proposals/:proposal") { _, context -> ProposalBody in
            let proposal = try await services.governance.proposal(province: try context.province, id: try proposalID(context))
            return try await body(proposal, services: services)
        }

        province.post("ruleset-proposals/:proposal/approve") { request, context -> ProposalBody in
            try await review(request, context: context, services: services, approve: true)
        }

        province.post("ruleset-proposals/:proposal/reject") { request, context -> ProposalBody in
            try await review(request, context: context, services: services, approve: false)
        }

        province.post("ruleset-proposals/:proposal/publish") { _, context -> EditedResponse<RuleSetSummary> in
            let summary = try await services.governance.publish(
                province: try context.province, id: try proposalID(context), publisher: context.operatorIdentity!)
            return EditedResponse(status: .created, response: summary)
        }
    }

    static func review(_ request: Request, context: TanhuiRequestContext, services: TanhuiServices, approve: Bool) async throws -> ProposalBody {
        let id = try proposalID(context)
        let comment = try await readComment(request)
        let proposal = try await services.governance.review(
            province: try context.province, id: id, reviewer: context.operatorIdentity!, approve: approve, comment: comment)
        return ProposalBody(proposal)
    }

    static func proposalID(_ context: TanhuiRequestContext) throws -> UUID {
        guard let id = context.parameters.get("proposal").flatMap(UUID.init(uuidString:)) else {
            throw Problem(.notFound, code: "not_found", detail: "proposal id must be a UUID")
        }
        return id
    }

    /// `{"comment": "…"}`, nothing else; at most 2000 characters (Unicode scalars).
    static func readComment(_ request: Request) async throws -> String {
        let body = try await OperatorRoutes.collect(request, limit: 16 * 1024)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any],
            Set(object.keys) == ["comment"], let comment = object["comment"] as? String
        else {
            throw Problem(.badRequest, code: "malformed_json", detail: "send {\"comment\": \"…\"}")
        }
        guard comment.unicodeScalars.count <= GovernanceService.maximumCommentCharacters else {
            throw Problem(.badRequest, code: "bad_comment", detail: GovernanceError.badComment.description)
        }
        return comment
    }

    static func body(_ proposal: Proposal, services: TanhuiServices) async throws -> ProposalBody {
        var body = ProposalBody(proposal)
        body.document = proposal.document
        let proposed = try? RuleSetParser.parse(proposal.document)
        let versions = try await services.ruleSets.list(province: proposal.province)
        // The version in force: the latest already effective.
        let inForce = versions.last { $0.effectiveFrom <= Date() && $0.version != proposal.publishedVersion }
        if let proposed {
            var current: RuleSet?
            if let inForce { current = try await services.ruleSets.ruleSet(province: proposal.province, version: inForce.version) }
            body.diff = ProposalBody.Diff(
                againstVersion: current?.version, changes: current.map { RuleSetDiff.diff($0, proposed) } ?? ["first version"])
            body.impact = ProposalBody.Impact(try await services.governance.impact(of: proposal))
        }
        return body
    }
}

struct ProposalList: ResponseEncodable {
    let proposals: [ProposalBody]
}

struct ProposalBody: ResponseEncodable {
    struct Review: Encodable {
        let reviewerID: String
        let reviewer: String
        let verdict: String
        let comment: String
        let createdAt: Date
        let counts: Bool
        enum CodingKeys: String, CodingKey {
            case reviewer, verdict, comment, counts
            case reviewerID = "reviewer_id"
            case createdAt = "created_at"
        }
    }

    struct Diff: Encodable {
        let againstVersion: Int?
        let changes: [String]
        enum CodingKeys: String, CodingKey {
            case changes
            case againstVersion = "against_version"
        }
    }

    struct Impact: Encodable {
        struct Kind: Encodable {
            let kind: String
            let events: Int
            let changed: Int
            let pointsInForce: Int64
            let pointsProposed: Int64
            enum CodingKeys: String, CodingKey {
                case kind, events, changed
                case pointsInForce = "points_in_force"
                case pointsProposed = "points_proposed"
            }
        }
        let sampleSize: Int
        let comparedWithVersion: Int?
        let kinds: [Kind]
        enum CodingKeys: String, CodingKey {
            case kinds
            case sampleSize = "sample_size"
            case comparedWithVersion = "compared_with_version"
        }

        init(_ impact: ProposalImpact) {
            sampleSize = impact.sampleSize
            comparedWithVersion = impact.comparedWithVersion
            kinds = impact.kinds.map {
                Kind(kind: $0.kind, events: $0.events, changed: $0.changed, pointsInForce: $0.pointsInForce, pointsProposed: $0.pointsProposed)
            }
        }
    }

    let province: String
    let id: String
    let version: Int
    let effectiveFrom: Date
    let validUntil: Date?
    let contentSHA256: String
    let state: String
    let valid: Bool
    let issues: [String]
    let authorID: String
    let author: String
    let createdAt: Date
    let requiredApprovals: Int
    let countedApprovals: Int
    let approvedAt: Date?
    let earliestEffectiveFrom: Date?
    let publishedVersion: Int?
    let reviews: [Review]
    var diff: Diff?
    var impact: Impact?
    var document: String?

    enum CodingKeys: String, CodingKey {
        case province, id, version, state, valid, issues, author, reviews, diff, impact, document
        case effectiveFrom = "effective_from"
        case validUntil = "valid_until"
        case contentSHA256 = "content_sha256"
        case authorID = "author_id"
        case createdAt = "created_at"
        case requiredApprovals = "required_approvals"
        case countedApprovals = "counted_approvals"
        case approvedAt = "approved_at"
        case earliestEffectiveFrom = "earliest_effective_from"
        case publishedVersion = "published_version"
    }

    init(_ proposal: Proposal) {
        province = proposal.province
        id = proposal.id.uuidString.lowercased()
        version = proposal.version
        effectiveFrom = proposal.effectiveFrom
        validUntil = proposal.validUntil
        contentSHA256 = proposal.contentSHA256
        state = proposal.state
        valid = proposal.valid
        issues = proposal.issues
        authorID = proposal.authorID.uuidString.lowercased()
        author = proposal.authorName
        createdAt = proposal.createdAt
        requiredApprovals = proposal.requiredApprovals
        countedApprovals = proposal.countedApprovals
        approvedAt = proposal.approvedAt
        earliestEffectiveFrom = proposal.earliestEffectiveFrom
        publishedVersion = proposal.publishedVersion
        reviews = proposal.reviews.map {
            Review(
                reviewerID: $0.reviewerID.uuidString.lowercased(), reviewer: $0.reviewerName, verdict: $0.verdict, comment: $0.comment,
                createdAt: $0.createdAt, counts: $0.counts)
        }
    }
}
