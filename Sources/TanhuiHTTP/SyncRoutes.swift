import CompressNIO
import Foundation
import Hummingbird
import NIOCore
import TanhuiCore
import TanhuiService

/// The sync API for citizens' devices: push batches, pull ledger changes, reconcile verdicts.
/// The citizen and device come only from the bearer token.
enum SyncRoutes {
    static let maximumStatusIDs = 500
    static let defaultPullLimit = 200

    static func add(
        to router: Router<TanhuiRequestContext>, services: TanhuiServices, tokens: DeviceTokens, metrics: TanhuiMetrics, cursorSecret: [UInt8]
    ) {
        let sync = router.group("v1/sync").add(middleware: DeviceTokenMiddleware(tokens: tokens))

        sync.post("push") { request, context -> PushResponse in
            let device = context.device!
            let object = try await readJSON(request, context: context)
            var sentAt: Date?
            if let value = object["sent_at"], value != .null {
                guard case .string(let text) = value, let date = Timestamp.parse(text) else {
                    throw Problem(.badRequest, code: "malformed_request", detail: "sent_at must be an RFC 3339 timestamp with a UTC offset")
                }
                sentAt = date
            }
            guard case .array(let events) = object["events"] else {
                throw Problem(.badRequest, code: "malformed_request", detail: "events must be an array")
            }
            guard events.count <= LedgerService.maximumBatchSize else {
                throw Problem.limits(
                    .contentTooLarge, code: "too_many_events", detail: "at most \(LedgerService.maximumBatchSize) events per push; split the batch",
                    maximumBodyBytes: context.maximumBodyBytes)
            }
            let items: [SubmissionItem] = events.map { raw in
                switch EventWire.decode(raw) {
                case .success(let wire): return .event(wire)
                case .failure(let invalid): return .invalid(id: Self.idText(raw), issues: invalid.issues)
                }
            }
            let receivedAt = Date()
            let submission = try await services.ledger.push(
                items, citizen: device.citizen, device: device.device, receivedAt: receivedAt, sentAt: sentAt)
            submission.verdicts.forEach(metrics.record)
            // Echo each id exactly as the client sent it, so clients match results by string.
            let sentIDs = events.map(Self.idText)
            var bodies = submission.verdicts.map(VerdictBody.init)
            for index in bodies.indices { if let sent = sentIDs[index] { bodies[index].id = sent } }
            // No cursor here: entries of the citizen's other devices may lie between the
            // device's last pull and this push, so only pull hands out positions.
            return PushResponse(
                serverTime: receivedAt,
                balances: submission.balances.map { BalanceBody(province: $0.province, points: $0.points, gramsCO2e: $0.gramsCO2e) },
                results: bodies
            )
        }

        sync.get("pull") { request, context -> PullResponse in
            let device = context.device!
            let limitText = request.uri.queryParameters.get("limit")
            let limit = limitText.map { Int($0) } ?? defaultPullLimit
            guard let limit, (1...(LedgerService.maximumPage - 1)).contains(limit) else {
                throw Problem(.badRequest, code: "bad_limit", detail: "limit must be an integer in 1…\(LedgerService.maximumPage - 1)")
            }
            var start = LedgerService.PullStart.beginning
            if let text = request.uri.queryParameters.get("cursor"), !text.isEmpty {
                start =
                    PullCursor.decode(String(text), citizen: device.citizen, secret: cursorSecret).map(LedgerService.PullStart.cursor) ?? .unreadable
            }
            let page = try await services.ledger.pull(citizen: device.citizen, from: start, limit: limit)
            return PullResponse(page: page, citizen: device.citizen, secret: cursorSecret)
        }

        sync.post("status") { request, context -> StatusResponse in
            let device = context.device!
            let object = try await readJSON(request, context: context)
            guard case .array(let raw) = object["ids"] else {
                throw Problem(.badRequest, code: "malformed_request", detail: "ids must be an array of event ids")
            }
            guard raw.count <= maximumStatusIDs else {
                throw Problem.limits(
                    .contentTooLarge, code: "too_many_ids", detail: "at most \(maximumStatusIDs) ids per request",
                    maximumBodyBytes: context.maximumBodyBytes)
            }
            let texts = raw.map { value -> String in if case .string(let text) = value { text } else { "" } }
            let ids = texts.compactMap(UUID.init(uuidString:))
            let found = try await services.ledger.verdicts(citizen: device.citizen, ids: ids)
            return StatusResponse(
                results: texts.map { text in
                    if let id = UUID(uuidString: text), let verdict = found[id] { return VerdictBody(verdict) }
                    return VerdictBody(
                        id: text, status: "unknown", code: nil,
                        message: "no verdict stored for this id (never received, or malformed and so not stored)", award: nil, originalStatus: nil,
                        errors: nil)
                })
        }
    }

