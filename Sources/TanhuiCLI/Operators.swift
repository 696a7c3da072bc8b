import ArgumentParser
import Foundation
import TanhuiService

/// `tanhui operator …`: API keys for province operators.
struct Operators: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operator",
        abstract: "Create, list and revoke province operators' API keys.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an operator; its key is printed once and stored only hashed.")
        @Option(help: "Province the key may act for (repeatable).") var province: [String] = []
        @Option(help: "Who holds the key.") var name: String
        @Option(help: "Governance role: author, approver, publisher (repeatable; default all three).") var role: [String] = []

        func validate() throws {
            if province.isEmpty { throw ValidationError("give at least one --province, e.g. --province CN-GD") }
        }

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.operator")
            try await CommandEnvironment.run(services) {
                let (identity, key) = try await services.operators.create(
                    name: name, provinces: province, roles: role.isEmpty ? OperatorRole.allCases.map(\.rawValue) : role)
                printLine(
                    "operator \(identity.id.uuidString.lowercased()) \(identity.name) provinces \(identity.provinces.joined(separator: ",")) roles \(identity.roles.joined(separator: ","))"
                )
                printLine("key \(key)")
                printError("store the key now: it is not kept and cannot be shown again")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List operators (never their keys).")

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.operator")
            try await CommandEnvironment.run(services) {
                for identity in try await services.operators.list() {
                    let state = identity.revokedAt.map { "revoked \(Formatting.instant($0))" } ?? "active"
                    printLine(
                        "\(identity.id.uuidString.lowercased())  \(identity.name)  \(identity.provinces.joined(separator: ","))  \(identity.roles.joined(separator: ","))  \(state)"
                    )
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an operator's key at once.")
        @Argument(help: "Operator id.") var id: String

        func run() async throws {
            guard let uuid = UUID(uuidString: id) else { throw ValidationError("operator id must be a UUID") }
            let services = try CommandEnvironment.services(label: "tanhui.operator")
            try await CommandEnvironment.run(services) {
                let identity = try await services.operators.revoke(id: uuid)
                printLine("revoked \(identity.id.uuidString.lowercased()) \(identity.name)")
            }
        }
    }
}
