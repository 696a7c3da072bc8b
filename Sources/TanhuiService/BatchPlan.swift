import Crypto
import Foundation
import TanhuiCore
import TanhuiPostgres

/// One batch's judgement, run inside a transaction; safe to rerun from the start.
struct BatchPlan: Sendable {
    let items: [SubmissionItem]
    let citizen: UUID
    let device: String
    let receivedAt: Date
    let offsetSeconds: TimeInterval
    let histories: [String: RuleSetHistory]

    /// The canonical content of an event as the device sent it: a resubmission is a
    /// duplicate only if this matches exactly. Length-prefixed fields, instants in epoch ms.
    static func contentHash(_ wire: EventWire) -> String {
        let event = wire.event
        func field(_ value: String?) -> String {
            guard let value else { return "-;" }
            return "\(value.utf8.count):\(value);"
        }
        func milliseconds(_ date: Date?) -> String? {
            date.map { String(Int64(($0.timeIntervalSince1970 * 1000).rounded())) }
        }
        let data = event.data
        let canonical = [
            "tanhui-event-v1", event.id.uuidString.lowercased(), event.kind, event.province,
            milliseconds(event.occurredAt), milliseconds(event.endedAt), data.mode, data.material,
            data.distanceMeters.map(String.init), data.weightGrams.map(String.init), data.count.map(String.init),
            data.consumptionWh.map(String.init), data.baselineWh.map(String.init), data.days.map(String.init),
            wire.evidence?.source, wire.evidence?.ref,
        ].map(field).joined()
        return SHA256.hex(canonical)
    }

    /// A stored verdict found for an id, with its award.
    struct Existing {
        let province: String
        let citizen: UUID
        let contentSHA256: String
        let status: Verdict.Status
        let code: String?
        let message: String?
        let award: AwardSummary?
    }

    /// What the batch writes.
    struct Writes {
        var events: [EventRow] = []
        var awards: [AwardRow] = []
    }

    struct EventRow {
        let wire: EventWire
        let occurredAt: Date
        let endedAt: Date?
        let hash: String
        let occupiesInterval: Bool
        let status: Verdict.Status
        let code: String?
        let message: String?
    }

    struct AwardRow {
        let province: String
        let eventID: UUID
        let award: Award
    }

