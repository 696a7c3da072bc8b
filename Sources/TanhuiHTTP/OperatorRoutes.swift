import Foundation
import Hummingbird
import NIOCore
import NIOFoundationEssentialsCompat
import TanhuiCore
import TanhuiService

/// Routes for province operators under `/v1/provinces/{code}/…`, authenticated with an
/// operator API key (`Authorization: Bearer thk_…`) scoped to provinces.
enum OperatorRoutes {
    /// Rule-set documents are at most 256 KiB (the parser's limit too).
    static let maximumDocumentBytes = 256 * 1024
    static let maximumSimulatedEvents = 10_000
    static let documentMediaTypes: Set<String> = ["application/yaml", "application/x-yaml", "text/yaml", "application/json", "text/plain"]

    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices) {
        let province = router.group("v1/provinces/:province")
            .add(middleware: OperatorKeyMiddleware(operators: services.operators))

        province.get("rulesets") { _, context -> RuleSetList in
            RuleSetList(ruleSets: try await services.ruleSets.list(province: try context.province))
        }

        province.post("rulesets") { request, context -> EditedResponse<RuleSetSummary> in
            let document = try await readDocument(request, province: try context.province)
            let identity = context.operatorIdentity!
            let outcome = try await services.ruleSets.publish(
                document: document,
                publishedBy: "operator \(identity.name) (\(identity.id.uuidString.lowercased()))",
                allowedProvinces: [try context.province], directBy: identity
            )
            return EditedResponse(status: .created, response: outcome.summary)
        }

        province.post("rulesets/validate") { request, context -> ValidationResult in
            let document = try await readDocument(request, province: try context.province)
            let ruleSet = try await services.ruleSets.validate(document: document)
            return ValidationResult(valid: true, province: ruleSet.province, version: ruleSet.version)
        }

        province.get("rulesets/:version") { _, context -> StoredRuleSetBody in
            guard let version = context.parameters.get("version", as: Int.self) else {
                throw Problem(.badRequest, code: "bad_version", detail: "version must be an integer")
            }
            let stored = try await services.ruleSets.show(province: try context.province, version: version)
            return StoredRuleSetBody(summary: stored.summary, format: stored.format, document: stored.document)
        }

        province.post("rulesets/simulate") { request, context -> SimulationBody in
            try await simulate(request, context: context, services: services)
        }

        // An operator corrects an award of their province with a full, mirroring reversal.
        province.post("events/:event/reversal") { request, context -> EditedResponse<ReversalBody> in
            guard let eventID = context.parameters.get("event").flatMap(UUID.init(uuidString:)) else {
                throw Problem(.notFound, code: "not_found", detail: "event id must be a UUID")
            }
            let body = try await collect(request, limit: 16 * 1024)
            guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any], let reason = object["reason"] as? String
            else {
                throw Problem(.badRequest, code: "malformed_json", detail: "send {\"reason\": \"…\"}")
            }
            let identity = context.operatorIdentity!
            // Looked up in the path's province only (already checked against the key's scope).
            let record = try await services.ledger.reverse(
                event: eventID, province: try context.province, reason: reason,
                actor: "operator \(identity.name) (\(identity.id.uuidString.lowercased()))"
            )
            return EditedResponse(
                status: .created,
                response: ReversalBody(
                    province: record.province, transactionID: record.transactionID, eventID: record.eventID.uuidString.lowercased(),
                    points: record.points, gramsCO2e: record.gramsCO2e))
        }
    }

    /// Reads a rule-set document body, checking media type and size, and that it is for the
    /// province in the path.
    static func readDocument(_ request: Request, province: String) async throws -> String {
        let mediaType = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        guard documentMediaTypes.contains(mediaType) else {
            throw Problem(.unsupportedMediaType, code: "unsupported_media_type", detail: "send the rule set as application/yaml or application/json")
        }
        let body = try await collect(request, limit: maximumDocumentBytes)
        guard let document = String(bytes: body.readableBytesView, encoding: .utf8) else {
            throw Problem(
                .unprocessableContent, code: "invalid_rule_set", detail: "the document is not UTF-8",
                errors: [.init(path: "", code: "not_utf8", message: "the document is not UTF-8")])
        }
        // The document's own province must be the one the route (and key) is for.
        if let ruleSet = try? RuleSetParser.parse(document), ruleSet.province != province {
            throw Problem(
                .unprocessableContent, code: "invalid_rule_set", detail: "the document is for \(ruleSet.province), not \(province)",
                errors: [
                    .init(path: "province", code: "province_mismatch", message: "document province \(ruleSet.province) does not match \(province)")
                ])
        }
        return document
    }

    static func collect(_ request: Request, limit: Int) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw Problem(.contentTooLarge, code: "too_large", detail: "the body is larger than \(limit) bytes")
        }
    }

    static func simulate(_ request: Request, context: TanhuiRequestContext, services: TanhuiServices) async throws -> SimulationBody {
        let province = try context.province
        let body = try await collect(request, limit: context.maximumBodyBytes)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw Problem(.badRequest, code: "malformed_json", detail: "the body must be a JSON object with events and ruleset_version or document")
        }
        guard let events = object["events"] as? [Any] else {
            throw Problem(.badRequest, code: "malformed_json", detail: "events must be an array")
        }
        guard events.count <= maximumSimulatedEvents else {
            throw Problem(.contentTooLarge, code: "too_many_events", detail: "at most \(maximumSimulatedEvents) events per simulation")
        }
        let ruleSet: RuleSet
        // Exactly one of the two, of its own type: a draft sent beside a version (or in the
        // wrong shape) must not be silently ignored while the published version is simulated.
        guard (object["ruleset_version"] == nil) != (object["document"] == nil) else {
            throw Problem(
                .badRequest, code: "malformed_json",
                detail: "give exactly one of ruleset_version (a published version) or document (a rule set to try)")
        }
        if let value = object["ruleset_version"] {
            // Through JSONValue: a bridged `true` is also `as? Int` 1. JSON Schema's integer
            // includes 17730.0 and 1.773e4, so an integral number in any spelling is accepted.
            let number: Decimal? = if case .number(let text)? = JSONValue(any: value) { Decimal(string: text) } else { nil }
            let candidate = number.map { NSDecimalNumber(decimal: $0).intValue }
            guard let number, let candidate, Decimal(candidate) == number, (1...Int(Int32.max)).contains(candidate) else {
                throw Problem(.badRequest, code: "malformed_json", detail: "ruleset_version must be an integer from 1 to 2147483647")
            }
            let version = candidate
            ruleSet = try await services.ruleSets.ruleSet(province: province, version: version)
        } else if let document = object["document"] as? String {
            do {
                ruleSet = try RuleSetParser.parse(document)
            } catch {
                throw RuleSetRejected(issues: error.issues)
            }
            guard ruleSet.province == province else { throw RuleSetLookupError.forbidden(province: ruleSet.province) }
        } else {
            throw Problem(.badRequest, code: "malformed_json", detail: "document must be a string (the YAML or JSON text of a rule set)")
        }
        var receivedAt: Date?
        if let text = object["received_at"] {
            guard let text = text as? String, let date = Timestamp.parse(text) else {
                throw Problem(.badRequest, code: "malformed_json", detail: "received_at must be an RFC 3339 timestamp with a UTC offset")
            }
            receivedAt = date
        }
        // Whose events: a citizen's device (self-reported, the default) or a feed partner's records.
        var source = SimulationSource.device
        if let value = object["source"] {
            guard let text = value as? String, let named = SimulationSource(rawValue: text) else {
                throw Problem(.badRequest, code: "malformed_json", detail: "source must be \"device\" or \"partner\"")
            }
            source = named
        }
        let report = RuleSetService.simulate(ruleSet: ruleSet, events: events.map(EventWire.decode), receivedAt: receivedAt, source: source)
        return SimulationBody(report: report, ruleSet: ruleSet, source: source)
    }
}

