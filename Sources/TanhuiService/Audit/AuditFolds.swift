import Foundation
import TanhuiCore

// Pure audit logic: rows in, findings out. No SQL here; `LedgerAudit` streams the rows.

/// A ledger transaction as the audit reads it, with its entries already summed by the database.
struct AuditTransactionRow: Sendable {
    var transactionID: Int64
    var kind: String
    /// Lower-case UUID text (the order the database streams citizens in).
    var citizen: String
    var citizenSeq: Int64
    var eventID: String
    var points: Int64
    var grams: Int64
    var ruleSetVersion: Int
    var pointsBeforeCaps: Int64?
    var reversesID: Int64?
    var createdAt: Date
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

    init(province: String, ruleSets: [Int: RuleSet]) {
        self.province = province
        self.ruleSets = ruleSets
        self.history = RuleSetHistory(Array(ruleSets.values))
    }

    private func base(_ row: AuditTransactionRow) -> [(String, AuditValue)] {
        [("province", .string(province)), ("transaction_id", .int(row.transactionID)), ("citizen_id", .string(row.citizen)),
         ("citizen_seq", .int(row.citizenSeq)), ("event_id", .string(row.eventID))]
    }

    mutating func begin(citizen: String) {
        self.citizen = citizen
        points = 0
        grams = 0
        expectedSeq = 1
        lastSeq = 0
        usage = CapUsage()
        recomputed = [:]
    }

    /// One transaction of the current citizen, in citizen_seq order.
    mutating func transaction(_ row: AuditTransactionRow, into audit: inout AuditAccumulator) {
        let at = row.createdAt
        let ids = base(row)

        // 1. Balanced, at least two legs, legs carry the transaction's points.
        audit.checked(.transactionsBalance)
        if row.entryCount < 2 {
            audit.record(.transactionsBalance, AuditFinding("has \(row.entryCount) entr\(row.entryCount == 1 ? "y" : "ies"); at least 2 are required",
                                                            magnitude: max(abs(row.entrySum), 1), at: at, ids + [("entries", .int(row.entryCount))]))
        }
        if row.entrySum != 0 {
            audit.record(.transactionsBalance, AuditFinding("entries sum to \(row.entrySum), not 0", magnitude: abs(row.entrySum), at: at,
                                                            ids + [("entries_sum", .int(row.entrySum))]))
        }
        if row.foreignEntries > 0 {
            audit.record(.transactionsBalance, AuditFinding("\(row.foreignEntries) entries on accounts other than issuance and its citizen", at: at, ids))
        }
        if row.entrySum == 0 && row.entryCount >= 2 && (row.citizenSum != row.points || row.issuanceSum != -row.points) {
            audit.record(.transactionsBalance, AuditFinding("entries move \(row.citizenSum) points to the citizen but the transaction records \(row.points)",
                                                            magnitude: abs(row.citizenSum - row.points), at: at,
                                                            ids + [("entries_points", .int(row.citizenSum)), ("transaction_points", .int(row.points))]))
        }

        // 3. Gap-free numbering per citizen.
        if row.citizenSeq != expectedSeq {
            audit.record(.cachedBalances, AuditFinding("citizen_seq \(row.citizenSeq) where \(expectedSeq) was expected (missing or extra transaction)",
                                                       magnitude: abs(row.citizenSeq - expectedSeq), at: at, ids))
        }
        expectedSeq = row.citizenSeq + 1
        lastSeq = max(lastSeq, row.citizenSeq)

        // 8. Running balance never negative.
        points += row.citizenSum
        grams += row.grams
        audit.checked(.capsAndNegativeBalances)
        if points < 0 {
            audit.record(.capsAndNegativeBalances, AuditFinding("citizen balance \(points) points after this transaction", magnitude: -points, at: at,
                                                                ids + [("balance_points", .int(points))]))
        }

        switch row.kind {
        case "award":
            award(row, ids: ids, into: &audit)
        default:
            reversal(row, ids: ids, into: &audit)
        }
    }