    func execute(on connection: PostgresConnection) throws -> [Verdict] {
        let wires: [EventWire] = items.compactMap { if case .event(let wire) = $0 { wire } else { nil } }
        let provinces = Array(Set(wires.map(\.event.province))).sorted()
        let citizenText = citizen.uuidString.lowercased()

        // 1. Serialise this citizen's batches per province: create and lock the account rows.
        var lastSeq: [String: Int64] = [:]
        if !provinces.isEmpty {
            try connection.query("""
                INSERT INTO citizen_accounts (province, citizen_id)
                SELECT p, \(citizen) FROM unnest(\(PostgresArray(provinces))::text[]) AS p
                ON CONFLICT DO NOTHING
                """)
            for row in try connection.query("""
                SELECT province, last_seq FROM citizen_accounts
                WHERE citizen_id = \(citizen) AND province = ANY(\(PostgresArray(provinces))::text[])
                ORDER BY province FOR UPDATE
                """).rows {
                lastSeq[try row.decode(0)] = try row.decode(1)
            }
        }

        // Corrected instants and cap windows are known before reading anything.
        let corrected: [UUID: (occurred: Date, ended: Date?)] = Dictionary(wires.map { wire in
            (wire.event.id, (wire.event.occurredAt.addingTimeInterval(offsetSeconds), wire.event.endedAt.map { $0.addingTimeInterval(offsetSeconds) }))
        }, uniquingKeysWith: { first, _ in first })
        var windowKeys: [String: Set<String>] = [:]
        var windowsByKey: [String: [String: CapWindow]] = [:]
        for wire in wires {
            guard let times = corrected[wire.event.id], let ruleSet = histories[wire.event.province]?.inForce(at: times.occurred) else { continue }
            var event = wire.event
            event.occurredAt = times.occurred
            event.endedAt = times.ended
            for window in ruleSet.capWindows(for: event) {
                windowKeys[wire.event.province, default: []].insert(window.key)
                windowsByKey[wire.event.province, default: [:]][window.key] = window
            }
        }
        let intervals = wires.compactMap { wire -> (Date, Date)? in
            guard let times = corrected[wire.event.id], let ended = times.ended else { return nil }
            return (times.occurred, ended)
        }

        // 2. Every read in one round trip.
        let ids = wires.map(\.event.id)
        let evidence = wires.compactMap { wire in wire.evidence.map { (wire.event.province, $0) } }
        var reads: [PostgresQuery] = [
            """
            SELECT e.province, e.event_id, e.citizen_id, e.content_sha256, e.status, e.code, e.message,
                   t.points, t.grams_co2e, t.rule_set_version, t.points_before_caps
            FROM events e LEFT JOIN ledger_transactions t
              ON t.province = e.province AND t.event_id = e.event_id AND t.kind = 'award'
            WHERE e.event_id = ANY(\(PostgresArray(ids))::uuid[])
            """,
            """
            SELECT e.province, e.evidence_source, e.evidence_ref FROM events e
            JOIN unnest(\(PostgresArray(evidence.map(\.0)))::text[], \(PostgresArray(evidence.map(\.1.source)))::text[], \(PostgresArray(evidence.map(\.1.ref)))::text[]) AS c(province, source, ref)
              ON e.province = c.province AND e.evidence_source = c.source AND e.evidence_ref = c.ref
            WHERE e.status = 'accepted'
            """,
            """
            SELECT province, occurred_at, ended_at FROM events
            WHERE citizen_id = \(citizen) AND province = ANY(\(PostgresArray(provinces))::text[])
              AND status = 'accepted' AND occupies_interval AND NOT \(intervals.isEmpty)::boolean
              AND tstzrange(occurred_at, ended_at, '[)') && tstzrange(\(intervals.map(\.0).min()), \(intervals.map(\.1).max()), '[)')
            """,
            """
            SELECT nextval('ledger_transaction_ids') FROM generate_series(1, \(wires.count))
            """,
        ]
        for province in provinces {
            reads.append("""
                SELECT window_key, points, events FROM cap_usage
                WHERE province = \(province) AND citizen_id = \(citizen) AND window_key = ANY(\(PostgresArray(Array(windowKeys[province] ?? []).sorted()))::text[])
                """)
        }
        let results = try connection.pipeline(reads)

        var existing: [UUID: Existing] = [:]
        for row in results[0].rows {
            let points = try row.decode(7, as: Int64?.self)
            let province: String = try row.decode(0)
            existing[try row.decode(1)] = Existing(
                province: province, citizen: try row.decode(2), contentSHA256: try row.decode(3),
                status: Verdict.Status(rawValue: try row.decode(4)) ?? .rejected,
                code: try row.decode(5, as: String?.self), message: try row.decode(6, as: String?.self),
                award: try points.map { points in
                    AwardSummary(gramsCO2e: try row.decode(8), points: points, province: province,
                                 ruleSetVersion: try row.decode(9), capped: points < (try row.decode(10, as: Int64?.self) ?? points))
                }
            )
        }
        var claimedEvidence = Set<String>()
        for row in results[1].rows {
            claimedEvidence.insert(Self.evidenceKey(try row.decode(0), Evidence(source: try row.decode(1), ref: try row.decode(2))))
        }
        var acceptedIntervals: [String: [(Date, Date)]] = [:]
        for row in results[2].rows {
            acceptedIntervals[try row.decode(0), default: []].append((try row.decode(1), try row.decode(2)))
        }
        var transactionIDs = try results[3].rows.map { try $0.decode(0, as: Int64.self) }.makeIterator()
        var usage: [String: CapUsage] = [:]
        for (index, province) in provinces.enumerated() {
            var provinceUsage = CapUsage()
            for row in results[4 + index].rows {
                guard let window = windowsByKey[province]?[try row.decode(0, as: String.self)] else { continue }
                provinceUsage[window] = CapUsage.Counter(points: try row.decode(1), events: try row.decode(2))
            }
            usage[province] = provinceUsage
        }

        // 3. Judge in request order; earlier items of the batch count for later ones.
        var verdicts: [Verdict] = []
        var writes = Writes()
        var judgedInBatch: [UUID: (hash: String, verdict: Verdict)] = [:]
        verdicts.reserveCapacity(items.count)
        for item in items {
            guard case .event(let wire) = item else {
                if case .invalid(let id, let issues) = item {
                    verdicts.append(Verdict(id: id ?? "", status: .rejected, code: VerdictCode.invalid,
                                            message: issues.first.map { "\($0.path): \($0.message)" } ?? "malformed event", errors: issues))
                }
                continue
            }
            let event = wire.event
            let idText = event.id.uuidString.lowercased()
            let hash = Self.contentHash(wire)
            if let earlier = existing[event.id] {
                if earlier.province == event.province && earlier.citizen == citizen && earlier.contentSHA256 == hash {
                    verdicts.append(Verdict(id: idText, status: .duplicate, code: earlier.code, message: earlier.message, award: earlier.award, originalStatus: earlier.status))
                } else {
                    verdicts.append(Verdict(id: idText, status: .conflict, code: VerdictCode.idReused, message: "an event with this id was already submitted with different content; the original stands"))
                }
                continue
            }
            if let earlier = judgedInBatch[event.id] {
                if earlier.hash == hash {
                    var duplicate = earlier.verdict
                    duplicate.originalStatus = duplicate.status
                    duplicate.status = .duplicate
                    verdicts.append(duplicate)
                } else {
                    verdicts.append(Verdict(id: idText, status: .conflict, code: VerdictCode.idReused, message: "this id appears twice in the batch with different content; the first stands"))
                }
                continue
            }
            let times = corrected[event.id]!
            var judged = event
            judged.occurredAt = times.occurred
            judged.endedAt = times.ended
            let ruleSet = histories[event.province]?.inForce(at: times.occurred)
            let occupies = times.ended != nil && ruleSet.map { Self.isTrip(kind: event.kind, in: $0) } == true

            var verdict: Verdict
            var award: Award?
            if times.occurred.timeIntervalSince(receivedAt) > ClockPolicy.futureTolerance || (times.ended.map { $0.timeIntervalSince(receivedAt) > ClockPolicy.futureTolerance } ?? false) {
                verdict = Verdict(id: idText, status: .rejected, code: VerdictCode.clockSkew,
                                  message: "after correcting the device clock by \(Int(offsetSeconds)) s the event lies in the future")
            } else if let ruleSet {
                switch RuleEvaluator.evaluate(event: judged, ruleSet: ruleSet, usage: usage[event.province] ?? CapUsage(), receivedAt: receivedAt) {
                case .rejected(let rejection):
                    verdict = Verdict(id: idText, status: .rejected, code: rejection.code.rawValue, message: rejection.message)
                case .accepted(let accepted):
                    if let evidence = wire.evidence, claimedEvidence.contains(Self.evidenceKey(event.province, evidence)) {
                        verdict = Verdict(id: idText, status: .conflict, code: VerdictCode.evidenceClaimed, message: "this evidence has already been credited")
                    } else if occupies, let ended = times.ended, (acceptedIntervals[event.province] ?? []).contains(where: { $0.0 < ended && times.occurred < $0.1 }) {
                        verdict = Verdict(id: idText, status: .conflict, code: VerdictCode.overlap, message: "overlaps a trip already accepted for this citizen")
                    } else {
                        award = accepted
                        verdict = Verdict(id: idText, status: .accepted, award: AwardSummary(
                            gramsCO2e: accepted.gramsCO2e, points: accepted.pointsAwarded, province: event.province,
                            ruleSetVersion: accepted.ruleSetVersion, capped: accepted.capped))
                    }
                }
            } else {
                verdict = Verdict(id: idText, status: .rejected, code: RejectionCode.noRuleset.rawValue,
                                  message: "no rule set of \(event.province) is in force at \(Self.format(times.occurred))")
            }
            if let award {
                usage[event.province, default: CapUsage()].add(award.consumption)
                if let evidence = wire.evidence { claimedEvidence.insert(Self.evidenceKey(event.province, evidence)) }
                if occupies, let ended = times.ended { acceptedIntervals[event.province, default: []].append((times.occurred, ended)) }
                writes.awards.append(AwardRow(province: event.province, eventID: event.id, award: award))
            }
            writes.events.append(EventRow(wire: wire, occurredAt: times.occurred, endedAt: times.ended, hash: hash,
                                          occupiesInterval: occupies && award != nil, status: verdict.status, code: verdict.code, message: verdict.message))
            judgedInBatch[event.id] = (hash, verdict)
            verdicts.append(verdict)
        }

        // 4. Every write in one round trip.
        guard !writes.events.isEmpty else { return verdicts }
        var statements: [PostgresQuery] = [eventInsert(writes.events)]
        if !writes.awards.isEmpty {
            var seq = lastSeq
            var transactions: [(AwardRow, Int64, Int64)] = []
            for row in writes.awards {
                let next = (seq[row.province] ?? 0) + 1
                seq[row.province] = next
                transactions.append((row, transactionIDs.next()!, next))
            }
            statements.append(contentsOf: awardInserts(transactions, citizenAccount: "citizen:" + citizenText))
            statements.append(contentsOf: usageUpserts(writes.awards))
            let totals = Dictionary(grouping: writes.awards, by: \.province).map { province, rows in
                (province, rows.reduce(Int64(0)) { $0 + $1.award.pointsAwarded }, rows.reduce(Int64(0)) { $0 + $1.award.gramsCO2e }, seq[province]!)
            }.sorted { $0.0 < $1.0 }
            statements.append("""
                UPDATE citizen_accounts a SET balance_points = a.balance_points + d.points, balance_grams = a.balance_grams + d.grams, last_seq = d.seq
                FROM unnest(\(PostgresArray(totals.map(\.0)))::text[], \(PostgresArray(totals.map(\.1)))::bigint[],
                            \(PostgresArray(totals.map(\.2)))::bigint[], \(PostgresArray(totals.map(\.3)))::bigint[]) AS d(province, points, grams, seq)
                WHERE a.province = d.province AND a.citizen_id = \(citizen)
                """)
        }
        statements.append("""
            INSERT INTO citizen_devices (province, citizen_id, device_id)
            SELECT p, \(citizen), \(device) FROM unnest(\(PostgresArray(provinces))::text[]) AS p
            ON CONFLICT DO NOTHING
            """)
        _ = try connection.pipeline(statements)
        return verdicts
    }