/// Authenticates the operator key and checks it covers the province in the path.
struct OperatorKeyMiddleware: RouterMiddleware {
    let operators: OperatorService

    func handle(
        _ request: Request, context: TanhuiRequestContext, next: (Request, TanhuiRequestContext) async throws -> Response
    ) async throws -> Response {
        guard let key = request.bearerCredential else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "send an operator key as Authorization: Bearer thk_…")
        }
        guard let identity = try await operators.authenticate(key: key) else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "unknown or revoked operator key")
        }
        let province = try context.province
        guard identity.provinces.contains(province) else {
            throw Problem(.forbidden, code: "forbidden", detail: "this key may not act for \(province)")
        }
        var context = context
        context.operatorIdentity = identity
        return try await next(request, context)
    }
}

extension TanhuiRequestContext {
    /// The `{province}` path parameter, checked to be a known ISO 3166-2:CN code.
    var province: String {
        get throws {
            guard let code = parameters.get("province"), Province.isKnown(code) else {
                throw Problem(.notFound, code: "unknown_province", detail: "unknown province; use ISO 3166-2:CN codes such as CN-GD")
            }
            return code
        }
    }
}

struct ReversalBody: ResponseEncodable {
    let province: String
    let transactionID: Int64
    let eventID: String
    let points: Int64
    let gramsCO2e: Int64

