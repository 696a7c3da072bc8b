import ArgumentParser
import Foundation
import TanhuiService

/// `tanhui report`: the same signed report as `GET /v1/provinces/{code}/reports`, after
/// sealing the province and folding its chain into the rollup.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Signed report of accepted and rejected events, grams CO2e, points and citizens per day, kind, variant, district.",
        discussion: """
            Seals the province's pending records, folds the sealed chain into the rollup, and prints the report \
            (JSON, or CSV with --csv) signed with TANHUI_CHECKPOINT_KEY. Cells with fewer than 10 distinct \
            citizens are suppressed. Exit status: 0 printed; 2 could not run (bad option, no key, database unreachable).
            """
    )

    @Option(help: "Province (ISO 3166-2:CN, e.g. CN-GD).") var province: String
    @Option(help: "First local day (UTC+08:00), YYYY-MM-DD.") var from: String
    @Option(help: "Last local day, inclusive, YYYY-MM-DD.") var to: String
    @Option(name: .customLong("group-by"), help: "Comma-separated dimensions: day, kind, variant, district (default: none, one cell).")
    var groupBy = ""
    @Flag(help: "Print the CSV form (its SHA-256 is in the signed note) instead of JSON.") var csv = false
    @Option(help: "With --csv: write the signed note to this file.") var note: String?

    func run() async throws {
        guard province.wholeMatch(of: /CN-[A-Z]{2}/) != nil else {
            printError("--province must look like CN-GD, got '\(province.prefix(20))'")
            throw ExitStatus.couldNotRun
        }
        do {
            _ = try ReportService.request(province: province, from: from, to: to, groupBy: groupBy)
        } catch {
            printError(error.description)
            throw ExitStatus.couldNotRun
        }
        let services = try CommandEnvironment.services(label: "tanhui.report")
        try await CommandEnvironment.run(services) {
            do {
                try await services.ledger.seal(province: province)
                let report = try await services.reports.signedReport(
                    province: province, from: from, to: to, groupBy: groupBy, checkpointKey: services.config.checkpointKey, waitForAdvance: true)
                if csv {
                    FileHandle.standardOutput.write(Data(report.csv.utf8))
                    if let note { try Data(report.note.utf8).write(to: URL(fileURLWithPath: note)) }
                } else {
                    FileHandle.standardOutput.write(report.json + Data("\n".utf8))
                }
            } catch let failure as ReportFailure {
                printError(failure.description)
                throw ExitStatus.couldNotRun
            }
        }
    }
}