    private func eventInsert(_ rows: [EventRow]) -> PostgresQuery {
        let events = rows.map(\.wire.event)
        return """
            INSERT INTO events (province, event_id, citizen_id, device_id, kind, occurred_at, ended_at, device_occurred_at, device_ended_at,
                clock_offset_ms, mode, material, distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days,
                evidence_source, evidence_ref, content_sha256, occupies_interval, received_at, status, code, message)
            SELECT province, event_id, \(citizen), \(device), kind, occurred_at, ended_at, device_occurred_at, device_ended_at,
                \(Int64((offsetSeconds * 1000).rounded())), mode, material, distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days,
                evidence_source, evidence_ref, content_sha256, occupies_interval, \(receivedAt), status, code, message
            FROM unnest(
                \(PostgresArray(events.map(\.province)))::text[], \(PostgresArray(events.map(\.id)))::uuid[], \(PostgresArray(events.map(\.kind)))::text[],
                \(PostgresArray(rows.map(\.occurredAt)))::timestamptz[], \(PostgresArray(rows.map(\.endedAt)))::timestamptz[],
                \(PostgresArray(rows.map(\.wire.occurredAtText)))::text[], \(PostgresArray(rows.map(\.wire.endedAtText)))::text[],
                \(PostgresArray(events.map(\.data.mode)))::text[], \(PostgresArray(events.map(\.data.material)))::text[],
                \(PostgresArray(events.map(\.data.distanceMeters)))::bigint[], \(PostgresArray(events.map(\.data.weightGrams)))::bigint[],
                \(PostgresArray(events.map(\.data.count)))::bigint[], \(PostgresArray(events.map(\.data.consumptionWh)))::bigint[],
                \(PostgresArray(events.map(\.data.baselineWh)))::bigint[], \(PostgresArray(events.map(\.data.days)))::bigint[],
                \(PostgresArray(rows.map(\.wire.evidence?.source)))::text[], \(PostgresArray(rows.map(\.wire.evidence?.ref)))::text[],
                \(PostgresArray(rows.map(\.hash)))::text[], \(PostgresArray(rows.map(\.occupiesInterval)))::boolean[],
                \(PostgresArray(rows.map(\.status.rawValue)))::text[], \(PostgresArray(rows.map(\.code)))::text[], \(PostgresArray(rows.map(\.message)))::text[]
            ) AS r(province, event_id, kind, occurred_at, ended_at, device_occurred_at, device_ended_at, mode, material,
                   distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days, evidence_source, evidence_ref,
                   content_sha256, occupies_interval, status, code, message)
            """
    }

