import ArgumentParser
import TanhuiPostgres
import TanhuiService

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending schema migrations (safe to run from several processes at once)."
    )

    @Flag(help: "List applied and pending migrations; change nothing.")
    var status = false

    func run() async throws {
        let services = try CommandEnvironment.services(label: "tanhui.migrate")
        try await CommandEnvironment.run(services) {
            if status {
                let report = try await services.migrator.status()
                for applied in report.applied {
                    let mark = report.changed.contains(applied.name) ? "CHANGED" : report.unknown.contains(applied.name) ? "unknown" : "applied"
                    printLine("\(mark)  \(applied.name)  \(applied.appliedAt)")
                }
                for name in report.pending { printLine("pending  \(name)") }
                if !report.isCurrent { throw ExitStatus.checkFailed }
                return
            }
            let applied = try await services.migrator.migrate()
            printLine(applied.isEmpty ? "schema is current" : applied.map { "applied  \($0)" }.joined(separator: "\n"))
        }
    }
}
