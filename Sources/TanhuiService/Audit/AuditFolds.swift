import Foundation
import TanhuiCore

// Pure audit logic: rows in, findings out. No SQL here; `LedgerAudit` streams the rows.

/// Saturating arithmetic for the audit: a tampered value near the 64-bit limits becomes a
/// large finding, never a trap.
enum Saturating {
    static func add(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? Int64.max : Int64.min) : sum
    }

    /// |a|, with |Int64.min| as Int64.max.
    static func magnitude(_ a: Int64) -> Int64 { a == Int64.min ? Int64.max : Swift.abs(a) }

    /// |a − b|, saturating.
    static func gap(_ a: Int64, _ b: Int64) -> Int64 {
        let (difference, overflow) = a.subtractingReportingOverflow(b)
        return overflow ? Int64.max : magnitude(difference)
    }

    /// |a + b|, saturating.
    static func sumMagnitude(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int64.max : magnitude(sum)
    }

    /// Whether a = −b exactly.
    static func isNegation(_ a: Int64, _ b: Int64) -> Bool {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return !overflow && sum == 0
    }
}

/// A ledger transaction as the audit reads it, with its entries already summed by the database.
struct AuditTransactionRow: Sendable {
    var transactionID: Int64
    var kind: String
    /// Lower-case UUID text (the order the database streams citizens in).
    var citizen: String
    var citizenSeq: Int64
    var eventID: String
    /// The same id parsed (nil if the text is no uuid), for the rule replay.
    var eventUUID: UUID? = nil
    var points: Int64
    var grams: Int64
    var ruleSetVersion: Int
    var pointsBeforeCaps: Int64?
    var reversesID: Int64?
    /// nil: not an instant in years 1000…9999 (`infinity`, or absurd: a tampered row).
    var createdAt: Date?
    var entryCount: Int64
    var entrySum: Int64
    var issuanceSum: Int64
    var citizenSum: Int64
    /// Entries on accounts that are neither `issuance` nor this transaction's citizen.
    var foreignEntries: Int64
    var event: AuditEventRow?
    var original: AuditOriginalRow?
}

struct AuditEventRow: Sendable {
    var status: String
    var citizen: String
    var kind: String
    var occurredAt: Date
    var endedAt: Date?
    var receivedAt: Date
    /// occurred_at, ended_at and received_at are instants in years 1000…9999 (else the
    /// Date fields are placeholders and the award cannot be replayed).
    var instantsInRange: Bool
    /// Stored by a feed partner (device `partner:<id>`, the rule `partner_feeds` checks):
    /// replayed as evidenced, every other event as self-reported, as the judge did.
    var partnerSourced: Bool
    var data: EventData
}

/// The award a reversal names, with its entries summed.
struct AuditOriginalRow: Sendable {
    var kind: String
    var citizen: String
    var eventID: String
    var points: Int64
    var grams: Int64
    var ruleSetVersion: Int
    var issuanceSum: Int64
    var citizenSum: Int64
}

struct AuditAccountRow: Sendable {
    var citizen: String
    var balancePoints: Int64
    var balanceGrams: Int64
    var lastSeq: Int64
}

/// A citizen's state in a v2 checkpoint's signed summary (the start of an incremental fold).
struct AuditSummaryRow: Sendable {
    var points: Int64
    var grams: Int64
    var lastSeq: Int64
    /// `window_key=points/events,…`
    var caps: String

    var capCounters: [String: (points: Int64, events: Int64)] {
        var counters: [String: (points: Int64, events: Int64)] = [:]
        for pair in caps.split(separator: ",") {
            guard let equals = pair.lastIndex(of: "="), let slash = pair[equals...].firstIndex(of: "/"),
                let points = Int64(pair[pair.index(after: equals)..<slash]), let events = Int64(pair[pair.index(after: slash)...])
            else { continue }
            counters[String(pair[..<equals])] = (points, events)
        }
        return counters
    }
}

