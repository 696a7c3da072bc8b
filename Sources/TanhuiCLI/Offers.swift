import ArgumentParser
import Foundation
import TanhuiCore
import TanhuiService

/// `tanhui offer …`: the offers a province's partners redeem.
struct Offers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offer",
        abstract: "Define and list the offers partners redeem at a fixed points cost.",
        subcommands: [Create.self, List.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Define an offer of a redeem partner (offers are never edited; define a new one).")
        @Option(help: "The province (ISO 3166-2:CN, e.g. CN-GD).") var province: String
        @Option(help: "The one partner that redeems it (its id); default: every redeem partner of the province.") var partner: String?
        @Option(help: "The offer's name.") var name: String
        @Option(help: "Points one unit costs.") var pointsCost: Int64
        @Option(help: "Most units ever redeemed (voided holds give theirs back).") var totalLimit: Int64?
        @Option(help: "Most units per citizen per period, as COUNT/PERIOD with PERIOD day, month, year or ever (e.g. 1/day).")
        var perCitizen: String?
        @Option(help: "Start of validity (RFC 3339 with offset).") var validFrom: String
        @Option(help: "End of validity, exclusive (RFC 3339 with offset).") var validTo: String

        func run() async throws {
            var partnerID: UUID?
            if let partner {
                guard let id = UUID(uuidString: partner) else { throw ValidationError("--partner must be a partner id (UUID)") }
                partnerID = id
            }
            guard let from = Timestamp.parse(validFrom), let to = Timestamp.parse(validTo) else {
                throw ValidationError("--valid-from and --valid-to must be RFC 3339 timestamps with a UTC offset")
            }
            var limit: Offer.PerCitizenLimit?
            if let perCitizen {
                let parts = perCitizen.split(separator: "/")
                guard parts.count == 2, let count = Int(parts[0]) else { throw ValidationError("--per-citizen is COUNT/PERIOD, e.g. 1/day") }
                limit = Offer.PerCitizenLimit(count: count, period: String(parts[1]))
            }
            let services = try CommandEnvironment.services(label: "tanhui.offer")
            try await CommandEnvironment.run(services) {
                let offer = try await services.offers.create(
                    province: province, partner: partnerID, name: name, pointsCost: pointsCost, totalLimit: totalLimit, perCitizenLimit: limit,
                    validFrom: from, validTo: to, createdBy: "cli \(ProcessInfo.processInfo.environment["USER"] ?? "admin")")
                printLine("offer \(offer.id.uuidString.lowercased()) \(offer.name) costs \(offer.pointsCost) points")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a province's offers.")
        @Option(help: "The province.") var province: String

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.offer")
            try await CommandEnvironment.run(services) {
                for offer in try await services.offers.list(province: province) {
                    let total = offer.totalLimit.map { "total \($0)" } ?? "no total limit"
                    let perCitizen = offer.perCitizenLimit.map { "\($0.count)/\($0.period) per citizen" } ?? "no per-citizen limit"
                    printLine(
                        "\(offer.id.uuidString.lowercased())  \(offer.name)  \(offer.pointsCost) points  partner \(offer.partnerID?.uuidString.lowercased() ?? "any")  \(total)  \(perCitizen)  \(Formatting.instant(offer.validFrom)) – \(Formatting.instant(offer.validTo))"
                    )
                }
            }
        }
    }
}