    /// The `id` member of an item, exactly as sent, when it is a string.
    static func idText(_ value: JSONValue) -> String? {
        if case .string(let text)? = value["id"] { text } else { nil }
    }

    /// Reads a JSON object body: media type, gzip, size limits, then parsing (straight from
    /// the bytes into `JSONValue`, no `Any`).
    static func readJSON(_ request: Request, context: TanhuiRequestContext) async throws -> JSONValue {
        let mediaType = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard mediaType == "application/json" else {
            throw Problem(.unsupportedMediaType, code: "unsupported_media_type", detail: "send application/json")
        }
        let limit = context.maximumBodyBytes
        var body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw Problem.limits(
                .contentTooLarge, code: "body_too_large", detail: "the body is larger than \(limit) bytes; split the batch", maximumBodyBytes: limit)
        }
        switch request.headers[.contentEncoding]?.lowercased() {
        case nil, "identity":
            break
        case "gzip":
            do {
                body = try body.decompress(with: .gzip(), maxSize: limit)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                throw Problem.limits(
                    .contentTooLarge, code: "body_too_large", detail: "the decompressed body is larger than \(limit) bytes; split the batch",
                    maximumBodyBytes: limit)
            } catch {
                throw Problem(.badRequest, code: "malformed_request", detail: "the gzip body could not be decompressed")
            }
        default:
            throw Problem(.unsupportedMediaType, code: "unsupported_encoding", detail: "Content-Encoding must be gzip or identity")
        }
        guard let object = try? body.withUnsafeReadableBytes({ try JSONValue.parse($0) }), case .object = object else {
            throw Problem(.badRequest, code: "malformed_json", detail: "the body is not a JSON object")
        }
        return object
    }

}

extension Problem {
    /// A 413 that tells clients the limits, so they can split and resend.
    static func limits(_ status: HTTPResponse.Status, code: String, detail: String, maximumBodyBytes: Int) -> Problem {
        var problem = Problem(status, code: code, detail: detail)
        problem.limits = Limits(
            maxEventsPerPush: LedgerService.maximumBatchSize, maxBodyBytes: maximumBodyBytes, maxStatusIDs: SyncRoutes.maximumStatusIDs)
        return problem
    }
}

/// Authenticates `Authorization: Bearer <device JWT>`.
struct DeviceTokenMiddleware: RouterMiddleware {
    let tokens: DeviceTokens

    func handle(
        _ request: Request, context: TanhuiRequestContext, next: (Request, TanhuiRequestContext) async throws -> Response
    ) async throws -> Response {
        guard let credential = request.bearerCredential, let claims = await tokens.verify(credential) else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "send a valid, unexpired device token as Authorization: Bearer …")
        }
        var context = context
        context.device = claims
        return try await next(request, context)
    }
}

// MARK: Bodies

struct AwardBody: Encodable {
    let gramsCO2e: Int64
    let points: Int64
    let ruleset: RuleSetRef
    let capped: Bool

    struct RuleSetRef: Encodable {
        let province: String
        let version: Int
    }

    enum CodingKeys: String, CodingKey {
        case points, ruleset, capped
        case gramsCO2e = "grams_co2e"
    }
}