    private mutating func award(_ row: AuditTransactionRow, ids: [(String, AuditValue)], into audit: inout AuditAccumulator) {
        let at = row.createdAt
        audit.checked(.completeness)
        guard let event = row.event else {
            audit.record(.completeness, AuditFinding("award references event \(row.eventID), which does not exist", magnitude: max(abs(row.points), 1), at: at, ids))
            return
        }
        if event.status != "accepted" {
            audit.record(.completeness, AuditFinding("award references an event whose verdict is '\(event.status)'", magnitude: max(abs(row.points), 1), at: at, ids))
        }
        if event.citizen != row.citizen {
            audit.record(.completeness, AuditFinding("award is credited to another citizen than the event's (\(event.citizen))", magnitude: max(abs(row.points), 1), at: at, ids))
        }

        // 6. Replay under the version the award names, caps accumulating in citizen order.
        audit.checked(.replay)
        let version = row.ruleSetVersion
        guard let ruleSet = ruleSets[version] else {
            audit.record(.replay, AuditFinding("names rule-set version \(version), which is not published or whose document no longer matches its hash",
                                               magnitude: max(abs(row.points), 1), at: at, ids + [("rule_set_version", .int(Int64(version)))]))
            return
        }
        guard let id = UUID(uuidString: row.eventID) else { return }
        let judged = ActionEvent(id: id, kind: event.kind, province: province, occurredAt: event.occurredAt, endedAt: event.endedAt, data: event.data)
        if let inForce = history.inForce(at: event.occurredAt)?.version, inForce != version {
            audit.record(.replay, AuditFinding("names rule-set version \(version) but version \(inForce) is in force at occurred_at \(AuditReport.instant(event.occurredAt))",
                                               magnitude: max(abs(row.points), 1), at: at, ids + [("rule_set_version", .int(Int64(version))), ("in_force", .int(Int64(inForce)))]))
        }
        let windows = ruleSet.capWindows(for: judged)
        switch RuleEvaluator.evaluate(event: judged, ruleSet: ruleSet, usage: usage, receivedAt: event.receivedAt) {
        case .accepted(let replayed):
            if replayed.gramsCO2e != row.grams || replayed.pointsAwarded != row.points
                || (row.pointsBeforeCaps.map { $0 != replayed.pointsBeforeCaps } ?? false) {
                audit.record(.replay, AuditFinding(
                    "stored \(row.points) points / \(row.grams) g, replay gives \(replayed.pointsAwarded) points / \(replayed.gramsCO2e) g",
                    magnitude: abs(replayed.pointsAwarded - row.points) + abs(replayed.gramsCO2e - row.grams), at: at,
                    ids + [("stored_points", .int(row.points)), ("replayed_points", .int(replayed.pointsAwarded)),
                           ("stored_grams", .int(row.grams)), ("replayed_grams", .int(replayed.gramsCO2e))]))
            }
        case .rejected(let rejection):
            audit.record(.replay, AuditFinding("replay rejects the event: \(rejection.code.rawValue): \(rejection.message)",
                                               magnitude: max(abs(row.points), 1), at: at, ids + [("code", .string(rejection.code.rawValue))]))
        }
        // What the service consumed: the stored points, one event per window (nothing for 0 points).
        guard row.points > 0 else { return }
        for window in windows {
            var counter = usage[window]
            counter.points += row.points
            counter.events += 1
            usage[window] = counter
            recomputed[window.key] = (counter.points, counter.events, window)
            if let max = window.maxPoints, counter.points > max {
                audit.record(.capsAndNegativeBalances, AuditFinding("cap \(window.key) reaches \(counter.points) points, above its \(max)",
                                                                    magnitude: counter.points - max, at: at, ids + [("window_key", .string(window.key))]))
            }
            if let max = window.maxEvents, counter.events > max {
                audit.record(.capsAndNegativeBalances, AuditFinding("cap \(window.key) reaches \(counter.events) events, above its \(max)",
                                                                    magnitude: counter.events - max, at: at, ids + [("window_key", .string(window.key))]))
            }
        }
    }

    private func reversal(_ row: AuditTransactionRow, ids: [(String, AuditValue)], into audit: inout AuditAccumulator) {
        let at = row.createdAt
        let fields = ids + [("reverses_id", row.reversesID.map { .int($0) } ?? .string("-"))]
        audit.checked(.reversals)
        guard let original = row.original else {
            audit.record(.reversals, AuditFinding("reverses transaction \(row.reversesID.map(String.init) ?? "-"), which does not exist",
                                                  magnitude: max(abs(row.points), 1), at: at, fields))
            return
        }
        var problems: [String] = []
        if original.kind != "award" { problems.append("reverses a \(original.kind), not an award") }
        if row.points != -original.points { problems.append("points \(row.points) ≠ −\(original.points)") }
        if row.grams != -original.grams { problems.append("grams \(row.grams) ≠ −\(original.grams)") }
        if row.eventID != original.eventID { problems.append("event \(row.eventID) ≠ \(original.eventID)") }
        if row.citizen != original.citizen { problems.append("citizen differs from the award's") }
        if row.ruleSetVersion != original.ruleSetVersion { problems.append("rule-set version \(row.ruleSetVersion) ≠ \(original.ruleSetVersion)") }
        if row.issuanceSum != -original.issuanceSum || row.citizenSum != -original.citizenSum {
            problems.append("entries (issuance \(row.issuanceSum), citizen \(row.citizenSum)) do not mirror the award's (\(original.issuanceSum), \(original.citizenSum))")
        }
        if !problems.isEmpty {
            audit.record(.reversals, AuditFinding("does not mirror its award: " + problems.joined(separator: "; "),
                                                  magnitude: abs(row.points + original.points) + abs(row.grams + original.grams) + 1, at: at, fields))
        }
    }

