import ArgumentParser
import Foundation
import TanhuiCore
import TanhuiService

/// `tanhui rules policy|propose|approve|reject|proposals|publish-proposal`: rule-set governance.
/// Every step but `policy` acts as an operator key (`--key` or `TANHUI_OPERATOR_KEY`), so the
/// CLI obeys the same two-person rule as the HTTP API; `policy` is an admin's (database credentials).
enum Governance {
    static func operatorIdentity(_ key: String?, province: String, services: TanhuiServices) async throws -> OperatorIdentity {
        let key = key ?? ProcessInfo.processInfo.environment["TANHUI_OPERATOR_KEY"] ?? ""
        guard let identity = try await services.operators.authenticate(key: key) else {
            printError("give an active operator key with --key or TANHUI_OPERATOR_KEY")
            throw ExitStatus.checkFailed
        }
        guard identity.provinces.contains(province) else {
            printError("this key may not act for \(province)")
            throw ExitStatus.checkFailed
        }
        return identity
    }

    static func proposalID(_ text: String) throws -> UUID {
        guard let id = UUID(uuidString: text) else { throw ValidationError("proposal id must be a UUID") }
        return id
    }

    static func printSummary(_ proposal: Proposal) {
        printLine(
            "proposal \(proposal.id.uuidString.lowercased()) \(proposal.province) v\(proposal.version) \(proposal.state) approvals \(proposal.countedApprovals)/\(proposal.requiredApprovals) effective \(Formatting.instant(proposal.effectiveFrom))"
                + (proposal.earliestEffectiveFrom.map { " earliest \(Formatting.instant($0))" } ?? ""))
    }

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or set a province's governance policy (admin).",
            discussion: "Without a policy a province is governed: 2 approvals, 7 days' notice, approvers may not publish.")
        @Option(help: "Province (e.g. CN-GD).") var province: String
        @Option(help: "Distinct approvals a proposal needs (1…10).") var requiredApprovals: Int?
        @Option(help: "Days between the last approval and effective_from (0…365).") var noticeDays: Int?
        @Option(help: "Whether an approver of a proposal may also publish it (true/false).") var approverMayPublish: Bool?
        @Flag(help: "Let publisher keys publish at once (development only).") var directPublish = false
        @Flag(help: "Require proposals again (undo --direct-publish).") var governed = false
        @Option(help: "Who sets the policy (recorded).") var by = ProcessInfo.processInfo.environment["USER"] ?? "cli"

        func validate() throws {
            if directPublish && governed { throw ValidationError("give at most one of --direct-publish and --governed") }
        }

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                let changes = requiredApprovals != nil || noticeDays != nil || approverMayPublish != nil || directPublish || governed
                let policy: GovernancePolicy
                if changes {
                    policy = try await services.governance.setPolicy(
                        province: province, requiredApprovals: requiredApprovals, noticeDays: noticeDays, approverMayPublish: approverMayPublish,
                        directPublish: directPublish ? true : governed ? false : nil, setBy: by)
                } else {
                    policy = try await services.governance.policy(province: province)
                }
                printLine(
                    "\(policy.province) required_approvals \(policy.requiredApprovals) notice_days \(policy.noticeDays) approver_may_publish \(policy.approverMayPublish) direct_publish \(policy.directPublish)\(policy.policySeq == nil ? " (default)" : "")"
                )
            }
        }
    }

    struct Propose: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Propose a rule-set file for review (author key).")
        @Argument(help: "YAML or JSON rule-set file.") var file: String
        @Option(help: "Operator key (default: TANHUI_OPERATOR_KEY).") var key: String?

        func run() async throws {
            let document = try Rules.readDocument(file)
            let ruleSet: RuleSet
            do {
                ruleSet = try RuleSetParser.parse(document)
            } catch {
                Rules.report(error.issues, file: file)
                throw ExitStatus.checkFailed
            }
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                let author = try await Governance.operatorIdentity(key, province: ruleSet.province, services: services)
                let proposal = try await services.governance.propose(document: document, province: ruleSet.province, author: author)
                Governance.printSummary(proposal)
                for issue in proposal.issues { printLine("\(file): \(issue)") }
            }
        }
    }

    struct Review: ParsableArguments {
        @Argument(help: "Proposal id.") var id: String
        @Option(help: "Province (e.g. CN-GD).") var province: String
        @Option(help: "Why (recorded with the review).") var comment: String = ""
        @Option(help: "Operator key (default: TANHUI_OPERATOR_KEY).") var key: String?

        func review(approve: Bool) async throws {
            let id = try Governance.proposalID(self.id)
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                let reviewer = try await Governance.operatorIdentity(key, province: province, services: services)
                let proposal = try await services.governance.review(
                    province: province, id: id, reviewer: reviewer, approve: approve, comment: comment)
                Governance.printSummary(proposal)
            }
        }
    }

    struct Approve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Approve a proposal (approver key; never the author's, each key once).")
        @OptionGroup var review: Review
        func run() async throws { try await review.review(approve: true) }
    }

    struct Reject: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reject a proposal with a comment (approver key).")
        @OptionGroup var review: Review
        func run() async throws { try await review.review(approve: false) }
    }

    struct Proposals: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a province's proposals, or show one with its reviews.")
        @Option(help: "Province (e.g. CN-GD).") var province: String
        @Argument(help: "Proposal id (optional).") var id: String?

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                if let id {
                    let proposal = try await services.governance.proposal(province: province, id: try Governance.proposalID(id))
                    Governance.printSummary(proposal)
                    for review in proposal.reviews {
                        printLine(
                            "  \(review.verdict) by \(review.reviewerName) at \(Formatting.instant(review.createdAt))\(review.counts ? "" : " (does not count)"): \(review.comment)"
                        )
                    }
                    for issue in proposal.issues { printLine("  issue \(issue)") }
                    let impact = try await services.governance.impact(of: proposal)
                    for kind in impact.kinds {
                        printLine(
                            "  impact \(kind.kind): \(kind.changed) of \(kind.events) awards change, points \(kind.pointsInForce) → \(kind.pointsProposed)"
                        )
                    }
                } else {
                    let proposals = try await services.governance.proposals(province: province)
                    if proposals.isEmpty { printLine("no proposals") }
                    for proposal in proposals { Governance.printSummary(proposal) }
                }
            }
        }
    }

    struct PublishProposal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "publish-proposal", abstract: "Publish an approved proposal once its notice period has run (publisher key).")
        @Argument(help: "Proposal id.") var id: String
        @Option(help: "Province (e.g. CN-GD).") var province: String
        @Option(help: "Operator key (default: TANHUI_OPERATOR_KEY).") var key: String?

        func run() async throws {
            let id = try Governance.proposalID(self.id)
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                let publisher = try await Governance.operatorIdentity(key, province: province, services: services)
                let summary = try await services.governance.publish(province: province, id: id, publisher: publisher)
                printLine(
                    "published \(summary.province) version \(summary.version) effective from \(Formatting.instant(summary.effectiveFrom)) sha256 \(summary.contentSHA256)"
                )
            }
        }
    }
}