struct AuditCapUsageRow: Sendable {
    var citizen: String
    var windowKey: String
    var points: Int64
    var events: Int64
}

/// Replays one province's citizens: balances, sequence, running balance, replay and caps,
/// completeness of awards, reversal mirroring. Memory: one citizen's cap windows at a time.
struct ProvinceFold {
    let province: String
    /// Parsed rule-set versions whose stored document still matches its hash.
    let ruleSets: [Int: RuleSet]
    let history: RuleSetHistory

    // The current citizen.
    private var citizen: String?
    private var points: Int64 = 0
    private var grams: Int64 = 0
    private var expectedSeq: Int64 = 1
    private var lastSeq: Int64 = 0
    private var usage = CapUsage()
    private var recomputed: [String: (points: Int64, events: Int64, window: CapWindow)] = [:]
    /// Incremental fold: the summary's cap counters, seeded into `usage` when a window is first met.
    private var priorCaps: [String: (points: Int64, events: Int64)] = [:]
    private var seeded: Set<String> = []

    init(province: String, ruleSets: [Int: RuleSet]) {
        self.province = province
        self.ruleSets = ruleSets
        self.history = RuleSetHistory(Array(ruleSets.values))
    }

    /// A finding's row ids (built only when a finding is recorded: no per-row allocation).
    private static func base(_ province: String, _ row: AuditTransactionRow) -> [(String, AuditValue)] {
        [
            ("province", .string(province)), ("transaction_id", .int(row.transactionID)), ("citizen_id", .string(row.citizen)),
            ("citizen_seq", .int(row.citizenSeq)), ("event_id", .string(row.eventID)),
        ]
    }

    /// Starts a citizen from nothing, or (incremental audit) from the signed summary.
    mutating func begin(citizen: String, from prior: AuditSummaryRow? = nil) {
        self.citizen = citizen
        points = prior?.points ?? 0
        grams = prior?.grams ?? 0
        lastSeq = prior?.lastSeq ?? 0
        expectedSeq = Saturating.add(lastSeq, 1)
        usage = CapUsage()
        recomputed = [:]
        priorCaps = prior?.capCounters ?? [:]
        seeded = []
    }

