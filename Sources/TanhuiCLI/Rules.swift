import ArgumentParser
import Foundation
import TanhuiCore
import TanhuiService

/// `tanhui rules …`: province operators author, check, publish and preview rule sets.
struct Rules: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate, publish, list, show, diff and simulate province rule sets.",
        subcommands: [
            Validate.self, Publish.self, List.self, Show.self, Diff.self, Simulate.self,
            Governance.Policy.self, Governance.Propose.self, Governance.Approve.self, Governance.Reject.self, Governance.Proposals.self,
            Governance.PublishProposal.self,
        ]
    )

    /// Rule-set files are small; refuse anything larger before reading it whole.
    static let maximumFileBytes = 256 * 1024

    static func readDocument(_ path: String) throws -> String {
        let url = URL(fileURLWithPath: path)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let size = attributes[.size] as? Int
        else {
            printError("cannot read \(path)")
            throw ExitStatus.couldNotRun
        }
        guard size <= maximumFileBytes else {
            printError("\(path): document_too_large: \(size) bytes, the limit is \(maximumFileBytes)")
            throw ExitStatus.checkFailed
        }
        let data = try Data(contentsOf: url)
        guard let text = String(data: data, encoding: .utf8) else {
            printError("\(path): not_utf8: the file is not UTF-8")
            throw ExitStatus.checkFailed
        }
        return text
    }

    static func report(_ issues: [ValidationIssue], file: String) {
        for issue in issues {
            let position = [issue.line, issue.column].compactMap { $0 }.map(String.init).joined(separator: ":")
            printLine(
                "\(file)\(position.isEmpty ? "" : ":" + position): \(issue.path.isEmpty ? "(document)" : issue.path): \(issue.code.rawValue): \(issue.message)"
            )
        }
    }

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a rule-set file; silent and exit 0 when valid, every problem listed and exit 1 otherwise.",
            discussion: "With DATABASE_URL set, also checks the version against the latest published one and that effective_from is not retroactive."
        )
        @Argument(help: "YAML or JSON rule-set file.") var file: String

        func run() async throws {
            let document = try Rules.readDocument(file)
            if ProcessInfo.processInfo.environment["DATABASE_URL", default: ""].isEmpty {
                do {
                    _ = try RuleSetParser.parse(document)
                } catch {
                    Rules.report(error.issues, file: file)
                    throw ExitStatus.checkFailed
                }
                printError("note: DATABASE_URL is not set; publication checks (version, effective_from) skipped")
                return
            }
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                do {
                    _ = try await services.ruleSets.validate(document: document)
                } catch let rejected as RuleSetRejected {
                    Rules.report(rejected.issues, file: file)
                    throw ExitStatus.checkFailed
                }
            }
        }
    }

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate and store a rule set atomically; prints province, version and effective_from.")
        @Argument(help: "YAML or JSON rule-set file.") var file: String
        @Flag(help: "Succeed without change when this exact document is already published under its version.") var ifAbsent = false
        @Option(help: "Who publishes (recorded with the version).") var by = ProcessInfo.processInfo.environment["USER"] ?? "cli"

        func run() async throws {
            let document = try Rules.readDocument(file)
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                do {
                    let outcome = try await services.ruleSets.publish(document: document, publishedBy: by, ifAbsent: ifAbsent)
                    let summary = outcome.summary
                    let verb: String
                    switch outcome {
                    case .published: verb = "published"
                    case .alreadyPublished: verb = "already published"
                    }
                    printLine(
                        "\(verb) \(summary.province) version \(summary.version) effective from \(Formatting.instant(summary.effectiveFrom)) sha256 \(summary.contentSHA256)"
                    )
                } catch let rejected as RuleSetRejected {
                    Rules.report(rejected.issues, file: file)
                    throw ExitStatus.checkFailed
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List published versions.")
        @Option(help: "Only this province (e.g. CN-GD).") var province: String?

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                let summaries = try await services.ruleSets.list(province: province)
                if summaries.isEmpty { printLine("no rule sets published") }
                for summary in summaries {
                    printLine(
                        "\(summary.province)  v\(summary.version)  effective \(Formatting.instant(summary.effectiveFrom))  published \(Formatting.instant(summary.publishedAt)) by \(summary.publishedBy)  \(summary.methodology)"
                    )
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a published document byte-for-byte on stdout; its SHA-256 on stderr."
        )
        @Argument(help: "Province code, e.g. CN-GD.") var province: String
        @Argument(help: "Version number.") var version: Int

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                let stored = try await services.ruleSets.show(province: province, version: version)
                FileHandle.standardOutput.write(Data(stored.document.utf8))
                printError("\(stored.summary.province) v\(stored.summary.version) content_sha256 \(stored.summary.contentSHA256)")
            }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What changed between two published versions.")
        @Argument(help: "Province code.") var province: String
        @Argument(help: "Older version.") var from: Int
        @Argument(help: "Newer version.") var to: Int

        func run() async throws {
            let services = try CommandEnvironment.services(label: "tanhui.rules")
            try await CommandEnvironment.run(services) {
                let lines = try await services.ruleSets.diff(province: province, from: from, to: to)
                printLine(lines.isEmpty ? "no differences" : lines.joined(separator: "\n"))
            }
        }
    }

    struct Simulate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Dry run: the award or rejection for each event, and totals. Writes nothing.",
            discussion:
                "Events are evaluated in file order as one citizen's, so caps accumulate. EVENTS.jsonl holds one event per line in the sync format."
        )
        @Argument(help: "A rule-set file, or PROVINCE@VERSION of a published one.") var ruleSet: String
        @Option(help: "JSON Lines file of events.") var events: String
        @Option(help: "Receipt time for the submission window (RFC 3339); default: each event's own end time.") var receivedAt: String?
        @Option(help: "Whose events: device (self-reported, the default) or partner (a feed partner's records); trust keys depend on it.")
        var source: String = SimulationSource.device.rawValue

        static let maximumEvents = 100_000

        func run() async throws {
            guard let simulated = SimulationSource(rawValue: source) else {
                throw ValidationError("--source must be device or partner")
            }
            var receipt: Date?
            if let receivedAt {
                guard let date = Timestamp.parse(receivedAt) else {
                    throw ValidationError("--received-at must be an RFC 3339 timestamp with a UTC offset")
                }
                receipt = date
            }
            guard let data = FileManager.default.contents(atPath: events) else {
                printError("cannot read \(events)")
                throw ExitStatus.couldNotRun
            }
            let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
            guard lines.count <= Self.maximumEvents else {
                printError("\(events): more than \(Self.maximumEvents) events")
                throw ExitStatus.couldNotRun
            }
            let decoded = lines.map { EventWire.decode(json: Data($0)) }

            let rules: RuleSet
            if let at = ruleSet.firstIndex(of: "@"), !FileManager.default.fileExists(atPath: ruleSet) {
                guard let version = Int(ruleSet[ruleSet.index(after: at)...]) else {
                    throw ValidationError("expected PROVINCE@VERSION, e.g. CN-GD@2")
                }
                let services = try CommandEnvironment.services(label: "tanhui.rules")
                var loaded: RuleSet?
                try await CommandEnvironment.run(services) {
                    loaded = try await services.ruleSets.ruleSet(province: String(ruleSet[..<at]), version: version)
                }
                rules = loaded!
            } else {
                do {
                    rules = try RuleSetParser.parse(try Rules.readDocument(ruleSet))
                } catch let invalid as RuleSetInvalid {
                    Rules.report(invalid.issues, file: ruleSet)
                    throw ExitStatus.checkFailed
                }
            }
            let report = RuleSetService.simulate(ruleSet: rules, events: decoded, receivedAt: receipt, source: simulated)
            for line in report.lines {
                if let evaluation = line.evaluation {
                    switch evaluation {
                    case .accepted(let award):
                        let capped = award.capped ? "  capped by \(award.capsApplied.map(\.key).joined(separator: ", "))" : ""
                        let campaign = award.campaign.map { "  campaign \($0) ×\(award.multiplier)" } ?? ""
                        let expires = award.lotExpiresAtMs.map { "  expires \(Timestamp.textUTC(milliseconds: $0))" } ?? ""
                        printLine("\(line.eventID)  accepted  \(award.gramsCO2e) g  \(award.pointsAwarded) points\(campaign)\(capped)\(expires)")
                    case .rejected(let rejection):
                        printLine("\(line.eventID)  rejected  \(rejection.code.rawValue)  \(rejection.message)")
                    }
                } else {
                    let problems = line.invalid.map { "\($0.path): \($0.message)" }.joined(separator: "; ")
                    printLine("\(line.eventID)  invalid  \(problems)")
                }
            }
            printLine(
                "total: \(report.accepted) accepted, \(report.rejected) rejected, \(report.invalid) invalid; \(report.gramsCO2e) g CO2e, \(report.points) points (\(rules.province) v\(rules.version)\(simulated == .partner ? ", as partner records" : ""))"
            )
        }
    }
}

enum Formatting {
    /// RFC 3339 in UTC, the form every command prints instants in.
    static func instant(_ date: Date) -> String {
        date.formatted(
            .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon).timeZone(
                separator: .omitted))
    }
}
