import Crypto
import Foundation
import TanhuiCore
import TanhuiPostgres

/// One batch inside its transaction: lock, load the facts, let the pure `BatchJudge` decide,
/// write. Safe to rerun from the start.
///
/// Round trips: BEGIN; locks (publication lock shared per province, account rows) with the
/// latest rule-set versions; reads; writes; COMMIT. The rule-set history is checked under
/// the shared publication lock, so a version published meanwhile is either fully visible or
/// waits for this batch to commit.
struct BatchPlan: Sendable {
    let inputs: [BatchJudge.Input]
    let citizen: UUID
    let device: String
    let receivedAtMs: Int64
    let sentAtMs: Int64?
    let ruleSets: RuleSetService

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

    struct Result: Sendable {
        var verdicts: [Verdict]
        var balances: [ProvinceBalance]
    }

    func execute(on connection: PostgresConnection) throws -> Result {
        let provinces = Array(Set(inputs.compactMap { input -> String? in
            if case .event(let item) = input { return item.wire.event.province } else { return nil }
        })).sorted()

        // 1. Locks in a global order (publication locks, then account rows, by province), and
        //    the latest rule-set version of each province, read after the locks are held.
        var accounts: [String: BatchJudge.Account] = [:]
        var histories: [String: RuleSetHistory] = [:]
        if !provinces.isEmpty {
            let locked = try connection.pipeline(lockStatements(provinces))
            for row in locked[2].rows {
                accounts[try row.decode(0)] = BatchJudge.Account(points: try row.decode(1), gramsCO2e: try row.decode(2), lastSeq: try row.decode(3))
            }
            for row in locked[3].rows {
                let province: String = try row.decode(0)
                histories[province] = try ruleSets.history(province: province, latestVersion: try row.decode(1), on: connection)
            }
        }
        let prepared = BatchJudge.prepare(inputs, receivedAtMs: receivedAtMs, sentAtMs: sentAtMs, histories: histories)

        // 2. Every read in one round trip, each keyed by province first.
        var facts = BatchJudge.Facts()
        facts.accounts = accounts
        var transactionIDs: [Int64] = []
        if !prepared.keys.isEmpty {
            let results = try connection.pipeline(readStatements(prepared, provinces: provinces))
            for row in results[0].rows {
                let province: String = try row.decode(0)
                let points = try row.decode(7, as: Int64?.self)
                facts.existing[BatchJudge.EventKey(province: province, id: try row.decode(1))] = BatchJudge.Stored(
                    citizen: try row.decode(2), contentSHA256: try row.decode(3),
                    status: Verdict.Status(rawValue: try row.decode(4)) ?? .rejected,
                    code: try row.decode(5, as: String?.self), message: try row.decode(6, as: String?.self),
                    award: try points.map { points in
                        AwardSummary(gramsCO2e: try row.decode(8), points: points, province: province,
                                     ruleSetVersion: try row.decode(9), capped: points < (try row.decode(10, as: Int64?.self) ?? points))
                    })
            }
            for row in results[1].rows {
                facts.claimedEvidence.insert(BatchJudge.EvidenceKey(province: try row.decode(0), source: try row.decode(1), ref: try row.decode(2)))
            }
            for row in results[2].rows {
                facts.acceptedTrips[try row.decode(0), default: []].append(BatchJudge.Interval(startMs: try row.decode(1), endMs: try row.decode(2)))
            }
            transactionIDs = try results[3].rows.map { try $0.decode(0, as: Int64.self) }
            for (index, province) in provinces.enumerated() {
                var usage = CapUsage()
                let windows = Dictionary(prepared.entries.flatMap { entry -> [(String, CapWindow)] in
                    guard case .event(let item, _, _, _, let windows) = entry, item.wire.event.province == province else { return [] }
                    return windows.map { ($0.key, $0) }
                }, uniquingKeysWith: { first, _ in first })
                for row in results[4 + index].rows {
                    guard let window = windows[try row.decode(0, as: String.self)] else { continue }
                    usage[window] = CapUsage.Counter(points: try row.decode(1), events: try row.decode(2))
                }
                facts.usage[province] = usage
            }
        }

        // 3. Judge (pure), 4. every write in one round trip.
        let outcome = BatchJudge.judge(prepared, citizen: citizen, facts: facts)
        let balances = provinces.map { province in
            let account = outcome.accounts[province] ?? BatchJudge.Account()
            return ProvinceBalance(province: province, points: account.points, gramsCO2e: account.gramsCO2e, lastSeq: account.lastSeq)
        }
        guard !outcome.events.isEmpty else { return Result(verdicts: outcome.verdicts, balances: balances) }
        var statements: [PostgresQuery] = [eventInsert(outcome.events, offsetMs: prepared.offsetMs)]
        if !outcome.awards.isEmpty {
            precondition(transactionIDs.count >= outcome.awards.count, "one transaction id was drawn per judged event")
            statements.append(contentsOf: awardInserts(outcome.awards, ids: Array(transactionIDs.prefix(outcome.awards.count))))
            if let upsert = usageUpsert(outcome.usageIncrements) { statements.append(upsert) }
            statements.append(accountUpdate(balances.filter { $0.lastSeq != accounts[$0.province]?.lastSeq }))
        }
        statements.append("""
            INSERT INTO citizen_devices (province, citizen_id, device_id)
            SELECT p, \(citizen), \(device) FROM unnest(\(PostgresArray(provinces))::text[]) AS p
            ON CONFLICT DO NOTHING
            """)
        _ = try connection.pipeline(statements)
        return Result(verdicts: outcome.verdicts, balances: balances)
    }

