import ArgumentParser
import Foundation
import TanhuiService

/// `tanhui partner …`: the registry of a province's partners and their API keys.
struct Partners: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partner",
        abstract: "Register, list and revoke partners (merchants, transit operators, data platforms) of a province.",
        subcommands: [Create.self, List.self, Revoke.self, Feed.self, Receipt.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a partner; its key is printed once and stored only hashed.")
        @Option(help: "The partner's province (ISO 3166-2:CN, e.g. CN-GD).") var province: String
        @Option(help: "The partner's name.") var name: String
        @Option(help: "What its key may do (repeatable): redeem, feed.") var scope: [String] = []
        @OptionGroup var feed: FeedOptions

        func validate() throws {
            if scope.isEmpty { throw ValidationError("give at least one --scope (redeem, feed)") }
            for value in scope where PartnerScope(rawValue: value) == nil {
                throw ValidationError("unknown scope \(value); use redeem or feed")
            }
            try feed.validate(scopes: scope)
        }

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.partner")
            try await CommandEnvironment.run(services) {
                try await feed.precheck(province: province, services: services)
                let (partner, key) = try await services.partners.create(
                    province: province, name: name, scopes: scope.compactMap(PartnerScope.init(rawValue:)),
                    createdBy: "cli \(ProcessInfo.processInfo.environment["USER"] ?? "admin")")
                printLine(
                    "partner \(partner.id.uuidString.lowercased()) \(partner.name) province \(partner.province) scopes \(partner.scopes.map(\.rawValue).joined(separator: ","))"
                )
                printLine("key \(key)")
                try await feed.apply(province: partner.province, partner: partner.id, services: services)
                printError("store the key now: it is not kept and cannot be shown again")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List partners (never their keys).")
        @Option(help: "Only this province.") var province: String?

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.partner")
            try await CommandEnvironment.run(services) {
                for partner in try await services.partners.list(province: province) {
                    let state = partner.revokedAt.map { "revoked \(Formatting.instant($0))" } ?? "active"
                    printLine(
                        "\(partner.province)  \(partner.id.uuidString.lowercased())  \(partner.name)  \(partner.scopes.map(\.rawValue).joined(separator: ","))  \(state)"
                    )
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a partner's key at once.")
        @Option(help: "The partner's province.") var province: String
        @Argument(help: "Partner id.") var id: String

        func run() async throws {
            guard let uuid = UUID(uuidString: id) else { throw ValidationError("partner id must be a UUID") }
            let services = try CommandEnvironment.services(label: "tanhui.partner")
            try await CommandEnvironment.run(services) {
                let partner = try await services.partners.revoke(province: province, id: uuid)
                printLine("revoked \(partner.id.uuidString.lowercased()) \(partner.name)")
            }
        }
    }
}