    /// One transaction of the current citizen, in citizen_seq order.
    mutating func transaction(_ row: AuditTransactionRow, into audit: inout AuditAccumulator) {
        let at = row.createdAt
        let province = self.province
        lazy var ids = Self.base(province, row)

        // 1. Balanced, at least two legs, legs carry the transaction's points.
        audit.checked(.transactionsBalance)
        if row.entryCount < 2 {
            audit.record(
                .transactionsBalance,
                AuditFinding(
                    "has \(row.entryCount) entr\(row.entryCount == 1 ? "y" : "ies"); at least 2 are required",
                    magnitude: max(Saturating.magnitude(row.entrySum), 1), at: at, ids + [("entries", .int(row.entryCount))]))
        }
        if row.entrySum != 0 {
            audit.record(
                .transactionsBalance,
                AuditFinding(
                    "entries sum to \(row.entrySum), not 0", magnitude: Saturating.magnitude(row.entrySum), at: at,
                    ids + [("entries_sum", .int(row.entrySum))]))
        }
        // Spending kinds move points between the citizen's, held, partner and expired
        // accounts (no issuance leg); RedemptionAudit checks them.
        let spending = RedemptionService.kinds.contains(row.kind)
        if row.foreignEntries > 0 && !spending {
            audit.record(
                .transactionsBalance, AuditFinding("\(row.foreignEntries) entries on accounts other than issuance and its citizen", at: at, ids))
        }
        if !spending && row.entrySum == 0 && row.entryCount >= 2
            && (row.citizenSum != row.points || !Saturating.isNegation(row.issuanceSum, row.points))
        {
            audit.record(
                .transactionsBalance,
                AuditFinding(
                    "entries move \(row.citizenSum) points to the citizen but the transaction records \(row.points)",
                    magnitude: Saturating.gap(row.citizenSum, row.points), at: at,
                    ids + [("entries_points", .int(row.citizenSum)), ("transaction_points", .int(row.points))]))
        }

        if row.createdAt == nil {
            audit.record(
                .chainOrder,
                AuditFinding("created_at is not an instant between the years 1000 and 9999 (infinity or absurd)", magnitude: Int64.max, ids))
        }

        // 3. Gap-free numbering per citizen.
        if row.citizenSeq != expectedSeq {
            audit.record(
                .cachedBalances,
                AuditFinding(
                    "citizen_seq \(row.citizenSeq) where \(expectedSeq) was expected (missing or extra transaction)",
                    magnitude: Saturating.gap(row.citizenSeq, expectedSeq), at: at, ids))
        }
        expectedSeq = Saturating.add(row.citizenSeq, 1)
        lastSeq = max(lastSeq, row.citizenSeq)

        // 8. Running balance never negative.
        let (newPoints, pointsOverflow) = points.addingReportingOverflow(row.citizenSum)
        let (newGrams, gramsOverflow) = grams.addingReportingOverflow(row.grams)
        points = pointsOverflow ? Saturating.add(points, row.citizenSum) : newPoints
        grams = gramsOverflow ? Saturating.add(grams, row.grams) : newGrams
        audit.checked(.capsAndNegativeBalances)
        if pointsOverflow || gramsOverflow {
            audit.record(
                .capsAndNegativeBalances,
                AuditFinding(
                    "the citizen's running balance overflows 64 bits after this transaction", magnitude: Int64.max, at: at,
                    ids + [("balance_points", .int(points)), ("balance_grams", .int(grams))]))
        }
        if points < 0 {
            audit.record(
                .capsAndNegativeBalances,
                AuditFinding(
                    "citizen balance \(points) points after this transaction", magnitude: Saturating.magnitude(points), at: at,
                    ids + [("balance_points", .int(points))]))
        }

        switch row.kind {
        case "award":
            award(row, into: &audit)
        case _ where spending:
            if row.citizenSum != row.points {
                audit.record(
                    .transactionsBalance,
                    AuditFinding(
                        "entries move \(row.citizenSum) points to the citizen but the transaction records \(row.points)",
                        magnitude: Saturating.gap(row.citizenSum, row.points), at: at, ids))
            }
        default:
            reversal(row, into: &audit)
        }
    }

