import ArgumentParser
import Foundation

/// Load generator and same-run baselines for `Scripts/bench.sh`.
///
/// Every subcommand prints exactly one JSON object on stdout (the figures bench.sh collects);
/// progress and errors go to stderr. Every loop is bounded by a count and by `--max-seconds`.
/// HTTP targets must be loopback (127.0.0.1); database URLs must point at 127.0.0.1 too.
@main
struct TanhuiLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tanhui-load",
        abstract: "Load generator and baselines for Scripts/bench.sh (loopback only).",
        subcommands: [
            Backlog.self, Daily.self, Pull.self, CopyBaseline.self, InsertBaseline.self, Evaluate.self, PartnerIngest.self, PartnerKeysCommand.self,
            RedeemSetup.self, Redeem.self,
        ]
    )
}

/// Options shared by the HTTP benchmarks.
struct HTTPOptions: ParsableArguments {
    @Option(help: "Base URL of `tanhui serve` (must be http://127.0.0.1:PORT).") var url: String
    @Option(help: "Concurrent connections.") var concurrency = 16
    @Option(help: "Stop issuing requests after this many seconds.") var maxSeconds = 20.0
    @Option(help: "Seed: citizens are derived from it, so different seeds never share citizens.") var seed: Int = 1

    func validate() throws {
        guard url.hasPrefix("http://127.0.0.1:") else { throw ValidationError("--url must be http://127.0.0.1:PORT (loopback only)") }
        guard (1...512).contains(concurrency) else { throw ValidationError("--concurrency must be 1…512") }
        guard maxSeconds > 0, maxSeconds <= 600 else { throw ValidationError("--max-seconds must be in (0, 600]") }
        guard (0...0xFFFF_FFFF).contains(seed) else { throw ValidationError("--seed must fit in 32 bits") }
    }
}

/// Options shared by the database baselines.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "PostgreSQL URL (must be on 127.0.0.1).") var databaseURL: String
    @Option(help: "Rows to write.") var rows = 30_000
    @Option(help: "Stop after this many seconds.") var maxSeconds = 20.0

    func validate() throws {
        guard databaseURL.contains("@127.0.0.1:") || databaseURL.contains("//127.0.0.1:") else {
            throw ValidationError("--database-url must point at 127.0.0.1 (loopback only)")
        }
        guard (1...10_000_000).contains(rows) else { throw ValidationError("--rows must be 1…10000000") }
        guard maxSeconds > 0, maxSeconds <= 600 else { throw ValidationError("--max-seconds must be in (0, 600]") }
    }
}

func emit(_ object: [String: Any]) {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func note(_ text: String) {
    FileHandle.standardError.write(Data("tanhui-load: \(text)\n".utf8))
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func round3(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

/// CPU seconds (user + system) this process has used so far.
func cpuSeconds() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}