struct VerdictBody: Encodable {
    var id: String
    let status: String
    let code: String?
    let message: String?
    let award: AwardBody?
    let originalStatus: String?
    let errors: [Problem.FieldError]?

    enum CodingKeys: String, CodingKey {
        case id, status, code, message, award, errors
        case originalStatus = "original_status"
    }

    init(id: String, status: String, code: String?, message: String?, award: AwardBody?, originalStatus: String?, errors: [Problem.FieldError]?) {
        self.id = id
        self.status = status
        self.code = code
        self.message = message
        self.award = award
        self.originalStatus = originalStatus
        self.errors = errors
    }

    init(_ verdict: Verdict) {
        self.init(
            id: verdict.id, status: verdict.status.rawValue, code: verdict.code, message: verdict.message,
            award: verdict.award.map {
                AwardBody(
                    gramsCO2e: $0.gramsCO2e, points: $0.points, ruleset: .init(province: $0.province, version: $0.ruleSetVersion), capped: $0.capped)
            },
            originalStatus: verdict.originalStatus?.rawValue,
            errors: verdict.errors.isEmpty ? nil : verdict.errors.map { Problem.FieldError($0) }
        )
    }
}

struct PushResponse: ResponseEncodable {
    let serverTime: Date
    let balances: [BalanceBody]
    let results: [VerdictBody]

    enum CodingKeys: String, CodingKey {
        case balances, results
        case serverTime = "server_time"
    }
}

struct BalanceBody: Encodable {
    let province: String
    let points: Int64
    let gramsCO2e: Int64
    /// Pull only: what the citizen may spend (= points) and what partners hold.
    var available: Int64?
    var held: Int64?
    /// Pull only: the next expiry instants of the citizen's lots.
    var expiring: [ExpiringBody]?

    struct ExpiringBody: Encodable {
        let expiresAt: Date
        let points: Int64
        enum CodingKeys: String, CodingKey {
            case points
            case expiresAt = "expires_at"
        }
    }

    enum CodingKeys: String, CodingKey {
        case province, points, available, held, expiring
        case gramsCO2e = "grams_co2e"
    }
}

struct EntryBody: Encodable {
    let province: String
    let seq: Int64
    let kind: String
    let eventID: String
    let points: Int64
    let gramsCO2e: Int64
    let rulesetVersion: Int
    let createdAt: Date
    let reason: String?

    enum CodingKeys: String, CodingKey {
        case province, seq, kind, points, reason
        case eventID = "event_id"
        case gramsCO2e = "grams_co2e"
        case rulesetVersion = "ruleset_version"
        case createdAt = "created_at"
    }
}

struct PullResponse: ResponseEncodable {
    let entries: [EntryBody]
    let balances: [BalanceBody]
    let nextCursor: String
    let hasMore: Bool
    let reset: Bool

    enum CodingKeys: String, CodingKey {
        case entries, balances, reset
        case nextCursor = "next_cursor"
        case hasMore = "has_more"
    }

    init(page: PullPage, citizen: UUID, secret: [UInt8]) {
        entries = page.lines.map {
            EntryBody(
                province: $0.province, seq: $0.citizenSeq, kind: $0.kind, eventID: $0.eventID.uuidString.lowercased(), points: $0.points,
                gramsCO2e: $0.gramsCO2e, rulesetVersion: $0.ruleSetVersion, createdAt: $0.createdAt, reason: $0.reason)
        }
        balances = page.balances.map {
            BalanceBody(
                province: $0.province, points: $0.points, gramsCO2e: $0.gramsCO2e, available: $0.points, held: $0.heldPoints,
                expiring: $0.expiring.map { BalanceBody.ExpiringBody(expiresAt: $0.expiresAt, points: $0.points) })
        }
        nextCursor = page.next.encode(citizen: citizen, secret: secret)
        hasMore = page.hasMore
        reset = page.reset
    }
}

struct StatusResponse: ResponseEncodable {
    let results: [VerdictBody]
}