    private mutating func award(_ row: AuditTransactionRow, into audit: inout AuditAccumulator) {
        let province = self.province
        lazy var ids = Self.base(province, row)
        let at = row.createdAt
        audit.checked(.completeness)
        guard let event = row.event else {
            audit.record(
                .completeness,
                AuditFinding(
                    "award references event \(row.eventID), which does not exist", magnitude: max(Saturating.magnitude(row.points), 1), at: at, ids))
            return
        }
        if event.status != "accepted" {
            audit.record(
                .completeness,
                AuditFinding(
                    "award references an event whose verdict is '\(event.status)'", magnitude: max(Saturating.magnitude(row.points), 1), at: at, ids))
        }
        if event.citizen != row.citizen {
            audit.record(
                .completeness,
                AuditFinding(
                    "award is credited to another citizen than the event's (\(event.citizen))", magnitude: max(Saturating.magnitude(row.points), 1),
                    at: at, ids))
        }

        // 6. Replay under the version the award names, caps accumulating in citizen order.
        audit.checked(.replay)
        guard event.instantsInRange else {
            audit.record(
                .replay,
                AuditFinding(
                    "the event's occurred_at, ended_at or received_at is not an instant between the years 1000 and 9999: the award cannot be replayed",
                    magnitude: max(Saturating.magnitude(row.points), 1), at: at, ids))
            return
        }
        let version = row.ruleSetVersion
        guard let ruleSet = ruleSets[version] else {
            audit.record(
                .replay,
                AuditFinding(
                    "names rule-set version \(version), which is not published or whose document no longer matches its hash",
                    magnitude: max(Saturating.magnitude(row.points), 1), at: at, ids + [("rule_set_version", .int(Int64(version)))]))
            return
        }
        guard let id = row.eventUUID else { return }
        let judged = ActionEvent(id: id, kind: event.kind, province: province, occurredAt: event.occurredAt, endedAt: event.endedAt, data: event.data)
        if let inForce = history.inForce(at: event.occurredAt)?.version, inForce != version {
            audit.record(
                .replay,
                AuditFinding(
                    "names rule-set version \(version) but version \(inForce) is in force at occurred_at \(AuditReport.instant(event.occurredAt))",
                    magnitude: max(Saturating.magnitude(row.points), 1), at: at,
                    ids + [("rule_set_version", .int(Int64(version))), ("in_force", .int(Int64(inForce)))]))
        }
        let windows = ruleSet.capWindows(for: judged)
        for window in windows where !seeded.contains(window.key) {
            seeded.insert(window.key)
            if let prior = priorCaps[window.key] { usage[window] = CapUsage.Counter(points: prior.points, events: prior.events) }
        }
        switch RuleEvaluator.evaluate(
            event: judged, ruleSet: ruleSet, usage: usage, receivedAt: event.receivedAt, selfReported: !event.partnerSourced)
        {
        case .accepted(let replayed):
            if replayed.gramsCO2e != row.grams || replayed.pointsAwarded != row.points
                || (row.pointsBeforeCaps.map { $0 != replayed.pointsBeforeCaps } ?? false)
            {
                audit.record(
                    .replay,
                    AuditFinding(
                        "stored \(row.points) points / \(row.grams) g, replay gives \(replayed.pointsAwarded) points / \(replayed.gramsCO2e) g",
                        magnitude: Saturating.add(Saturating.gap(replayed.pointsAwarded, row.points), Saturating.gap(replayed.gramsCO2e, row.grams)),
                        at: at,
                        ids + [
                            ("stored_points", .int(row.points)), ("replayed_points", .int(replayed.pointsAwarded)),
                            ("stored_grams", .int(row.grams)), ("replayed_grams", .int(replayed.gramsCO2e)),
                        ]))
            }
        case .rejected(let rejection):
            audit.record(
                .replay,
                AuditFinding(
                    "replay rejects the event: \(rejection.code.rawValue): \(rejection.message)",
                    magnitude: max(Saturating.magnitude(row.points), 1), at: at, ids + [("code", .string(rejection.code.rawValue))]))
        }
        // What the service consumed: the stored points, one event per window (nothing for 0 points).
        guard row.points > 0 else { return }
        for window in windows {
            var counter = usage[window]
            counter.points = Saturating.add(counter.points, row.points)
            counter.events = Saturating.add(counter.events, 1)
            usage[window] = counter
            recomputed[window.key] = (counter.points, counter.events, window)
            if let max = window.maxPoints, counter.points > max {
                audit.record(
                    .capsAndNegativeBalances,
                    AuditFinding(
                        "cap \(window.key) reaches \(counter.points) points, above its \(max)",
                        magnitude: Saturating.gap(counter.points, max), at: at, ids + [("window_key", .string(window.key))]))
            }
            if let max = window.maxEvents, counter.events > max {
                audit.record(
                    .capsAndNegativeBalances,
                    AuditFinding(
                        "cap \(window.key) reaches \(counter.events) events, above its \(max)",
                        magnitude: Saturating.gap(counter.events, max), at: at, ids + [("window_key", .string(window.key))]))
            }
        }
    }

