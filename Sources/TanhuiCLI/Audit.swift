import ArgumentParser
import Crypto
import Foundation
import Synchronization
import TanhuiService

/// `tanhui audit`: proves the books are right, or says exactly where they are not.
/// Exit codes: 0 every check holds, 1 a check is violated, 2 the audit could not run.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Audit the ledger on one consistent snapshot: balances, conservation, hash chain, checkpoints, replay, completeness, caps, reversals, guard rails, overlapping trips, chain order.",
        discussion: """
            Exit status: 0 every check holds; 1 at least one check is violated; 2 the audit could not run \
            (bad argument value, database unreachable, unreadable checkpoint file, no trusted key).
            --from/--to only filter which offending transactions are reported (by created_at); every check \
            still runs over the whole province, because chain, conservation, caps and balances are cumulative.
            """
    )

    @Option(name: .customLong("province"), help: "Audit only this province (repeatable). Default: every province.") var provinces: [String] = []
    @Option(help: "Report findings about transactions created at or after this instant (ISO 8601, or YYYY-MM-DD in UTC).") var from: String?
    @Option(help: "Report findings about transactions created before this instant.") var to: String?
    @Option(name: .customLong("checkpoint"), help: "A checkpoint file from `tanhui ledger checkpoint --out` (repeatable).") var checkpointFiles:
        [String] = []
    @Option(
        help:
            "Incremental audit: verify only what was appended after this v2 checkpoint file (its province), starting from the signed summary stored with it."
    ) var since: String?
    @Option(
        name: .customLong("public-key"),
        help: "Base64 Ed25519 public key checkpoints must be signed with (default: the key of TANHUI_CHECKPOINT_KEY).") var publicKey: String?
    @Option(name: .customLong("seal-bound"), help: "Unsealed transactions older than this many seconds are a finding.") var sealBound = "60"
    @Option(
        help:
            "Parallel workers, each on its own connection in one exported snapshot: a province's ledger fold (split by citizen range), its chain and its set checks run as separate parts (default: the number of cores, at most 8)."
    ) var jobs = String(min(8, max(1, ProcessInfo.processInfo.activeProcessorCount)))
    @Option(
        name: .customLong("statement-timeout"),
        help:
            "Bound on each of the audit's statements, in seconds (1…86400; TANHUI_DB_STATEMENT_TIMEOUT_MS bounds the service's, not the audit's): a cursor's first page may sort a whole table."
    ) var statementTimeout = "3600"
    @Flag(help: "Print the report as JSON (stable, documented structure) instead of text.") var json = false
    @Option(
        name: .customLong("chain-range-links"),
        help: ArgumentHelp("Split a province chain between workers only when each range gets at least this many links.", visibility: .hidden))
    var chainRangeLinks = "1000"

    static let maximumCheckpointBytes = 64 * 1024

    func run() async throws {
        var options = AuditOptions()
        options.provinces = provinces
        for province in provinces where province.wholeMatch(of: /CN-[A-Z]{2}/) == nil {
            try Self.fail("--province must look like CN-GD, got '\(province.prefix(20))'")
        }
        guard let jobs = Int(jobs), (1...64).contains(jobs) else { try Self.fail("--jobs must be an integer in 1…64") }
        options.jobs = jobs
        guard let timeout = Int(statementTimeout), (1...86_400).contains(timeout) else {
            try Self.fail("--statement-timeout must be a whole number of seconds in 1…86400")
        }
        options.statementTimeoutSeconds = timeout
        guard let chainRangeLinks = Int64(chainRangeLinks), chainRangeLinks >= 1 else {
            try Self.fail("--chain-range-links must be a whole number ≥ 1")
        }
        options.minimumLinksPerChainRange = chainRangeLinks
        guard let bound = Int(sealBound), bound >= 0 else { try Self.fail("--seal-bound must be a whole number of seconds ≥ 0") }
        options.sealBoundSeconds = bound
        if let from {
            guard let date = Self.instant(from) else { try Self.fail("--from must be ISO 8601 (2027-03-01T00:00:00+08:00) or YYYY-MM-DD") }
            options.from = date
        }
        if let to {
            guard let date = Self.instant(to) else { try Self.fail("--to must be ISO 8601 (2027-03-01T00:00:00+08:00) or YYYY-MM-DD") }
            options.to = date
        }
        if let from = options.from, let to = options.to, to <= from { try Self.fail("--to must be after --from") }
        if let since {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: since), let size = attributes[.size] as? Int,
                size <= Self.maximumCheckpointBytes, let data = FileManager.default.contents(atPath: since)
            else {
                try Self.fail("cannot read checkpoint file \(since) (missing, unreadable or larger than \(Self.maximumCheckpointBytes) bytes)")
            }
            options.since = (since, String(decoding: data, as: UTF8.self))
            if !provinces.isEmpty { try Self.fail("--since audits the checkpoint's province; leave out --province") }
        }
        for file in checkpointFiles {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: file), let size = attributes[.size] as? Int,
                size <= Self.maximumCheckpointBytes, let data = FileManager.default.contents(atPath: file)
            else {
                try Self.fail("cannot read checkpoint file \(file) (missing, unreadable or larger than \(Self.maximumCheckpointBytes) bytes)")
            }
            options.checkpoints.append((file, String(decoding: data, as: UTF8.self)))
        }
        if let publicKey {
            guard let raw = Data(base64Encoded: publicKey.trimmingCharacters(in: .whitespacesAndNewlines)),
                let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
            else {
                try Self.fail("--public-key must be the base64 of a 32-byte Ed25519 public key")
            }
            options.trustedKey = key
        }

        let services = try CommandEnvironment.services(label: "tanhui.audit")
        if options.trustedKey == nil, let raw = services.config.checkpointKey {
            options.trustedKey = try Curve25519.Signing.PrivateKey(rawRepresentation: raw).publicKey
        }
        if (!options.checkpoints.isEmpty || options.since != nil) && options.trustedKey == nil {
            await services.shutdown()
            try Self.fail("--checkpoint and --since need a trusted key: --public-key BASE64 or TANHUI_CHECKPOINT_KEY")
        }
        let asJSON = json
        try await CommandEnvironment.run(services) {
            let audit = LedgerAudit(pool: services.pool)
            var meter: ProgressMeter?
            if isatty(2) == 1 {
                let estimate: Int64 = (try? await audit.estimatedRows()) ?? 0
                meter = ProgressMeter(estimatedRows: estimate)
            }
            var progress: (@Sendable (Int64) -> Void)?
            if let meter { progress = { meter.advance($0) } }
            let report = try await audit.run(options, progress: progress)
            meter?.finish()
            if asJSON {
                printLine(report.json())
            } else {
                report.human().forEach(printLine)
            }
            if !report.ok { throw ExitStatus.checkFailed }
        }
    }

    static func fail(_ message: String) throws -> Never {
        printError(message)
        throw ExitStatus.couldNotRun
    }

    static func instant(_ text: String) -> Date? {
        if text.wholeMatch(of: /\d{4}-\d{2}-\d{2}/) != nil { return try? Date(text + "T00:00:00Z", strategy: .iso8601) }
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

/// Rows checked, rate and ETA on stderr, redrawn at most twice a second (only on a terminal).
final class ProgressMeter: Sendable {
    private struct State {
        var rows: Int64 = 0
        var lastDraw = ContinuousClock.now
    }

    private let state = Mutex(State())
    private let start = ContinuousClock.now
    private let estimatedRows: Int64

    init(estimatedRows: Int64) {
        self.estimatedRows = estimatedRows
    }

    func advance(_ rows: Int64) {
        let line: String? = state.withLock { state in
            state.rows += rows
            let now = ContinuousClock.now
            guard now - state.lastDraw >= .milliseconds(500) else { return nil }
            state.lastDraw = now
            let seconds = max(Double((now - start).components.seconds) + Double((now - start).components.attoseconds) / 1e18, 0.001)
            let rate = Double(state.rows) / seconds
            var text = "\r  audit: \(state.rows) rows checked, \(Int(rate)) rows/s"
            if estimatedRows > state.rows, rate > 0 { text += ", ETA \(Int(Double(estimatedRows - state.rows) / rate)) s" }
            return text + "    "
        }
        if let line { FileHandle.standardError.write(Data(line.utf8)) }
    }

    func finish() {
        let rows = state.withLock { $0.rows }
        FileHandle.standardError.write(Data("\r  audit: \(rows) rows checked.\u{1B}[K\n".utf8))
    }
}