    /// Step 1: the publication locks shared and the account rows locked, in province order,
    /// then the latest rule-set versions (read after the locks are held).
    func lockStatements(_ provinces: [String]) -> [PostgresQuery] {
        [
            """
            SELECT pg_advisory_xact_lock_shared(hashtext(k)) FROM unnest(\(PostgresArray(provinces.map(RuleSetService.publicationLockKey)))::text[]) WITH ORDINALITY AS l(k, n) ORDER BY n
            """,
            """
            INSERT INTO citizen_accounts (province, citizen_id)
            SELECT p, \(citizen) FROM unnest(\(PostgresArray(provinces))::text[]) AS p
            ON CONFLICT DO NOTHING
            """,
            """
            SELECT province, balance_points, balance_grams, last_seq FROM citizen_accounts
            WHERE province = ANY(\(PostgresArray(provinces))::text[]) AND citizen_id = \(citizen)
            ORDER BY province FOR UPDATE
            """,
            """
            SELECT p, coalesce((SELECT max(version) FROM rule_sets r WHERE r.province = p), 0)
            FROM unnest(\(PostgresArray(provinces))::text[]) AS p
            """,
        ]
    }

    /// Step 2: the facts, keyed by province first.
    func readStatements(_ prepared: BatchJudge.Prepared, provinces: [String]) -> [PostgresQuery] {
        let span = prepared.tripSpan
        var reads: [PostgresQuery] = [
            """
            SELECT e.province, e.event_id, e.citizen_id, e.content_sha256, e.status, e.code, e.message,
                   t.points, t.grams_co2e, t.rule_set_version, t.points_before_caps
            FROM unnest(\(PostgresArray(prepared.keys.map(\.province)))::text[], \(PostgresArray(prepared.keys.map(\.id)))::uuid[]) AS k(province, event_id)
            JOIN events e ON e.province = k.province AND e.event_id = k.event_id
            LEFT JOIN ledger_transactions t ON t.province = e.province AND t.event_id = e.event_id AND t.kind = 'award'
            """,
            """
            SELECT e.province, e.evidence_source, e.evidence_ref
            FROM unnest(\(PostgresArray(prepared.evidence.map(\.province)))::text[], \(PostgresArray(prepared.evidence.map(\.source)))::text[],
                        \(PostgresArray(prepared.evidence.map(\.ref)))::text[]) AS c(province, source, ref)
            JOIN events e ON e.province = c.province AND e.evidence_source = c.source AND e.evidence_ref = c.ref AND e.status = 'accepted'
            """,
            """
            SELECT province, (extract(epoch FROM occurred_at) * 1000)::bigint,
                   (extract(epoch FROM coalesce(ended_at, occurred_at + interval '1 millisecond')) * 1000)::bigint
            FROM events
            WHERE province = ANY(\(PostgresArray(provinces))::text[]) AND citizen_id = \(citizen)
              AND status = 'accepted' AND occupies_interval AND \(span != nil)::boolean
              AND tanhui_trip_range(occurred_at, ended_at) && tstzrange('epoch'::timestamptz + \(span?.startMs ?? 0) * interval '1 millisecond',
                               'epoch'::timestamptz + \(span?.endMs ?? 1) * interval '1 millisecond', '[)')
            """,
            """
            SELECT nextval('ledger_transaction_ids') FROM generate_series(1, \(prepared.keys.count))
            """,
        ]
        for province in provinces {
            reads.append("""
                SELECT window_key, points, events FROM cap_usage
                WHERE province = \(province) AND citizen_id = \(citizen) AND window_key = ANY(\(PostgresArray(prepared.windowKeys[province] ?? []))::text[])
                """)
        }
        return reads
    }

    /// The accounts after the batch (rows locked in step 1).
    func accountUpdate(_ changed: [ProvinceBalance]) -> PostgresQuery {
        """
            UPDATE citizen_accounts a SET balance_points = d.points, balance_grams = d.grams, last_seq = d.seq
            FROM unnest(\(PostgresArray(changed.map(\.province)))::text[], \(PostgresArray(changed.map(\.points)))::bigint[],
                        \(PostgresArray(changed.map(\.gramsCO2e)))::bigint[], \(PostgresArray(changed.map(\.lastSeq)))::bigint[]) AS d(province, points, grams, seq)
            WHERE a.province = d.province AND a.citizen_id = \(citizen)
            """
    }