    private func reversal(_ row: AuditTransactionRow, into audit: inout AuditAccumulator) {
        let province = self.province
        lazy var ids = Self.base(province, row)
        let at = row.createdAt
        lazy var fields = ids + [("reverses_id", row.reversesID.map { .int($0) } ?? .string("-"))]
        audit.checked(.reversals)
        guard let original = row.original else {
            audit.record(
                .reversals,
                AuditFinding(
                    "reverses transaction \(row.reversesID.map(String.init) ?? "-"), which does not exist",
                    magnitude: max(Saturating.magnitude(row.points), 1), at: at, fields))
            return
        }
        var problems: [String] = []
        if original.kind != "award" { problems.append("reverses a \(original.kind), not an award") }
        if !Saturating.isNegation(row.points, original.points) { problems.append("points \(row.points) ≠ −\(original.points)") }
        if !Saturating.isNegation(row.grams, original.grams) { problems.append("grams \(row.grams) ≠ −\(original.grams)") }
        if row.eventID != original.eventID { problems.append("event \(row.eventID) ≠ \(original.eventID)") }
        if row.citizen != original.citizen { problems.append("citizen differs from the award's") }
        if row.ruleSetVersion != original.ruleSetVersion { problems.append("rule-set version \(row.ruleSetVersion) ≠ \(original.ruleSetVersion)") }
        if !Saturating.isNegation(row.issuanceSum, original.issuanceSum) || !Saturating.isNegation(row.citizenSum, original.citizenSum) {
            problems.append(
                "entries (issuance \(row.issuanceSum), citizen \(row.citizenSum)) do not mirror the award's (\(original.issuanceSum), \(original.citizenSum))"
            )
        }
        if !problems.isEmpty {
            audit.record(
                .reversals,
                AuditFinding(
                    "does not mirror its award: " + problems.joined(separator: "; "),
                    magnitude: Saturating.add(
                        Saturating.add(Saturating.sumMagnitude(row.points, original.points), Saturating.sumMagnitude(row.grams, original.grams)), 1),
                    at: at, fields))
        }
    }

    /// Closes the current citizen: compares the cached account row and cap usage with the fold.
    mutating func end(account: AuditAccountRow?, capUsage: [AuditCapUsageRow], into audit: inout AuditAccumulator) {
        guard let citizen else { return }
        let province = self.province
        lazy var ids: [(String, AuditValue)] = [
            ("province", .string(province)), ("account", .string("citizen:" + citizen)), ("citizen_id", .string(citizen)),
        ]
        audit.checked(.cachedBalances)
        if let account {
            var problems: [String] = []
            if account.balancePoints != points { problems.append("balance_points \(account.balancePoints) ≠ \(points) from entries") }
            if account.balanceGrams != grams { problems.append("balance_grams \(account.balanceGrams) ≠ \(grams) from transactions") }
            if account.lastSeq != lastSeq { problems.append("last_seq \(account.lastSeq) ≠ \(lastSeq)") }
            if !problems.isEmpty {
                audit.record(
                    .cachedBalances,
                    AuditFinding(
                        problems.joined(separator: "; "),
                        magnitude: Saturating.add(
                            Saturating.add(Saturating.gap(account.balancePoints, points), Saturating.gap(account.balanceGrams, grams)),
                            Saturating.gap(account.lastSeq, lastSeq)),
                        ids + [
                            ("cached_points", .int(account.balancePoints)), ("ledger_points", .int(points)),
                            ("cached_grams", .int(account.balanceGrams)), ("ledger_grams", .int(grams)),
                            ("cached_last_seq", .int(account.lastSeq)), ("ledger_last_seq", .int(lastSeq)),
                        ]))
            }
        } else if lastSeq > 0 {
            audit.record(
                .cachedBalances,
                AuditFinding(
                    "has \(lastSeq) transactions but no citizen_accounts row", magnitude: Saturating.add(Saturating.magnitude(points), 1), ids))
        }

        audit.checked(.capsAndNegativeBalances, Int64(capUsage.count))
        var stored: [String: AuditCapUsageRow] = [:]
        for row in capUsage { stored[row.windowKey] = row }
        for key in Set(stored.keys).union(recomputed.keys).union(priorCaps.keys).sorted() {
            let have = stored[key].map { ($0.points, $0.events) } ?? (0, 0)
            let want = recomputed[key].map { ($0.points, $0.events) } ?? priorCaps[key].map { ($0.points, $0.events) } ?? (0, 0)
            if have != want {
                audit.record(
                    .capsAndNegativeBalances,
                    AuditFinding(
                        "cap_usage \(key) holds \(have.0) points / \(have.1) events, awards give \(want.0) / \(want.1)",
                        magnitude: Saturating.add(Saturating.gap(have.0, want.0), Saturating.gap(have.1, want.1)),
                        ids + [("window_key", .string(key))]))
            }
        }
        self.citizen = nil
    }
}

