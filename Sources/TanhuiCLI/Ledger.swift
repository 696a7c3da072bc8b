import ArgumentParser
import Crypto
import Foundation
import TanhuiCore
import TanhuiService

/// `tanhui ledger …`: admin operations on the ledger.
struct Ledger: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reverse awards, seal the hash chain, export signed checkpoints, show statements.",
        subcommands: [Reverse.self, Seal.self, Checkpoint.self, Show.self, Explain.self, Expire.self]
    )

    static func checkpointKey(_ services: TanhuiServices) throws -> Curve25519.Signing.PrivateKey {
        guard let raw = services.config.checkpointKey else {
            printError("TANHUI_CHECKPOINT_KEY is not set (base64 of a 32-byte Ed25519 private key)")
            throw ExitStatus.couldNotRun
        }
        return try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
    }

    struct Reverse: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reverse an event's award in full with a mirroring transaction (at most once).")
        @Option(help: "Event id whose award to reverse.") var event: String
        @Option(help: "The event's province (event ids are scoped per province), e.g. CN-GD.") var province: String
        @Option(help: "Why (recorded with the reversal).") var reason: String
        @Option(help: "Who (recorded with the reversal).") var actor = "admin:" + (ProcessInfo.processInfo.environment["USER"] ?? "cli")

        func run() async throws {
            guard let id = UUID(uuidString: event) else { throw ValidationError("--event must be a UUID") }
            guard Province.isKnown(province) else { throw ValidationError("--province must be an ISO 3166-2:CN code such as CN-GD") }
            let services = try CommandEnvironment.services(label: "tanhui.ledger")
            try await CommandEnvironment.run(services) {
                do {
                    let record = try await services.ledger.reverse(event: id, province: province, reason: reason, actor: actor)
                    printLine(
                        "reversed event \(id.uuidString.lowercased()) in \(record.province): transaction \(record.transactionID), \(record.points) points, \(record.gramsCO2e) g"
                    )
                } catch let error as LedgerService.ReversalError {
                    printError(error.description)
                    throw ExitStatus.checkFailed
                }
            }
        }
    }

    struct Seal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal pending transactions into each province's hash chain now; report the backlog.")
        @Option(help: "Only this province.") var province: String?

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.ledger")
            try await CommandEnvironment.run(services) {
                var total = 0
                repeat {
                    let sealed = try await services.ledger.seal(province: province)
                    total = sealed.values.reduce(0, +)
                    for (province, count) in sealed.sorted(by: { $0.key < $1.key }) where count > 0 {
                        printLine("\(province): sealed \(count)")
                    }
                } while total > 0
                let backlog = try await services.ledger.unsealedBacklog()
                printLine(
                    backlog.isEmpty
                        ? "no unsealed transactions"
                        : backlog.map { "\($0.province): \($0.unsealed) unsealed, oldest \($0.oldestSeconds) s" }.joined(separator: "\n"))
            }
        }
    }

    struct Checkpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal, then export a signed checkpoint of a province chain's head for operators to keep.")
        @Option(help: "Province code.") var province: String
        @Option(help: "File to write the checkpoint note to.") var out: String

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.ledger")
            let key = try Ledger.checkpointKey(services)
            try await CommandEnvironment.run(services) {
                let checkpoint = try await services.ledger.checkpoint(province: province, privateKey: key)
                try Data(checkpoint.note.utf8).write(to: URL(fileURLWithPath: out))
                printLine("checkpoint \(checkpoint.province) sequence \(checkpoint.sequence) head \(checkpoint.headHash) written to \(out)")
            }
        }
    }

    struct Explain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "EXPLAIN every push, pull, status, reversal, seal and publication statement for a province; exit 1 on a sequential scan of a ledger table."
        )
        @Option(help: "Province code.") var province: String

        func run() async throws {
            guard Province.isKnown(province) else { throw ValidationError("--province must be an ISO 3166-2:CN code such as CN-GD") }
            let services = try CommandEnvironment.services(label: "tanhui.ledger")
            try await CommandEnvironment.run(services) {
                let plans = try await services.ledger.explainHotStatements(province: province, citizen: UUID())
                var scans = 0
                for plan in plans {
                    printLine("-- \(plan.name)\n\(plan.plan)\n")
                    scans += plan.sequentialScans.count
                }
                if scans > 0 {
                    printError("\(scans) sequential scan(s) of ledger tables; run ANALYZE, or check the indexes of migration 0003")
                    throw ExitStatus.checkFailed
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A citizen's statement: entries with running balance.")
        @Option(help: "Citizen UUID.") var citizen: String
        @Option(help: "Only this province.") var province: String?

        func run() async throws {
            guard let id = UUID(uuidString: citizen) else { throw ValidationError("--citizen must be a UUID") }
            let services = try CommandEnvironment.services(label: "tanhui.ledger")
            try await CommandEnvironment.run(services) {
                // Page by page (citizen_seq cursor per province): memory stays one page
                // whatever the citizen's history, and nothing is cut off.
                var cursor: [String: Int64] = [:]
                var running: [String: Int64] = [:]
                var printed = 0
                while true {
                    let page = try await services.ledger.statement(citizen: id, province: province, after: cursor)
                    for line in page {
                        cursor[line.province] = line.citizenSeq
                        let (balance, overflow) = running[line.province, default: 0].addingReportingOverflow(line.points)
                        running[line.province] = overflow ? (line.points > 0 ? Int64.max : Int64.min) : balance
                        printed += 1
                        printLine(
                            "\(line.province)  #\(line.citizenSeq)  \(Formatting.instant(line.createdAt))  \(line.kind)  event \(line.eventID.uuidString.lowercased())  \(line.points >= 0 ? "+" : "")\(line.points) points  \(line.gramsCO2e) g  balance \(running[line.province]!)  v\(line.ruleSetVersion)"
                        )
                    }
                    if page.count < LedgerService.maximumPage { break }
                }
                if printed == 0 { printLine("no ledger entries") }
            }
        }
    }
}