    enum CodingKeys: String, CodingKey {
        case province, points
        case transactionID = "transaction_id"
        case eventID = "event_id"
        case gramsCO2e = "grams_co2e"
    }
}

struct RuleSetList: ResponseEncodable {
    let ruleSets: [RuleSetSummary]
    enum CodingKeys: String, CodingKey { case ruleSets = "rule_sets" }
}

extension RuleSetSummary: ResponseEncodable {}

struct ValidationResult: ResponseEncodable {
    let valid: Bool
    let province: String
    let version: Int
}

struct StoredRuleSetBody: ResponseEncodable {
    let summary: RuleSetSummary
    let format: String
    let document: String
}

/// The JSON form of a dry run.
struct SimulationBody: ResponseEncodable {
    struct AwardBody: Encodable {
        let gramsCO2e: Int64
        let points: Int64
        let pointsBeforeCaps: Int64
        let capped: Bool
        let capsApplied: [String]
        let campaign: String?
        let multiplier: String
        /// The lot's expiry under the version's `points_validity`, if it sets one.
        let expiresAt: String?
        enum CodingKeys: String, CodingKey {
            case points, capped, campaign, multiplier
            case expiresAt = "expires_at"
            case gramsCO2e = "grams_co2e"
            case pointsBeforeCaps = "points_before_caps"
            case capsApplied = "caps_applied"
        }
    }

    struct Result: Encodable {
        let id: String
        let status: String
        let code: String?
        let message: String?
        let award: AwardBody?
        let errors: [Problem.FieldError]?
    }

    struct Totals: Encodable {
        let accepted: Int
        let rejected: Int
        let invalid: Int
        let gramsCO2e: Int64
        let points: Int64
        enum CodingKeys: String, CodingKey {
            case accepted, rejected, invalid, points
            case gramsCO2e = "grams_co2e"
        }
    }

    let province: String
    let version: Int
    /// `device` or `partner`: whose events were simulated.
    let source: String
    let results: [Result]
    let totals: Totals

    init(report: SimulationReport, ruleSet: RuleSet, source: SimulationSource) {
        province = ruleSet.province
        version = ruleSet.version
        self.source = source.rawValue
        results = report.lines.map { line in
            switch line.evaluation {
            case .accepted(let award):
                return Result(
                    id: line.eventID, status: "accepted", code: nil, message: nil,
                    award: AwardBody(
                        gramsCO2e: award.gramsCO2e, points: award.pointsAwarded, pointsBeforeCaps: award.pointsBeforeCaps,
                        capped: award.capped, capsApplied: award.capsApplied.map(\.key), campaign: award.campaign,
                        multiplier: award.multiplier.description, expiresAt: award.lotExpiresAtMs.map { Timestamp.textUTC(milliseconds: $0) }),
                    errors: nil)
            case .rejected(let rejection):
                return Result(
                    id: line.eventID, status: "rejected", code: rejection.code.rawValue, message: rejection.message, award: nil, errors: nil)
            case nil:
                return Result(
                    id: line.eventID, status: "rejected", code: "invalid", message: "the event is malformed", award: nil,
                    errors: line.invalid.map { Problem.FieldError($0) })
            }
        }
        totals = Totals(
            accepted: report.accepted, rejected: report.rejected, invalid: report.invalid, gramsCO2e: report.gramsCO2e, points: report.points)
    }
}