/// One link of a province chain as the audit reads it, with the record it seals (nil fields:
/// the record no longer exists).
struct ChainLink: Sendable {
    var seq: Int64
    var format: Int
    var record: String
    var transactionID: Int64?
    var eventID: String?
    var ruleSetVersion: Int?
    var sealID: Int64?
    var previousHash: String
    var hash: String
    /// The key of kinds after the first three (`record_key`).
    var recordKey: String? = nil
    /// v1 form of a transaction link's transaction.
    var v1Row: LedgerChain.SealedRow?
    /// v2 fields of the sealed record, in canonical form (`LedgerChain.encodeFields`).
    var encodedFields: [UInt8]?
    /// A transaction link's created_at (µs; `Int64.min` outside years 1000…9999), for chain order.
    var createdAtMicroseconds: Int64?

    /// The id the chain is ordered by: the seal id (v2), the transaction id (v1).
    var orderID: Int64? { sealID ?? transactionID }

    var names: [(String, AuditValue)] {
        var names: [(String, AuditValue)] = [("chain_seq", .int(seq))]
        if let transactionID { names.append(("transaction_id", .int(transactionID))) }
        if let eventID { names.append(("event_id", .string(eventID))) }
        if let ruleSetVersion { names.append(("rule_set_version", .int(Int64(ruleSetVersion)))) }
        if let recordKey { names.append(("record_key", .string(recordKey))) }
        names.append(("record", .string(record)))
        if let sealID { names.append(("seal_id", .int(sealID))) }
        return names
    }
}

/// What the chain replay carries from one link to the next: everything a link's verdicts
/// depend on besides the link itself. A range of links replayed from the state its preceding
/// links leave gives exactly the findings of one pass (the audit splits the chain this way).
struct ChainState: Sendable, Equatable {
    var expectedSeq: Int64
    var head: String
    /// The largest seal id (v1: transaction id) of the links before.
    var lastOrderID: Int64?
    var sawV2: Bool
    /// The latest created_at (µs) of a transaction link before, and the first transaction with it.
    var latestCreatedAtMicroseconds: Int64?
    var latestCreatedAtTransactionID: Int64?

    /// Before the first link after `after` (hash `head`), whose records have seal ids up to
    /// `sealedThrough` (incremental audit: a checkpoint's position; 0 and genesis otherwise).
    init(after: Int64 = 0, head: String = LedgerChain.genesisHash, sealedThrough: Int64 = 0) {
        expectedSeq = Saturating.add(after, 1)
        self.head = head
        lastOrderID = sealedThrough > 0 ? sealedThrough : nil
        sawV2 = sealedThrough > 0
    }
}

/// Replays a province's hash chain link by link, exactly as the sealer computed it, and
/// checks its order: seal ids increase, formats never go back from v2 to v1, and no
/// transaction's created_at lies more than the seal bound before an earlier link's.
struct ChainReplay {
    let province: String
    let sealBoundMicroseconds: Int64
    private(set) var state: ChainState

    init(province: String, sealBoundSeconds: Int, state: ChainState) {
        self.province = province
        sealBoundMicroseconds = Int64(sealBoundSeconds).multipliedReportingOverflow(by: 1_000_000).partialValue
        self.state = state
    }