    private func awardInserts(_ transactions: [(AwardRow, Int64, Int64)], citizenAccount: String) -> [PostgresQuery] {
        let awards = transactions.map(\.0.award)
        let ids = transactions.map(\.1)
        let provinces = transactions.map(\.0.province)
        return [
            """
            INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e,
                rule_set_version, methodology, points_before_caps, multiplier, campaign, caps_applied)
            SELECT province, transaction_id, 'award', \(citizen), citizen_seq, event_id, points, grams, version, methodology,
                   points_before_caps, multiplier, campaign, string_to_array(caps_applied, ' ')
            FROM unnest(\(PostgresArray(provinces))::text[], \(PostgresArray(ids))::bigint[], \(PostgresArray(transactions.map(\.2)))::bigint[],
                        \(PostgresArray(transactions.map(\.0.eventID)))::uuid[], \(PostgresArray(awards.map(\.pointsAwarded)))::bigint[],
                        \(PostgresArray(awards.map(\.gramsCO2e)))::bigint[], \(PostgresArray(awards.map(\.ruleSetVersion)))::integer[],
                        \(PostgresArray(awards.map(\.methodology)))::text[], \(PostgresArray(awards.map(\.pointsBeforeCaps)))::bigint[],
                        \(PostgresArray(awards.map(\.multiplier.description)))::text[], \(PostgresArray(awards.map(\.campaign)))::text[],
                        \(PostgresArray(awards.map { $0.capsApplied.map(\.key).joined(separator: " ") }))::text[])
              AS r(province, transaction_id, citizen_seq, event_id, points, grams, version, methodology, points_before_caps, multiplier, campaign, caps_applied)
            """,
            """
            INSERT INTO ledger_entries (province, transaction_id, account, points)
            SELECT province, transaction_id, account, points
            FROM unnest(\(PostgresArray(provinces + provinces))::text[], \(PostgresArray(ids + ids))::bigint[],
                        \(PostgresArray(Array(repeating: "issuance", count: ids.count) + Array(repeating: citizenAccount, count: ids.count)))::text[],
                        \(PostgresArray(awards.map { -$0.pointsAwarded } + awards.map(\.pointsAwarded)))::bigint[])
              AS r(province, transaction_id, account, points)
            """,
        ]
    }