    /// Instants travel as epoch milliseconds (bigint) and become timestamptz in SQL by exact
    /// interval arithmetic: no floating point between the judge and the table.
    private func eventInsert(_ rows: [BatchJudge.EventRow], offsetMs: Int64) -> PostgresQuery {
        let events = rows.map(\.item.wire.event)
        let wires = rows.map(\.item.wire)
        return """
            INSERT INTO events (province, event_id, citizen_id, device_id, kind, occurred_at, ended_at, device_occurred_at, device_ended_at,
                clock_offset_ms, mode, material, distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days,
                evidence_source, evidence_ref, content_sha256, occupies_interval, received_at, status, code, message)
            SELECT province, event_id, \(citizen), \(device), kind,
                'epoch'::timestamptz + occurred_ms * interval '1 millisecond', 'epoch'::timestamptz + ended_ms * interval '1 millisecond',
                device_occurred_at, device_ended_at,
                \(offsetMs), mode, material, distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days,
                evidence_source, evidence_ref, content_sha256, occupies_interval,
                'epoch'::timestamptz + \(receivedAtMs) * interval '1 millisecond', status, code, message
            FROM unnest(
                \(PostgresArray(events.map(\.province)))::text[], \(PostgresArray(events.map(\.id)))::uuid[], \(PostgresArray(events.map(\.kind)))::text[],
                \(PostgresArray(rows.map(\.occurredMs)))::bigint[], \(PostgresArray(rows.map(\.endedMs)))::bigint[],
                \(PostgresArray(wires.map(\.occurredAtText)))::text[], \(PostgresArray(wires.map(\.endedAtText)))::text[],
                \(PostgresArray(events.map(\.data.mode)))::text[], \(PostgresArray(events.map(\.data.material)))::text[],
                \(PostgresArray(events.map(\.data.distanceMeters)))::bigint[], \(PostgresArray(events.map(\.data.weightGrams)))::bigint[],
                \(PostgresArray(events.map(\.data.count)))::bigint[], \(PostgresArray(events.map(\.data.consumptionWh)))::bigint[],
                \(PostgresArray(events.map(\.data.baselineWh)))::bigint[], \(PostgresArray(events.map(\.data.days)))::bigint[],
                \(PostgresArray(wires.map(\.evidence?.source)))::text[], \(PostgresArray(wires.map(\.evidence?.ref)))::text[],
                \(PostgresArray(rows.map(\.item.contentSHA256)))::text[], \(PostgresArray(rows.map(\.occupiesInterval)))::boolean[],
                \(PostgresArray(rows.map(\.status.rawValue)))::text[], \(PostgresArray(rows.map(\.code)))::text[], \(PostgresArray(rows.map(\.message)))::text[]
            ) AS r(province, event_id, kind, occurred_ms, ended_ms, device_occurred_at, device_ended_at, mode, material,
                   distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days, evidence_source, evidence_ref,
                   content_sha256, occupies_interval, status, code, message)
            """
    }

    private func awardInserts(_ rows: [BatchJudge.AwardRow], ids: [Int64]) -> [PostgresQuery] {
        let awards = rows.map(\.award)
        let provinces = rows.map(\.province)
        let citizenAccount = "citizen:" + citizen.uuidString.lowercased()
        return [
            """
            INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e,
                rule_set_version, methodology, points_before_caps, multiplier, campaign, caps_applied)
            SELECT province, transaction_id, 'award', \(citizen), citizen_seq, event_id, points, grams, version, methodology,
                   points_before_caps, multiplier, campaign, string_to_array(caps_applied, ' ')
            FROM unnest(\(PostgresArray(provinces))::text[], \(PostgresArray(ids))::bigint[], \(PostgresArray(rows.map(\.citizenSeq)))::bigint[],
                        \(PostgresArray(rows.map(\.eventID)))::uuid[], \(PostgresArray(awards.map(\.pointsAwarded)))::bigint[],
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

    private func usageUpsert(_ increments: [String: [String: CapUsage.Counter]]) -> PostgresQuery? {
        let rows = increments.flatMap { province, windows in windows.map { (province: province, key: $0.key, counter: $0.value) } }
            .sorted { ($0.province, $0.key) < ($1.province, $1.key) }
        guard !rows.isEmpty else { return nil }
        return """
            INSERT INTO cap_usage (province, citizen_id, window_key, points, events)
            SELECT province, \(citizen), window_key, points, events
            FROM unnest(\(PostgresArray(rows.map(\.province)))::text[], \(PostgresArray(rows.map(\.key)))::text[],
                        \(PostgresArray(rows.map(\.counter.points)))::bigint[], \(PostgresArray(rows.map(\.counter.events)))::bigint[])
              AS r(province, window_key, points, events)
            ON CONFLICT (province, citizen_id, window_key)
            DO UPDATE SET points = cap_usage.points + excluded.points, events = cap_usage.events + excluded.events
            """
    }
}
