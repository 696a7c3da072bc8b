import ArgumentParser
import Foundation
import TanhuiService

/// Options of feed partners: the Ed25519 key that signs their uploads, the kinds they may
/// report, the evidence sources they own (used by `partner create` and `partner feed`).
struct FeedOptions: ParsableArguments {
    @Option(help: "Base64 of the partner's 32-byte Ed25519 public key (signs its record uploads).") var signingKey: String?
    @Option(help: "A kind the partner may report (repeatable), e.g. transit_trip.") var kind: [String] = []
    @Option(help: "An evidence source the partner owns in its province (repeatable), e.g. gz-metro.") var evidenceSource: [String] = []

    var isEmpty: Bool { signingKey == nil && kind.isEmpty && evidenceSource.isEmpty }

    func validate(scopes: [String]) throws {
        if !isEmpty && !scopes.contains(PartnerScope.feed.rawValue) {
            throw ValidationError("--signing-key, --kind and --evidence-source need --scope feed")
        }
        do {
            try PartnerFeedService.validate(signingKey: signingKey, kinds: kind, evidenceSources: evidenceSource)
        } catch let error as PartnerFeedError {
            throw ValidationError(error.description)
        }
    }

    /// Refuses before anything is written when a source is owned by another partner.
    func precheck(province: String, services: TanhuiServices) async throws {
        if let owned = try await services.partnerFeeds.owners(province: province, sources: evidenceSource).first {
            throw PartnerFeedError.evidenceSourceOwned(source: owned.0, owner: owned.1)
        }
    }

    func apply(province: String, partner: UUID, services: TanhuiServices) async throws {
        guard !isEmpty else { return }
        let profile = try await services.partnerFeeds.configure(
            province: province, partner: partner, signingKey: signingKey, kinds: kind.isEmpty ? nil : kind, evidenceSources: evidenceSource)
        printLine(FeedOptions.describe(profile))
    }

    static func describe(_ profile: FeedProfile) -> String {
        "feed signing-key \(profile.signingKey ?? "-") kinds \(profile.kinds.isEmpty ? "-" : profile.kinds.joined(separator: ",")) evidence-sources \(profile.evidenceSources.isEmpty ? "-" : profile.evidenceSources.joined(separator: ","))"
    }
}

extension Partners {
    /// `tanhui partner feed`: set or rotate the signing key, replace the kinds, add owned sources.
    struct Feed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or change a feed partner: signing key (set or rotate), kinds (replaced when given), owned evidence sources (added).")
        @Option(help: "The partner's province.") var province: String
        @Argument(help: "Partner id.") var id: String
        @OptionGroup var feed: FeedOptions

        func validate() throws {
            guard UUID(uuidString: id) != nil else { throw ValidationError("partner id must be a UUID") }
            try feed.validate(scopes: [PartnerScope.feed.rawValue])
        }

        func run() async throws {
            let partner = UUID(uuidString: id)!
            let services = try CommandEnvironment.services(label: "tanhui.partner")
            try await CommandEnvironment.run(services) {
                if feed.isEmpty {
                    printLine(FeedOptions.describe(try await services.partnerFeeds.profile(province: province, partner: partner)))
                } else {
                    try await feed.apply(province: province, partner: partner, services: services)
                }
            }
        }
    }
}

extension Partners {
    /// `tanhui partner receipt`: the signed reconciliation of one partner's day.
    struct Receipt: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the signed receipt of a feed partner's records received on a UTC day (needs TANHUI_CHECKPOINT_KEY).")
        @Option(help: "The partner's province.") var province: String
        @Option(help: "The day, YYYY-MM-DD (UTC).") var date: String
        @Argument(help: "Partner id.") var id: String

        func validate() throws {
            guard UUID(uuidString: id) != nil else { throw ValidationError("partner id must be a UUID") }
            guard PartnerReceipt.parseDate(date) != nil else { throw ValidationError("--date must be a day YYYY-MM-DD") }
        }

        func run() async throws {
            let partner = UUID(uuidString: id)!
            let services = try CommandEnvironment.services(label: "tanhui.partner")
            guard let key = services.config.checkpointKey else {
                await services.shutdown()
                printError("TANHUI_CHECKPOINT_KEY is not set: receipts are signed with the checkpoint key")
                throw ExitStatus.couldNotRun
            }
            try await CommandEnvironment.run(services) {
                guard try await services.partners.list(province: province).contains(where: { $0.id == partner }) else {
                    throw PartnerError.notFound(province: province, id: partner)
                }
                if let receipt = try await services.partnerFeeds.receipt(province: province, partner: partner, date: date, checkpointKey: key) {
                    FileHandle.standardOutput.write(Data(receipt.note.utf8))
                }
            }
        }
    }
}
