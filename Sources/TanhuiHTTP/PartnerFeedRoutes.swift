import Foundation
import Hummingbird
import NIOCore
import TanhuiCore
import TanhuiService

/// Partner feeds: citizens' devices request link codes and manage their links; feed partners
/// confirm links and upload signed records, judged by the push path.
enum PartnerFeedRoutes {
    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices, tokens: DeviceTokens) {
        let feeds = services.partnerFeeds
        let device = router.group("v1/sync").add(middleware: DeviceTokenMiddleware(tokens: tokens))

        device.post("link-codes") { request, context -> EditedResponse<LinkCodeBody> in
            let claims = context.device!
            let object = try await SyncRoutes.readJSON(request, context: context)
            guard case .object(let fields) = object, Set(fields.keys).isSubset(of: ["partner", "scene"]),
                case .string(let partnerText)? = object["partner"], let partner = UUID(uuidString: partnerText),
                case .string(let scene)? = object["scene"]
            else {
                throw Problem(.badRequest, code: "malformed_request", detail: "send {\"partner\": \"<partner uuid>\", \"scene\": \"…\"}")
            }
            do {
                let code = try await feeds.requestLinkCode(citizen: claims.citizen, device: claims.device, partner: partner, scene: scene)
                return EditedResponse(status: .created, response: LinkCodeBody(code))
            } catch let error as PartnerFeedError {
                throw problem(error)
            }
        }

        device.get("links") { _, context -> LinksBody in
            LinksBody(links: try await feeds.links(citizen: context.device!.citizen).map(LinkBody.init))
        }

        device.delete("links/:link") { _, context -> LinkBody in
            let claims = context.device!
            guard let id = context.parameters.get("link").flatMap(UUID.init(uuidString:)),
                let link = try await feeds.revokeLink(citizen: claims.citizen, device: claims.device, link: id)
            else { throw Problem(.notFound, code: "no_link", detail: "no link with this id belongs to this citizen") }
            return LinkBody(link)
        }

        let partner = router.group("v1/provinces/:province/partners/:partner")
            .add(middleware: PartnerKeyMiddleware(partners: services.partners, scope: .feed))
            .add(middleware: OwnPartnerMiddleware())

        addReceipts(to: partner, services: services)

        partner.post("links") { request, context -> EditedResponse<PartnerLinkBody> in
            let object = try await SyncRoutes.readJSON(request, context: context)
            guard case .object(let fields) = object, Set(fields.keys).isSubset(of: ["link_code", "subject"]),
                case .string(let code)? = object["link_code"], case .string(let subject)? = object["subject"]
            else {
                throw Problem(.badRequest, code: "malformed_request", detail: "send {\"link_code\": \"…\", \"subject\": \"<your user id>\"}")
            }
            do {
                let link = try await feeds.confirmLink(partner: context.partner!, code: code, subject: subject)
                return EditedResponse(status: .created, response: PartnerLinkBody(link))
            } catch let error as PartnerFeedError {
                throw problem(error)
            }
        }

        partner.post("records") { request, context -> RecordsResponse in
            let caller = context.partner!
            let mediaType = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard mediaType == "application/json" else {
                throw Problem(.unsupportedMediaType, code: "unsupported_media_type", detail: "send application/json")
            }
            if let encoding = request.headers[.contentEncoding]?.lowercased(), encoding != "identity" {
                throw Problem(.unsupportedMediaType, code: "unsupported_encoding", detail: "records are signed as sent: send them uncompressed")
            }
            let limit = context.maximumBodyBytes
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: limit)
            } catch is NIOTooManyBytesError {
                throw Problem.limits(
                    .contentTooLarge, code: "body_too_large", detail: "the body is larger than \(limit) bytes; split the upload",
                    maximumBodyBytes: limit)
            }
            // The signature covers the exact bytes and is checked before anything is parsed.
            let profile = try await feeds.profile(province: caller.province, partner: caller.id)
            let signed = body.withUnsafeReadableBytes { bytes in
                PartnerFeedService.verify(signature: request.headers[.init("Tanhui-Signature")!], body: bytes, signingKey: profile.signingKey)
            }
            guard signed else {
                throw Problem(
                    .unauthorized, code: "bad_signature",
                    detail: "sign the exact body with the partner's registered Ed25519 key and send Tanhui-Signature: ed25519=<base64>")
            }
            guard let object = try? body.withUnsafeReadableBytes({ try JSONValue.parse($0) }), case .object(let fields) = object,
                Set(fields.keys).isSubset(of: ["records"]), case .array(let records)? = object["records"]
            else {
                throw Problem(.badRequest, code: "malformed_json", detail: "the body must be a JSON object {\"records\": […]}")
            }
            guard records.count <= PartnerFeedService.maximumRecordsPerUpload else {
                throw Problem.limits(
                    .contentTooLarge, code: "too_many_records",
                    detail: "at most \(PartnerFeedService.maximumRecordsPerUpload) records per upload; split it", maximumBodyBytes: limit)
            }
            let receivedAt = Date()
            let verdicts = try await feeds.ingest(partner: caller, records: records, receivedAt: receivedAt)
            return RecordsResponse(
                serverTime: receivedAt,
                results: verdicts.map { verdict in
                    var body = VerdictBody(verdict.verdict)
                    body.id = verdict.recordID ?? ""
                    return RecordVerdictBody(body)
                })
        }
    }

    static func addReceipts(to partner: RouterGroup<TanhuiRequestContext>, services: TanhuiServices) {
        partner.get("receipts") { request, context -> ReceiptBody in
            let caller = context.partner!
            guard let date = request.uri.queryParameters.get("date").map({ String($0) }), PartnerReceipt.parseDate(date) != nil else {
                throw Problem(.badRequest, code: "bad_date", detail: "date must be a day YYYY-MM-DD (UTC) between 2000 and 2099")
            }
            guard let key = services.config.checkpointKey else {
                throw Problem(
                    .serviceUnavailable, code: "no_checkpoint_key", detail: "this server has no TANHUI_CHECKPOINT_KEY to sign receipts with",
                    retryAfterSeconds: 60)
            }
            guard let receipt = try await services.partnerFeeds.receipt(province: caller.province, partner: caller.id, date: date, checkpointKey: key)
            else { throw Problem(.badRequest, code: "bad_date", detail: "date must be a day YYYY-MM-DD") }
            return ReceiptBody(receipt)
        }
    }

    static func problem(_ error: PartnerFeedError) -> Problem {
        switch error {
        case .unknownPartner: return Problem(.notFound, code: "unknown_partner", detail: error.description)
        case .unknownLinkCode: return Problem(.notFound, code: "unknown_link_code", detail: error.description)
        case .subjectLinked: return Problem(.conflict, code: "subject_linked", detail: error.description)
        case .tooManyLinkCodes: return Problem(.tooManyRequests, code: "too_many_link_codes", detail: error.description, retryAfterSeconds: 600)
        case .invalidScene, .invalidSubject: return Problem(.badRequest, code: "malformed_request", detail: error.description)
        case .invalidSigningKey, .invalidKind, .invalidEvidenceSource, .evidenceSourceOwned:
            return Problem(.badRequest, code: "malformed_request", detail: error.description)
        }
    }
}

