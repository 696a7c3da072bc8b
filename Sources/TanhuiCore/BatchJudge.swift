package import Foundation

/// Judges one batch of one citizen's events from stored facts: pure, so every verdict rule is
/// tested without a database, and the service only loads facts and writes the outcome.
///
/// Instants are integer milliseconds throughout and every sum is overflow-checked: an award
/// that would overflow a balance or a cap counter is rejected, never trapped.
package enum BatchJudge {
    /// An event as the judge sees it: decoded, with the SHA-256 of its canonical content.
    package struct Item: Sendable {
        package var wire: EventWire
        package var contentSHA256: String
        package init(wire: EventWire, contentSHA256: String) {
            self.wire = wire
            self.contentSHA256 = contentSHA256
        }
    }

    package enum Input: Sendable {
        case event(Item)
        case invalid(id: String?, issues: [ValidationIssue])
    }

    /// Events are identified per province (the distribution column of every ledger table).
    package struct EventKey: Sendable, Hashable {
        package var province: String
        package var id: UUID
        package init(province: String, id: UUID) {
            self.province = province
            self.id = id
        }
    }

    package struct EvidenceKey: Sendable, Hashable {
        package var province: String
        package var source: String
        package var ref: String
        package init(province: String, source: String, ref: String) {
            self.province = province
            self.source = source
            self.ref = ref
        }
    }

    /// A half-open interval `[start, end)` in epoch milliseconds.
    package struct Interval: Sendable, Equatable {
        package var startMs: Int64
        package var endMs: Int64
        package init(startMs: Int64, endMs: Int64) {
            self.startMs = startMs
            self.endMs = endMs
        }
        package func overlaps(_ other: Interval) -> Bool { startMs < other.endMs && other.startMs < endMs }
    }

    /// A verdict already stored for an event key.
    package struct Stored: Sendable {
        package var citizen: UUID
        package var contentSHA256: String
        package var status: Verdict.Status
        package var code: String?
        package var message: String?
        package var award: AwardSummary?
        package init(citizen: UUID, contentSHA256: String, status: Verdict.Status, code: String?, message: String?, award: AwardSummary?) {
            self.citizen = citizen
            self.contentSHA256 = contentSHA256
            self.status = status
            self.code = code
            self.message = message
            self.award = award
        }
    }

    /// The citizen's account in one province, as locked for the batch.
    package struct Account: Sendable, Equatable {
        package var points: Int64
        package var gramsCO2e: Int64
        package var lastSeq: Int64
        package init(points: Int64 = 0, gramsCO2e: Int64 = 0, lastSeq: Int64 = 0) {
            self.points = points
            self.gramsCO2e = gramsCO2e
            self.lastSeq = lastSeq
        }
    }

    /// One event's instants after clock correction, and what must be read to judge it.
    package struct Prepared: Sendable {
        package enum Entry: Sendable {
            case event(Item, occurredMs: Int64, endedMs: Int64?, ruleSet: RuleSet?, windows: [CapWindow])
            case invalid(id: String?, issues: [ValidationIssue])
            case clockSkew(Item)
        }
        package var entries: [Entry]
        package var offsetMs: Int64
        package var receivedAtMs: Int64
        /// Provinces of the batch's events, sorted: the lock order.
        package var provinces: [String]
        package var keys: [EventKey]
        package var evidence: [EvidenceKey]
        /// Cap-window keys to load, per province.
        package var windowKeys: [String: [String]]
        /// The span of the batch's trip intervals: accepted trips overlapping it must be loaded.
        package var tripSpan: Interval?
    }

    /// What a judged batch writes.
    package struct EventRow: Sendable {
        package var item: Item
        package var occurredMs: Int64
        package var endedMs: Int64?
        package var occupiesInterval: Bool
        package var status: Verdict.Status
        package var code: String?
        package var message: String?
    }

    package struct AwardRow: Sendable {
        package var province: String
        package var eventID: UUID
        package var award: Award
        /// The citizen's transaction number in the province.
        package var citizenSeq: Int64
    }

    package struct Outcome: Sendable {
        package var verdicts: [Verdict]
        package var events: [EventRow]
        package var awards: [AwardRow]
        /// Accounts after the batch, for every province of the batch.
        package var accounts: [String: Account]
        /// Counter increments per province and window key.
        package var usageIncrements: [String: [String: CapUsage.Counter]]
    }

    /// The facts a batch is judged against (loaded under the citizen's account locks).
    package struct Facts: Sendable {
        package var existing: [EventKey: Stored] = [:]
        package var claimedEvidence: Set<EvidenceKey> = []
        package var acceptedTrips: [String: [Interval]] = [:]
        package var usage: [String: CapUsage] = [:]
        package var accounts: [String: Account] = [:]
        /// Evidence sources owned by a partner, per province: creditable through that partner only.
        package var evidenceOwners: [String: [String: UUID]] = [:]
        package init() {}
    }

    /// Trips and rides (distance or per-trip methods) occupy their time interval; one without
    /// `ended_at` occupies its first millisecond, so it cannot escape the overlap rule.
    package static func tripInterval(kind: String, occurredMs: Int64, endedMs: Int64?, ruleSet: RuleSet?) -> Interval? {
        guard let ruleSet else { return nil }
        switch ruleSet.activity(kind: kind)?.method {
        case .perDistance, .perTrip:
            return Interval(startMs: occurredMs, endMs: max(endedMs ?? occurredMs, occurredMs + 1))
        default:
            return nil
        }
    }

    /// Corrects the device clock and finds the rule set in force for every event.
    package static func prepare(_ inputs: [Input], receivedAtMs: Int64, sentAtMs: Int64?, histories: [String: RuleSetHistory]) -> Prepared {
        let offset = ClockPolicy.offsetMs(receivedAtMs: receivedAtMs, sentAtMs: sentAtMs)
        var entries: [Prepared.Entry] = []
        entries.reserveCapacity(inputs.count)
        var provinces = Set<String>()
        var keys: [EventKey] = []
        var evidence: [EvidenceKey] = []
        var windowKeys: [String: Set<String>] = [:]
        var span: Interval?
        for input in inputs {
            guard case .event(let item) = input else {
                if case .invalid(let id, let issues) = input { entries.append(.invalid(id: id, issues: issues)) }
                continue
            }
            let event = item.wire.event
            let deviceOccurred = Instant.milliseconds(event.occurredAt)
            let deviceEnded = event.endedAt.map(Instant.milliseconds)
            let occurred = deviceOccurred + offset
            let ended = deviceEnded.map { $0 + offset }
            var issues: [ValidationIssue] = []
            for (path, value) in [("occurred_at", occurred), ("ended_at", ended)] {
                guard let value, !ClockPolicy.saneRangeMs.contains(value) else { continue }
                let corrected = offset == 0 ? "" : " after correcting the device clock by \(offset / 1000) s"
                issues.append(
                    ValidationIssue(
                        path: path, code: .invalid,
                        message:
                            "\(path) lies at \(Instant.format(value, offsetSeconds: 0))\(corrected); instants must fall between 2000-01-01 and 2100-01-01"
                    ))
            }
            if !issues.isEmpty {
                entries.append(.invalid(id: event.id.uuidString.lowercased(), issues: issues))
                continue
            }
            if occurred > receivedAtMs + ClockPolicy.futureToleranceMs || (ended ?? .min) > receivedAtMs + ClockPolicy.futureToleranceMs {
                entries.append(.clockSkew(item))
                continue
            }
            provinces.insert(event.province)
            keys.append(EventKey(province: event.province, id: event.id))
            if let e = item.wire.evidence { evidence.append(EvidenceKey(province: event.province, source: e.source, ref: e.ref)) }
            let ruleSet = histories[event.province]?.inForce(atMs: occurred)
            var windows: [CapWindow] = []
            if let ruleSet {
                var corrected = event
                corrected.occurredAt = Instant.date(occurred)
                windows = ruleSet.capWindows(for: corrected)
                for window in windows { windowKeys[event.province, default: []].insert(window.key) }
            }
            if let trip = tripInterval(kind: event.kind, occurredMs: occurred, endedMs: ended, ruleSet: ruleSet) {
                span = span.map { Interval(startMs: min($0.startMs, trip.startMs), endMs: max($0.endMs, trip.endMs)) } ?? trip
            }
            entries.append(.event(item, occurredMs: occurred, endedMs: ended, ruleSet: ruleSet, windows: windows))
        }
        return Prepared(
            entries: entries, offsetMs: offset, receivedAtMs: receivedAtMs, provinces: provinces.sorted(), keys: keys,
            evidence: evidence, windowKeys: windowKeys.mapValues { $0.sorted() }, tripSpan: span)
    }

    /// Judges the batch in request order; earlier items count for later ones.
    package static func judge(_ prepared: Prepared, citizen: UUID, facts: Facts, source: EventSource = .device) -> Outcome {
        var facts = facts
        var verdicts: [Verdict] = []
        verdicts.reserveCapacity(prepared.entries.count)
        var events: [EventRow] = []
        var awards: [AwardRow] = []
        var increments: [String: [String: CapUsage.Counter]] = [:]
        var accounts = facts.accounts
        for province in prepared.provinces where accounts[province] == nil { accounts[province] = Account() }
        let receivedAt = Instant.date(prepared.receivedAtMs)

        for entry in prepared.entries {
            let item: Item
            let occurredMs: Int64
            let endedMs: Int64?
            let ruleSet: RuleSet?
            switch entry {
            case .invalid(let id, let issues):
                verdicts.append(
                    Verdict(
                        id: id ?? "", status: .rejected, code: VerdictCode.invalid,
                        message: issues.first.map { "\($0.path): \($0.message)" } ?? "malformed event", errors: issues))
                continue
            case .clockSkew(let skewed):
                verdicts.append(
                    Verdict(
                        id: skewed.wire.event.id.uuidString.lowercased(), status: .rejected, code: VerdictCode.clockSkew,
                        message:
                            "after correcting the device clock by \(prepared.offsetMs / 1000) s the event lies in the future; it was not stored — resend it once the device clock is right"
                    ))
                continue
            case .event(let i, let o, let e, let r, _):
                (item, occurredMs, endedMs, ruleSet) = (i, o, e, r)
            }
            let event = item.wire.event
            let key = EventKey(province: event.province, id: event.id)
            let idText = event.id.uuidString.lowercased()
            if let earlier = facts.existing[key] {
                if earlier.citizen == citizen && earlier.contentSHA256 == item.contentSHA256 {
                    verdicts.append(
                        Verdict(
                            id: idText, status: .duplicate, code: earlier.code, message: earlier.message, award: earlier.award,
                            originalStatus: earlier.status))
                } else {
                    verdicts.append(
                        Verdict(
                            id: idText, status: .conflict, code: VerdictCode.idReused,
                            message: "an event with this id was already submitted in \(event.province) with different content; the original stands"))
                }
                continue
            }

            var verdict: Verdict
            var accepted: Award?
            let trip = tripInterval(kind: event.kind, occurredMs: occurredMs, endedMs: endedMs, ruleSet: ruleSet)
            if let ruleSet {
                var judged = event
                judged.occurredAt = Instant.date(occurredMs)
                judged.endedAt = endedMs.map(Instant.date)
                switch RuleEvaluator.evaluate(
                    event: judged, ruleSet: ruleSet, usage: facts.usage[event.province] ?? CapUsage(), receivedAt: receivedAt,
                    selfReported: source == .device)
                {
                case .rejected(let rejection):
                    verdict = Verdict(id: idText, status: .rejected, code: rejection.code.rawValue, message: rejection.message)
                case .accepted(let award):
                    let evidenceKey = item.wire.evidence.map { EvidenceKey(province: event.province, source: $0.source, ref: $0.ref) }
                    if let evidenceKey, let owner = facts.evidenceOwners[event.province]?[evidenceKey.source], source != .partner(owner) {
                        verdict = Verdict(
                            id: idText, status: .rejected, code: VerdictCode.evidencePartnerOwned,
                            message: "evidence of \(evidenceKey.source) is credited only through the partner that owns it")
                    } else if let evidenceKey, facts.claimedEvidence.contains(evidenceKey) {
                        verdict = Verdict(
                            id: idText, status: .conflict, code: VerdictCode.evidenceClaimed, message: "this evidence has already been credited")
                    } else if let trip, (facts.acceptedTrips[event.province] ?? []).contains(where: { $0.overlaps(trip) }) {
                        verdict = Verdict(
                            id: idText, status: .conflict, code: VerdictCode.overlap, message: "overlaps a trip already accepted for this citizen")
                    } else if !fits(award, in: accounts[event.province] ?? Account(), usage: facts.usage[event.province] ?? CapUsage()) {
                        verdict = Verdict(
                            id: idText, status: .rejected, code: RejectionCode.invalidData.rawValue,
                            message: "the award would overflow the citizen's balance or a cap counter")
                    } else {
                        accepted = award
                        verdict = Verdict(
                            id: idText, status: .accepted,
                            award: AwardSummary(
                                gramsCO2e: award.gramsCO2e, points: award.pointsAwarded, province: event.province,
                                ruleSetVersion: award.ruleSetVersion, capped: award.capped))
                    }
                }
            } else {
                verdict = Verdict(
                    id: idText, status: .rejected, code: RejectionCode.noRuleset.rawValue,
                    message: "no rule set of \(event.province) is in force at \(Instant.format(occurredMs, offsetSeconds: 0))")
            }
            if let award = accepted {
                var usage = facts.usage[event.province] ?? CapUsage()
                usage.add(award.consumption)
                facts.usage[event.province] = usage
                for consumption in award.consumption {
                    var counter = increments[event.province, default: [:]][consumption.window.key] ?? CapUsage.Counter()
                    counter.points += consumption.points  // bounded by `fits`
                    counter.events += consumption.events
                    increments[event.province, default: [:]][consumption.window.key] = counter
                }
                if let evidence = item.wire.evidence {
                    facts.claimedEvidence.insert(EvidenceKey(province: event.province, source: evidence.source, ref: evidence.ref))
                }
                if let trip { facts.acceptedTrips[event.province, default: []].append(trip) }
                var account = accounts[event.province] ?? Account()
                account.points += award.pointsAwarded  // bounded by `fits`
                account.gramsCO2e += award.gramsCO2e
                account.lastSeq += 1
                accounts[event.province] = account
                awards.append(AwardRow(province: event.province, eventID: event.id, award: award, citizenSeq: account.lastSeq))
            }
            let stored = Stored(
                citizen: citizen, contentSHA256: item.contentSHA256, status: verdict.status, code: verdict.code, message: verdict.message,
                award: verdict.award)
            facts.existing[key] = stored
            events.append(
                EventRow(
                    item: item, occurredMs: occurredMs, endedMs: endedMs, occupiesInterval: trip != nil && accepted != nil,
                    status: verdict.status, code: verdict.code, message: verdict.message))
            verdicts.append(verdict)
        }
        return Outcome(verdicts: verdicts, events: events, awards: awards, accounts: accounts, usageIncrements: increments)
    }

    /// Whether adding the award keeps the balance, the transaction numbers and every cap
    /// counter inside Int64.
    static func fits(_ award: Award, in account: Account, usage: CapUsage) -> Bool {
        guard !account.points.addingReportingOverflow(award.pointsAwarded).overflow,
            !account.gramsCO2e.addingReportingOverflow(award.gramsCO2e).overflow,
            account.lastSeq < .max
        else { return false }
        for consumption in award.consumption {
            let counter = usage[consumption.window]
            if counter.points.addingReportingOverflow(consumption.points).overflow
                || counter.events.addingReportingOverflow(consumption.events).overflow
            {
                return false
            }
        }
        return true
    }
}

extension RuleSetHistory {
    /// The version in force at an instant in epoch milliseconds.
    package func inForce(atMs ms: Int64) -> RuleSet? {
        versions.first { $0.effectiveFromMs <= ms }
    }
}