    /// Closes the current citizen: compares the cached account row and cap usage with the fold.
    mutating func end(account: AuditAccountRow?, capUsage: [AuditCapUsageRow], into audit: inout AuditAccumulator) {
        guard let citizen else { return }
        let ids: [(String, AuditValue)] = [("province", .string(province)), ("account", .string("citizen:" + citizen)), ("citizen_id", .string(citizen))]
        audit.checked(.cachedBalances)
        if let account {
            var problems: [String] = []
            if account.balancePoints != points { problems.append("balance_points \(account.balancePoints) ≠ \(points) from entries") }
            if account.balanceGrams != grams { problems.append("balance_grams \(account.balanceGrams) ≠ \(grams) from transactions") }
            if account.lastSeq != lastSeq { problems.append("last_seq \(account.lastSeq) ≠ \(lastSeq)") }
            if !problems.isEmpty {
                audit.record(.cachedBalances, AuditFinding(problems.joined(separator: "; "),
                                                           magnitude: abs(account.balancePoints - points) + abs(account.balanceGrams - grams) + abs(account.lastSeq - lastSeq),
                                                           ids + [("cached_points", .int(account.balancePoints)), ("ledger_points", .int(points)),
                                                                  ("cached_grams", .int(account.balanceGrams)), ("ledger_grams", .int(grams)),
                                                                  ("cached_last_seq", .int(account.lastSeq)), ("ledger_last_seq", .int(lastSeq))]))
            }
        } else if lastSeq > 0 {
            audit.record(.cachedBalances, AuditFinding("has \(lastSeq) transactions but no citizen_accounts row", magnitude: abs(points) + 1, ids))
        }

        audit.checked(.capsAndNegativeBalances, Int64(capUsage.count))
        var stored: [String: AuditCapUsageRow] = [:]
        for row in capUsage { stored[row.windowKey] = row }
        for key in Set(stored.keys).union(recomputed.keys).sorted() {
            let have = stored[key].map { ($0.points, $0.events) } ?? (0, 0)
            let want = recomputed[key].map { ($0.points, $0.events) } ?? (0, 0)
            if have != want {
                audit.record(.capsAndNegativeBalances, AuditFinding(
                    "cap_usage \(key) holds \(have.0) points / \(have.1) events, awards give \(want.0) / \(want.1)",
                    magnitude: abs(have.0 - want.0) + abs(have.1 - want.1), ids + [("window_key", .string(key))]))
            }
        }
        self.citizen = nil
    }
}

/// Replays a province's hash chain link by link, exactly as the sealer computed it.
struct ChainReplay {
    let province: String
    private(set) var expectedSeq: Int64 = 1
    private(set) var head = LedgerChain.genesisHash

    init(province: String) {
        self.province = province
    }

    /// One link in chain_seq order; `row` is nil when the link names a missing transaction.
    mutating func link(seq: Int64, transactionID: Int64, previousHash: String, hash: String, row: LedgerChain.SealedRow?, into audit: inout AuditAccumulator) {
        audit.checked(.hashChain)
        var broken: [String] = []
        if seq != expectedSeq { broken.append("sequence: chain_seq \(seq) where \(expectedSeq) was expected") }
        if previousHash != head { broken.append("previous_hash: link does not point at the preceding hash") }
        if let row {
            if LedgerChain.link(previous: previousHash, row: row) != hash { broken.append("hash: recomputed hash of the transaction and its entries differs from the stored one") }
        } else {
            broken.append("transaction: the sealed transaction no longer exists")
        }
        if !broken.isEmpty {
            let rule = broken.map { String($0.prefix { $0 != ":" }) }.joined(separator: ",")
            audit.record(.hashChain, AuditFinding(broken.joined(separator: "; "), magnitude: Int64(broken.count),
                                                  at: row.map { Date(timeIntervalSince1970: Double($0.createdAtMicroseconds) / 1_000_000) },
                                                  [("province", .string(province)), ("chain_seq", .int(seq)), ("transaction_id", .int(transactionID)), ("rule", .string(rule))]))
        }
        // Continue from the stored link, so one tampered row is one finding, not a cascade.
        expectedSeq = seq + 1
        head = hash
    }
}