    mutating func link(_ link: ChainLink, into audit: inout AuditAccumulator) {
        audit.checked(.hashChain)
        audit.checked(.chainOrder)
        var broken: [String] = []
        if link.seq != state.expectedSeq { broken.append("sequence: chain_seq \(link.seq) where \(state.expectedSeq) was expected") }
        if link.previousHash != state.head { broken.append("previous_hash: link does not point at the preceding hash") }
        var createdAt: Int64?
        switch (link.format, LedgerChain.Record(rawValue: link.record)) {
        case (1, .transaction?):
            if let row = link.v1Row {
                createdAt = link.createdAtMicroseconds
                if LedgerChain.link(previous: link.previousHash, row: row) != link.hash {
                    broken.append("hash: recomputed v1 hash of the transaction and its entries differs from the stored one")
                }
            } else {
                broken.append("transaction: the sealed transaction no longer exists")
            }
        case (2, let record?):
            if let encoded = link.encodedFields, link.sealID != nil {
                if LedgerChain.linkV2(previous: link.previousHash, tag: record.tag, encodedFields: encoded) != link.hash {
                    broken.append("hash: recomputed v2 hash of the \(record.rawValue) (every column) differs from the stored one")
                }
                if record == .transaction { createdAt = link.createdAtMicroseconds }
            } else {
                broken.append("record: the sealed \(record.rawValue) no longer exists")
            }
        default:
            broken.append("format: link format \(link.format) cannot seal a '\(link.record.prefix(40))' record")
        }
        if !broken.isEmpty {
            let rule = broken.map { String($0.prefix { $0 != ":" }) }.joined(separator: ",")
            let at = createdAt.map { Date(timeIntervalSince1970: Double($0) / 1_000_000) }
            audit.record(
                .hashChain,
                AuditFinding(
                    broken.joined(separator: "; "), magnitude: Int64(broken.count), at: at,
                    [("province", .string(province))] + link.names + [("rule", .string(rule))]))
        }

        var disorder: [String] = []
        if link.format == 1 && state.sawV2 { disorder.append("format: a v1 link after a v2 link") }
        if link.format == 2 { state.sawV2 = true }
        if let id = link.orderID, let last = state.lastOrderID, id <= last {
            disorder.append("seal_id: id \(id) does not follow the preceding link's \(last)")
        }
        var magnitude: Int64 = 1
        if let createdAt, let latestMicros = state.latestCreatedAtMicroseconds, createdAt < latestMicros {
            let behind = latestMicros.subtractingReportingOverflow(createdAt)
            let gap = behind.overflow ? Int64.max : behind.partialValue
            if gap > sealBoundMicroseconds {
                disorder.append(
                    "created_at: \(gap / 1000) ms before transaction \(state.latestCreatedAtTransactionID ?? 0)'s, earlier in the chain (bound \(sealBoundMicroseconds / 1_000_000) s)"
                )
                magnitude = gap / 1000
            }
        }
        if !disorder.isEmpty {
            let rule = disorder.map { String($0.prefix { $0 != ":" }) }.joined(separator: ",")
            audit.record(
                .chainOrder,
                AuditFinding(
                    disorder.joined(separator: "; "), magnitude: magnitude,
                    at: createdAt.map { Date(timeIntervalSince1970: Double($0) / 1_000_000) },
                    [("province", .string(province))] + link.names + [("rule", .string(rule))]))
        }
        // Continue from the stored link, so one tampered row is one finding, not a cascade.
        state.expectedSeq = link.seq &+ 1
        state.head = link.hash
        if let id = link.orderID { state.lastOrderID = max(state.lastOrderID ?? id, id) }
        if let createdAt, let id = link.transactionID, createdAt > (state.latestCreatedAtMicroseconds ?? Int64.min) {
            state.latestCreatedAtMicroseconds = createdAt
            state.latestCreatedAtTransactionID = id
        }
    }
}