/// The path's `{partner}` must be the key's own partner: a partner acts for itself only.
struct OwnPartnerMiddleware: RouterMiddleware {
    func handle(
        _ request: Request, context: TanhuiRequestContext, next: (Request, TanhuiRequestContext) async throws -> Response
    ) async throws -> Response {
        guard let id = context.parameters.get("partner").flatMap(UUID.init(uuidString:)), id == context.partner?.id else {
            throw Problem(.forbidden, code: "forbidden", detail: "this key acts for its own partner id only")
        }
        return try await next(request, context)
    }
}

struct LinkCodeBody: ResponseEncodable {
    let code: String
    let province: String
    let partner: String
    let partnerName: String
    let scene: String
    let expiresAt: Date

    init(_ code: LinkCode) {
        self.code = code.code
        province = code.province
        partner = code.partnerID.uuidString.lowercased()
        partnerName = code.partnerName
        scene = code.scene
        expiresAt = code.expiresAt
    }

    enum CodingKeys: String, CodingKey {
        case code, province, partner, scene
        case partnerName = "partner_name"
        case expiresAt = "expires_at"
    }
}

/// A link as the citizen sees it.
struct LinkBody: ResponseEncodable {
    let id: String
    let province: String
    let partner: String
    let partnerName: String
    let subject: String
    let scene: String
    let grantedAt: Date
    let revokedAt: Date?