    private func usageUpserts(_ awards: [AwardRow]) -> [PostgresQuery] {
        var totals: [String: (province: String, key: String, points: Int64, events: Int64)] = [:]
        for row in awards {
            for consumption in row.award.consumption {
                let id = row.province + "\u{1}" + consumption.window.key
                var total = totals[id] ?? (row.province, consumption.window.key, 0, 0)
                total.points += consumption.points
                total.events += consumption.events
                totals[id] = total
            }
        }
        guard !totals.isEmpty else { return [] }
        let rows = totals.values.sorted { ($0.province, $0.key) < ($1.province, $1.key) }
        return ["""
            INSERT INTO cap_usage (province, citizen_id, window_key, points, events)
            SELECT province, \(citizen), window_key, points, events
            FROM unnest(\(PostgresArray(rows.map(\.province)))::text[], \(PostgresArray(rows.map(\.key)))::text[],
                        \(PostgresArray(rows.map(\.points)))::bigint[], \(PostgresArray(rows.map(\.events)))::bigint[])
              AS r(province, window_key, points, events)
            ON CONFLICT (province, citizen_id, window_key)
            DO UPDATE SET points = cap_usage.points + excluded.points, events = cap_usage.events + excluded.events
            """]
    }

    static func evidenceKey(_ province: String, _ evidence: Evidence) -> String {
        province + "\u{1}" + evidence.source + "\u{1}" + evidence.ref
    }

    /// Trips and rides (distance or per-trip methods) occupy their time interval.
    static func isTrip(kind: String, in ruleSet: RuleSet) -> Bool {
        switch ruleSet.activity(kind: kind)?.method {
        case .perDistance, .perTrip: return true
        default: return false
        }
    }

    static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
