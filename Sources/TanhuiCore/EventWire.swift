package import Foundation

/// Evidence that ties an event to a record outside Tanhui (a metro-card transaction, a
/// bike-share order, a recycling-station receipt); one `(province, source, ref)` is credited once.
package struct Evidence: Sendable, Equatable, Codable {
    package var source: String
    package var ref: String

    package init(source: String, ref: String) {
        self.source = source
        self.ref = ref
    }
}

/// Why an event could not be decoded: every problem, each with the field's path.
package struct EventInvalid: Error, Sendable {
    package let issues: [ValidationIssue]
}

/// One event as clients send it (sync push, `rules simulate` JSONL):
/// `{"id", "kind", "province", "occurred_at", "ended_at"?, "data": {…}, "evidence"?: {source, ref}}`.
///
/// Decoding is strict: unknown keys, wrong types, fractional or out-of-range quantities and
/// timestamps without a UTC offset become `invalid` issues with the field's path.
package struct EventWire: Sendable {
    package let event: ActionEvent
    package let evidence: Evidence?
    /// The timestamps as the client wrote them, kept for the record.
    package let occurredAtText: String
    package let endedAtText: String?

    static let topKeys: Set<String> = ["id", "kind", "province", "occurred_at", "ended_at", "data", "evidence"]
    static let dataKeys: Set<String> = ["mode", "material", "distance_m", "weight_g", "count", "consumption_wh", "baseline_wh", "days", "district"]
    /// Longest string accepted in any field; identifiers and evidence refs are short.
    package static let maximumStringLength = 200

    /// Decodes one event from what `JSONSerialization` produced (tests, fixtures).
    package static func decode(_ object: Any) -> Result<EventWire, EventInvalid> {
        guard let value = JSONValue(any: object) else {
            return .failure(EventInvalid(issues: [ValidationIssue(path: "", code: .invalid, message: "an event must be a JSON object")]))
        }
        return decode(value)
    }

    /// Decodes one event from a parsed JSON value (the push path).
    package static func decode(_ object: JSONValue) -> Result<EventWire, EventInvalid> {
        var issues: [ValidationIssue] = []
        func bad(_ path: String, _ message: String) {
            issues.append(ValidationIssue(path: path, code: .invalid, message: message))
        }
        guard case .object(let fields) = object else {
            return .failure(EventInvalid(issues: [ValidationIssue(path: "", code: .invalid, message: "an event must be a JSON object")]))
        }
        for key in fields.keys.sorted() where !topKeys.contains(key) { bad(key, "unknown field \(key)") }

        func string(_ value: JSONValue?, _ path: String, required: Bool) -> String? {
            guard let value, value != .null else {
                if required { bad(path, "\(path) is required") }
                return nil
            }
            guard case .string(let text) = value else {
                bad(path, "\(path) must be a string")
                return nil
            }
            if text.utf8.count > maximumStringLength {
                bad(path, "\(path) is longer than \(maximumStringLength) bytes")
                return nil
            }
            if text.unicodeScalars.contains(where: { $0.value < 0x20 }) {
                bad(path, "\(path) contains control characters")
                return nil
            }
            return text
        }
        func timestamp(_ value: JSONValue?, _ path: String, required: Bool) -> (Date, String)? {
            guard let text = string(value, path, required: required) else { return nil }
            switch Instant.parseRFC3339(text) {
            case .success(let milliseconds): return (Instant.date(milliseconds), text)
            case .failure:
                bad(path, "\(path) must be an RFC 3339 timestamp with a UTC offset, e.g. 2027-03-01T07:31:00+08:00")
                return nil
            }
        }
        func quantity(_ value: JSONValue?, _ path: String) -> Int64? {
            guard let value, value != .null else { return nil }
            guard case .number(let text) = value else {
                bad(path, "\(path) must be an integer")
                return nil
            }
            if let exact = Int64(text), exact.magnitude <= 9_000_000_000_000_000 { return exact }
            guard let double = Double(text), double.isFinite, double == double.rounded(), abs(double) <= 9.0e15 else {
                bad(path, "\(path) must be a whole number in base units")
                return nil
            }
            return Int64(double)
        }

        let idText = string(fields["id"], "id", required: true)
        let id = idText.flatMap(UUID.init(uuidString:))
        if idText != nil, id == nil { bad("id", "id must be a UUID") }
        let kind = string(fields["kind"], "kind", required: true)
        let province = string(fields["province"], "province", required: true)
        if let province, !Province.isKnown(province) { bad("province", "province must be an ISO 3166-2:CN code such as CN-GD") }
        let occurred = timestamp(fields["occurred_at"], "occurred_at", required: true)
        let ended = timestamp(fields["ended_at"], "ended_at", required: false)

        var data = EventData()
        if let raw = fields["data"], raw != .null {
            if case .object(let dataFields) = raw {
                for key in dataFields.keys.sorted() where !dataKeys.contains(key) { bad("data.\(key)", "unknown field data.\(key)") }
                data.mode = string(dataFields["mode"], "data.mode", required: false)
                data.material = string(dataFields["material"], "data.material", required: false)
                data.distanceMeters = quantity(dataFields["distance_m"], "data.distance_m")
                data.weightGrams = quantity(dataFields["weight_g"], "data.weight_g")
                data.count = quantity(dataFields["count"], "data.count")
                data.consumptionWh = quantity(dataFields["consumption_wh"], "data.consumption_wh")
                data.baselineWh = quantity(dataFields["baseline_wh"], "data.baseline_wh")
                data.days = quantity(dataFields["days"], "data.days")
                data.district = string(dataFields["district"], "data.district", required: false)
            } else {
                bad("data", "data must be an object")
            }
        }

        var evidence: Evidence?
        if let raw = fields["evidence"], raw != .null {
            if case .object(let evidenceFields) = raw {
                for key in evidenceFields.keys.sorted() where key != "source" && key != "ref" {
                    bad("evidence.\(key)", "unknown field evidence.\(key)")
                }
                let source = string(evidenceFields["source"], "evidence.source", required: true)
                let ref = string(evidenceFields["ref"], "evidence.ref", required: true)
                if let source, let ref {
                    if source.isEmpty || ref.isEmpty { bad("evidence", "evidence source and ref must not be empty") }
                    evidence = Evidence(source: source, ref: ref)
                }
            } else {
                bad("evidence", "evidence must be an object with source and ref")
            }
        }

        guard issues.isEmpty, let id, let kind, let province, let occurred else { return .failure(EventInvalid(issues: issues)) }
        let event = ActionEvent(id: id, kind: kind, province: province, occurredAt: occurred.0, endedAt: ended?.0, data: data)
        let shapeIssues = event.validateShape()
        guard shapeIssues.isEmpty else { return .failure(EventInvalid(issues: shapeIssues)) }
        return .success(EventWire(event: event, evidence: evidence, occurredAtText: occurred.1, endedAtText: ended?.1))
    }

    /// Decodes one JSON document holding a single event.
    package static func decode(json: Data) -> Result<EventWire, EventInvalid> {
        guard let value = try? JSONValue.parse(json) else {
            return .failure(EventInvalid(issues: [ValidationIssue(path: "", code: .invalid, message: "not valid JSON")]))
        }
        return decode(value)
    }
}
