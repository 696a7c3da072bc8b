import Crypto
package import Foundation
package import TanhuiCore
import TanhuiPostgres

/// One record's answer, in upload order: a push verdict named by the partner's record id.
package struct RecordVerdict: Sendable, Equatable {
    package var recordID: String?
    package var verdict: Verdict
}

extension PartnerFeedService {
    /// Whether `signature` (the `Tanhui-Signature` header, `ed25519=<base64>`) signs `body`
    /// with the partner's registered key. Checked before the body is parsed.
    package static func verify(signature header: String?, body: some DataProtocol, signingKey: String?) -> Bool {
        guard let signingKey, let header, header.hasPrefix("ed25519="), header.utf8.count < 200,
            let signature = Data(base64Encoded: String(header.dropFirst("ed25519=".count))), signature.count == 64,
            let keyData = Data(base64Encoded: signingKey), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: keyData)
        else { return false }
        return key.isValidSignature(signature, for: body)
    }

    /// The event id of a partner's record: derived from the partner and the record id, so a
    /// record is one event forever whoever resends it (name-based UUID, version 8).
    package static func eventID(partner: UUID, recordID: String) -> UUID {
        var bytes = Array(SHA256.hash(data: Data(("tanhui-partner-record-v1:" + partner.canonicalText + ":" + recordID).utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11], bytes[12],
                bytes[13], bytes[14], bytes[15]
            ))
    }

    /// What a record is for `partner_records`: the event's canonical content (its
    /// `BatchPlan.contentHash`) and the subject.
    static func recordHash(contentSHA256: String, subject: String) -> String {
        SHA256.hex("tanhui-partner-record-v1;" + contentSHA256 + ";\(subject.utf8.count):\(subject);")
    }

    /// A decoded record, or why it could not be.
    enum Decoded {
        case record(recordID: String, subject: String, wire: EventWire)
        case invalid(recordID: String?, issues: [ValidationIssue])
    }

    /// Reads one record: the push event shape with `record_id` and `subject` instead of `id`
    /// (the province defaults to the path's and must equal it).
    static func decode(_ raw: JSONValue, partner: UUID, province: String) -> Decoded {
        guard case .object(var fields) = raw else {
            return .invalid(recordID: nil, issues: [ValidationIssue(path: "", code: .invalid, message: "a record must be a JSON object")])
        }
        var issues: [ValidationIssue] = []
        func text(_ key: String) -> String? {
            guard case .string(let value)? = fields[key] else {
                issues.append(ValidationIssue(path: key, code: .invalid, message: "\(key) is required and must be a string"))
                return nil
            }
            guard (1...200).contains(value.utf8.count), !value.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                issues.append(ValidationIssue(path: key, code: .invalid, message: "\(key) must be 1–200 bytes without control characters"))
                return nil
            }
            return value
        }
        let recordID = text("record_id")
        let subject = text("subject")
        if fields["id"] != nil {
            issues.append(ValidationIssue(path: "id", code: .invalid, message: "unknown field id (a record is named by record_id)"))
        }
        if case .string(let named)? = fields["province"], named != province {
            issues.append(ValidationIssue(path: "province", code: .invalid, message: "province must be \(province), the path's"))
        }
        guard issues.isEmpty, let recordID, let subject else { return .invalid(recordID: recordID, issues: issues) }
        fields["record_id"] = nil
        fields["subject"] = nil
        fields["id"] = .string(eventID(partner: partner, recordID: recordID).canonicalText)
        if fields["province"] == nil { fields["province"] = .string(province) }
        switch EventWire.decode(.object(fields)) {
        case .success(let wire): return .record(recordID: recordID, subject: subject, wire: wire)
        case .failure(let invalid): return .invalid(recordID: recordID, issues: invalid.issues)
        }
    }

    /// Judges a partner's upload with the push path's judge and write path. Every record of a
    /// linked subject becomes an event of the linked citizen (device `partner:<id>`); records
    /// without a link valid at `occurred_at` (`unlinked`) or of kinds the partner may not
    /// report (`kind_not_in_scope`) are kept in `partner_records` only, so a later link never
    /// credits them. A record id is judged once per partner forever: resending answers
    /// `duplicate` with the first verdict.
    package func ingest(partner: PartnerIdentity, records raw: [JSONValue], receivedAt: Date) async throws -> [RecordVerdict] {
        let province = partner.province
        let receivedAtMs = Timestamp.milliseconds(of: receivedAt)
        let profile = try await self.profile(province: province, partner: partner.id)
        let kinds = Set(profile.kinds)
        let decoded = raw.map { Self.decode($0, partner: partner.id, province: province) }
        var answers = [Verdict?](repeating: nil, count: decoded.count)
        var firstIndex: [String: Int] = [:]  // record id → first index in this upload
        var repeats: [(index: Int, first: Int, hash: String)] = []
        var candidates: [(index: Int, recordID: String, subject: String, wire: EventWire, contentSHA256: String, hash: String)] = []
        for (index, item) in decoded.enumerated() {
            switch item {
            case .invalid(let recordID, let issues):
                answers[index] = Verdict(
                    id: recordID ?? "", status: .rejected, code: VerdictCode.invalid,
                    message: issues.first.map { "\($0.path): \($0.message)" } ?? "malformed record", errors: issues)
            case .record(let recordID, let subject, let wire):
                let contentSHA256 = BatchPlan.contentHash(wire)
                let hash = Self.recordHash(contentSHA256: contentSHA256, subject: subject)
                if let first = firstIndex[recordID] {
                    repeats.append((index, first, hash))
                    continue
                }
                firstIndex[recordID] = index
                candidates.append((index, recordID, subject, wire, contentSHA256, hash))
            }
        }

        // Stored verdicts of earlier uploads, and the links of the remaining subjects.
        let named = candidates.map { (recordID: $0.recordID, subject: $0.subject) }
        let (stored, links) = try await pool.withConnection { connection in
            let stored = try Self.storedRecords(province: province, partner: partner.id, recordIDs: named.map(\.recordID), on: connection)
            let subjects = Array(Set(named.filter { stored[$0.recordID] == nil }.map(\.subject))).sorted()
            let links = try Self.linkHistory(province: province, partner: partner.id, subjects: subjects, on: connection)
            return (stored, links)
        }

        var plans: [UUID: (inputs: [BatchJudge.Input], records: [UUID: BatchPlan.PartnerRecordRow])] = [:]
        var planIndexes: [UUID: Int] = [:]  // event id → upload index
        var keptRows: [KeptRecord] = []
        for candidate in candidates {
            let recordText = candidate.recordID
            if let earlier = stored[recordText] {
                answers[candidate.index] =
                    earlier.hash == candidate.hash
                    ? Verdict(
                        id: recordText, status: .duplicate, code: earlier.verdict.code, message: earlier.verdict.message,
                        award: earlier.verdict.award,
                        originalStatus: earlier.verdict.status)
                    : Verdict(
                        id: recordText, status: .conflict, code: VerdictCode.idReused,
                        message: "this record_id was already uploaded by this partner with different content; the original stands")
                continue
            }
            let event = candidate.wire.event
            let occurredMs = Timestamp.milliseconds(of: event.occurredAt)
            let endedMs = event.endedAt.map { Timestamp.milliseconds(of: $0) }
            // The judge's clock rules apply to records too (without a sent_at, nothing is corrected).
            if !ClockPolicy.saneRangeMs.contains(occurredMs) || endedMs.map({ !ClockPolicy.saneRangeMs.contains($0) }) == true
                || occurredMs > receivedAtMs + ClockPolicy.futureToleranceMs || (endedMs ?? .min) > receivedAtMs + ClockPolicy.futureToleranceMs
            {
                // Not stored, like a device's: the partner resends once its clock is right.
                answers[candidate.index] = Verdict(
                    id: recordText, status: .rejected, code: occurredMs > receivedAtMs ? VerdictCode.clockSkew : VerdictCode.invalid,
                    message: "occurred_at and ended_at must lie between 2000-01-01 and 5 minutes from now; the record was not stored")
                continue
            }
            let link = links[candidate.subject]?.first { $0.grantedMs <= occurredMs && ($0.revokedMs.map { occurredMs < $0 } ?? true) }
            let keptCode: (String, String)? =
                if !kinds.contains(event.kind) {
                    (VerdictCode.kindNotInScope, "this partner is not registered to report \(event.kind)")
                } else if link == nil {
                    (VerdictCode.unlinked, "no link of this subject to a citizen was valid at occurred_at; the record is kept and never credited")
                } else {
                    nil
                }
            if let kept = keptCode {
                let (code, message) = kept
                keptRows.append(
                    KeptRecord(
                        recordID: recordText, eventID: event.id, subject: candidate.subject, linkID: link?.id, citizen: link?.citizen,
                        kind: event.kind,
                        occurredMs: occurredMs, hash: candidate.hash, code: code))
                answers[candidate.index] = Verdict(id: recordText, status: .rejected, code: code, message: message)
                continue
            }
            let citizen = link!.citizen
            plans[citizen, default: ([], [:])].inputs.append(
                .event(BatchJudge.Item(wire: candidate.wire, contentSHA256: candidate.contentSHA256)))
            plans[citizen, default: ([], [:])].records[event.id] = BatchPlan.PartnerRecordRow(
                partnerID: partner.id, recordID: recordText, subject: candidate.subject, linkID: link!.id, recordSHA256: candidate.hash)
            planIndexes[event.id] = candidate.index
        }

        if !keptRows.isEmpty { try await keep(keptRows, province: province, partner: partner.id, receivedAtMs: receivedAtMs) }

        // Linked records: one plan per citizen through the group committer, like device pushes.
        let device = "partner:" + partner.id.canonicalText
        let source = EventSource.partner(partner.id)
        let batches = plans.map { citizen, plan in
            BatchPlan(
                inputs: plan.inputs, citizen: citizen, device: device, receivedAtMs: receivedAtMs, sentAtMs: nil, source: source,
                partnerRecords: plan.records)
        }
        let results = try await ledger.committer.submit(batches).flatMap(\.verdicts)
        for verdict in results {
            guard let id = try? UUID(postgresText: verdict.id), let index = planIndexes[id], case .record(let recordID, _, _) = decoded[index] else {
                continue
            }
            var named = verdict
            named.id = recordID
            answers[index] = named
        }
        for repeated in repeats {
            guard let first = answers[repeated.first], case .record(let recordID, _, _) = decoded[repeated.index] else { continue }
            let firstHash = candidates.first { $0.index == repeated.first }?.hash
            answers[repeated.index] =
                firstHash == repeated.hash && first.status != .duplicate
                ? Verdict(
                    id: recordID, status: .duplicate, code: first.code, message: first.message, award: first.award, originalStatus: first.status)
                : firstHash == repeated.hash
                    ? first
                    : Verdict(
                        id: recordID, status: .conflict, code: VerdictCode.idReused,
                        message: "this record_id appears earlier in the upload with different content; the first stands")
        }
        return zip(decoded, answers).map { item, answer in
            let recordID: String? =
                switch item {
                case .record(let id, _, _): id
                case .invalid(let id, _): id
                }
            return RecordVerdict(
                recordID: recordID,
                verdict: answer ?? Verdict(id: recordID ?? "", status: .rejected, code: VerdictCode.invalid, message: "not judged"))
        }
    }

    struct StoredRecord {
        var hash: String
        var verdict: Verdict
    }

    static func storedRecords(
        province: String, partner: UUID, recordIDs: [String], on connection: PostgresConnection
    ) throws -> [String: StoredRecord] {
        guard !recordIDs.isEmpty else { return [:] }
        var found: [String: StoredRecord] = [:]
        for row in try connection.query(
            """
            SELECT r.record_id, r.content_sha256, r.status, r.code, e.message, t.points, t.grams_co2e, t.rule_set_version, t.points_before_caps
            FROM partner_records r
            LEFT JOIN events e ON e.province = r.province AND e.event_id = r.event_id
            LEFT JOIN ledger_transactions t ON t.province = r.province AND t.event_id = r.event_id AND t.kind = 'award'
            WHERE r.province = \(province) AND r.partner_id = \(partner) AND r.record_id = ANY(\(PostgresArray(recordIDs))::text[])
            """
        ).rows {
            let recordID: String = try row.decode(0)
            let points = try row.decode(5, as: Int64?.self)
            found[recordID] = StoredRecord(
                hash: try row.decode(1),
                verdict: Verdict(
                    id: recordID, status: Verdict.Status(rawValue: try row.decode(2)) ?? .rejected, code: try row.decode(3, as: String?.self),
                    message: try row.decode(4, as: String?.self),
                    award: try points.map { points in
                        AwardSummary(
                            gramsCO2e: try row.decode(6), points: points, province: province, ruleSetVersion: try row.decode(7),
                            capped: points < (try row.decode(8, as: Int64?.self) ?? points))
                    }))
        }
        return found
    }

    /// A link's validity as the records judge it: `[granted, revoked)` in epoch milliseconds.
    struct LinkSpan {
        var id: UUID
        var citizen: UUID
        var grantedMs: Int64
        var revokedMs: Int64?
    }

    static func linkHistory(province: String, partner: UUID, subjects: [String], on connection: PostgresConnection) throws -> [String: [LinkSpan]] {
        guard !subjects.isEmpty else { return [:] }
        var spans: [String: [LinkSpan]] = [:]
        for row in try connection.query(
            """
            SELECT g.subject, g.link_id, g.citizen_id, trunc(extract(epoch FROM g.at) * 1000)::bigint, trunc(extract(epoch FROM r.at) * 1000)::bigint
            FROM partner_link_changes g
            LEFT JOIN partner_link_changes r ON r.province = g.province AND r.link_id = g.link_id AND r.change = 'revoked'
            WHERE g.province = \(province) AND g.partner_id = \(partner) AND g.subject = ANY(\(PostgresArray(subjects))::text[]) AND g.change = 'granted'
            ORDER BY g.at
            """
        ).rows {
            spans[try row.decode(0), default: []].append(
                LinkSpan(
                    id: try row.decode(1), citizen: try row.decode(2), grantedMs: try row.decode(3), revokedMs: try row.decode(4, as: Int64?.self)))
        }
        return spans
    }

    /// A record judged before the push path (unlinked, out of scope): kept, never an event.
    struct KeptRecord {
        var recordID: String
        var eventID: UUID
        var subject: String
        var linkID: UUID?
        var citizen: UUID?
        var kind: String
        var occurredMs: Int64
        var hash: String
        var code: String
    }

    func keep(_ rows: [KeptRecord], province: String, partner: UUID, receivedAtMs: Int64) async throws {
        try await pool.withTransaction { connection in
            try connection.query("SELECT pg_advisory_xact_lock_shared(hashtext(\(RuleSetService.publicationLockKey(province))))")
            // A concurrent upload of the same record wins; its verdict is the same rule's.
            try connection.query(
                """
                INSERT INTO partner_records (province, partner_id, record_id, event_id, subject, link_id, citizen_id, kind, occurred_at,
                    content_sha256, status, code, received_at)
                SELECT \(province)::text, \(partner)::uuid, r, e, s, l, c, k, o, h, 'rejected', code, \(Timestamp.textUTC(milliseconds: receivedAtMs))::timestamptz
                FROM unnest(\(PostgresArray(rows.map(\.recordID)))::text[], \(PostgresArray(rows.map(\.eventID)))::uuid[],
                            \(PostgresArray(rows.map(\.subject)))::text[], \(PostgresArray(rows.map(\.linkID)))::uuid[],
                            \(PostgresArray(rows.map(\.citizen)))::uuid[], \(PostgresArray(rows.map(\.kind)))::text[],
                            \(PostgresArray(rows.map { UTCMilliseconds($0.occurredMs) }))::timestamptz[],
                            \(PostgresArray(rows.map(\.hash)))::text[], \(PostgresArray(rows.map(\.code)))::text[]) AS x(r, e, s, l, c, k, o, h, code)
                ON CONFLICT DO NOTHING
                """)
        }
    }

    /// The push path's write of partner records judged there (in the round's transaction).
    static func recordInsert(
        _ rows: [(row: BatchJudge.EventRow, record: BatchPlan.PartnerRecordRow, citizen: UUID, receivedAtMs: Int64)]
    )
        -> PostgresQuery
    {
        let events = rows.map(\.row.item.wire.event)
        return """
            INSERT INTO partner_records (province, partner_id, record_id, event_id, subject, link_id, citizen_id, kind, occurred_at,
                content_sha256, status, code, received_at)
            SELECT * FROM unnest(
                \(PostgresArray(events.map(\.province)))::text[], \(PostgresArray(rows.map(\.record.partnerID)))::uuid[],
                \(PostgresArray(rows.map(\.record.recordID)))::text[], \(PostgresArray(events.map(\.id)))::uuid[],
                \(PostgresArray(rows.map(\.record.subject)))::text[], \(PostgresArray(rows.map(\.record.linkID)))::uuid[],
                \(PostgresArray(rows.map(\.citizen)))::uuid[], \(PostgresArray(events.map(\.kind)))::text[],
                \(PostgresArray(rows.map { UTCMilliseconds($0.row.occurredMs) }))::timestamptz[],
                \(PostgresArray(rows.map(\.record.recordSHA256)))::text[], \(PostgresArray(rows.map(\.row.status.rawValue)))::text[],
                \(PostgresArray(rows.map(\.row.code)))::text[],
                \(PostgresArray(rows.map { UTCMilliseconds($0.receivedAtMs) }))::timestamptz[])
            RETURNING 1
            """
    }
}