    init(_ link: PartnerLink) {
        id = link.id.uuidString.lowercased()
        province = link.province
        partner = link.partnerID.uuidString.lowercased()
        partnerName = link.partnerName
        subject = link.subject
        scene = link.scene
        grantedAt = link.grantedAt
        revokedAt = link.revokedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, province, partner, subject, scene
        case partnerName = "partner_name"
        case grantedAt = "granted_at"
        case revokedAt = "revoked_at"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(province, forKey: .province)
        try container.encode(partner, forKey: .partner)
        try container.encode(partnerName, forKey: .partnerName)
        try container.encode(subject, forKey: .subject)
        try container.encode(scene, forKey: .scene)
        try container.encode(grantedAt, forKey: .grantedAt)
        try container.encode(revokedAt, forKey: .revokedAt)
    }
}

struct LinksBody: ResponseEncodable {
    let links: [LinkBody]
}

/// A link as the partner sees it: never the citizen's id.
struct PartnerLinkBody: ResponseEncodable {
    let id: String
    let province: String
    let partner: String
    let subject: String
    let scene: String
    let grantedAt: Date

    init(_ link: PartnerLink) {
        id = link.id.uuidString.lowercased()
        province = link.province
        partner = link.partnerID.uuidString.lowercased()
        subject = link.subject
        scene = link.scene
        grantedAt = link.grantedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, province, partner, subject, scene
        case grantedAt = "granted_at"
    }
}

/// One record's verdict: the push verdict with `record_id` for `id`.
struct RecordVerdictBody: Encodable {
    let verdict: VerdictBody

    init(_ verdict: VerdictBody) { self.verdict = verdict }

    enum CodingKeys: String, CodingKey {
        case recordID = "record_id"
        case status, code, message, award, errors
        case originalStatus = "original_status"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(verdict.id, forKey: .recordID)
        try container.encode(verdict.status, forKey: .status)
        try container.encodeIfPresent(verdict.code, forKey: .code)
        try container.encodeIfPresent(verdict.message, forKey: .message)
        try container.encodeIfPresent(verdict.award, forKey: .award)
        try container.encodeIfPresent(verdict.originalStatus, forKey: .originalStatus)
        try container.encodeIfPresent(verdict.errors, forKey: .errors)
    }
}

struct RecordsResponse: ResponseEncodable {
    let serverTime: Date
    let results: [RecordVerdictBody]

    enum CodingKeys: String, CodingKey {
        case results
        case serverTime = "server_time"
    }
}

/// A signed day's receipt: the figures, and the note whose text the signature covers.
struct ReceiptBody: ResponseEncodable {
    let province: String
    let partner: String
    let date: String
    let records: Int64
    let accepted: Int64
    let conflict: Int64
    let rejected: Int64
    let gramsCO2e: Int64
    let points: Int64
    let digest: String
    let key: String
    let signature: String
    let note: String

    init(_ receipt: PartnerReceipt) {
        province = receipt.province
        partner = receipt.partnerID.uuidString.lowercased()
        date = receipt.date
        records = receipt.records
        accepted = receipt.accepted
        conflict = receipt.conflict
        rejected = receipt.rejected
        gramsCO2e = receipt.gramsCO2e
        points = receipt.points
        digest = receipt.digest
        key = receipt.publicKey.base64EncodedString()
        signature = receipt.signature.base64EncodedString()
        note = receipt.note
    }

    enum CodingKeys: String, CodingKey {
        case province, partner, date, records, accepted, conflict, rejected, points, digest, key, signature, note
        case gramsCO2e = "grams_co2e"
    }
}
