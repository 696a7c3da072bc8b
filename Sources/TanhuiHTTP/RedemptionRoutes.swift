import Foundation
import Hummingbird
import TanhuiCore
import TanhuiService

/// Spending points: a device asks for a redeem token, a partner holds, captures, voids and
/// refunds against it, an operator defines offers.
enum RedemptionRoutes {
    static let maximumBodyBytes = 16 * 1024

    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices, tokens: DeviceTokens) {
        router.group("v1/sync/redeem-tokens").add(middleware: DeviceTokenMiddleware(tokens: tokens))
            .post { request, context -> EditedResponse<RedeemTokenBody> in
                let object = try await readBody(request, context: context)
                guard case .string(let province)? = object["province"], Province.isKnown(province) else {
                    throw Problem(.badRequest, code: "malformed_request", detail: "province must be a known province code such as CN-GD")
                }
                let offer = try optionalUUID(object, "offer_id")
                let token = try await mapped {
                    try await services.redemptions.issueToken(citizen: context.device!.citizen, province: province, offer: offer)
                }
                return EditedResponse(status: .created, response: RedeemTokenBody(token))
            }

        let partner = router.group("v1/provinces/:province/redemptions")
            .add(middleware: PartnerKeyMiddleware(partners: services.partners, scope: .redeem))

        partner.post { request, context -> EditedResponse<RedemptionBody> in
            let object = try await readBody(request, context: context)
            guard let id = try optionalUUID(object, "id") else {
                throw Problem(.badRequest, code: "malformed_request", detail: "id (a UUID) is required")
            }
            guard case .string(let token)? = object["redeem_token"] else {
                throw Problem(.badRequest, code: "malformed_request", detail: "redeem_token (the token the citizen shows) is required")
            }
            let offer = try optionalUUID(object, "offer_id")
            let points = try optionalInteger(object, "points")
            let holdSeconds = try optionalInteger(object, "hold_seconds").map { Int(clamping: $0) } ?? RedemptionService.maximumHoldSeconds
            var partnerRef: String?
            switch object["partner_ref"] {
            case nil: partnerRef = nil
            case .string(let text)?: partnerRef = text
            default: throw Problem(.badRequest, code: "malformed_request", detail: "partner_ref must be a string")
            }
            let request = RedemptionService.HoldRequest(
                id: id, redeemToken: token, offerID: offer, points: points, partnerRef: partnerRef, holdSeconds: holdSeconds)
            let held = try await mapped { try await services.redemptions.hold(request, partner: context.partner!) }
            return EditedResponse(status: .created, response: RedemptionBody(held))
        }

        partner.get(":id") { _, context -> RedemptionBody in
            let id = try pathID(context)
            return RedemptionBody(try await mapped { try await services.redemptions.redemption(id: id, partner: context.partner!) })
        }

        partner.post(":id/capture") { _, context -> RedemptionBody in
            let id = try pathID(context)
            return RedemptionBody(try await mapped { try await services.redemptions.capture(id: id, partner: context.partner!) })
        }

        partner.post(":id/void") { _, context -> RedemptionBody in
            let id = try pathID(context)
            return RedemptionBody(try await mapped { try await services.redemptions.void(id: id, partner: context.partner!) })
        }

        partner.post(":id/refunds") { request, context -> EditedResponse<RedemptionBody> in
            let id = try pathID(context)
            let object = try await readBody(request, context: context)
            guard let refundID = try optionalUUID(object, "id") else {
                throw Problem(.badRequest, code: "malformed_request", detail: "id (a UUID naming this refund) is required")
            }
            guard let points = try optionalInteger(object, "points") else {
                throw Problem(.badRequest, code: "malformed_request", detail: "points (a positive integer) is required")
            }
            let refunded = try await mapped {
                try await services.redemptions.refund(id: id, refundID: refundID, points: points, partner: context.partner!)
            }
            return EditedResponse(status: .created, response: RedemptionBody(refunded))
        }
    }

    static func readBody(_ request: Request, context: TanhuiRequestContext) async throws -> JSONValue {
        var context = context
        context.maximumBodyBytes = min(context.maximumBodyBytes, maximumBodyBytes)
        let object = try await SyncRoutes.readJSON(request, context: context)
        guard case .object = object else { throw Problem(.badRequest, code: "malformed_request", detail: "send a JSON object") }
        return object
    }

    static func pathID(_ context: TanhuiRequestContext) throws -> UUID {
        guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            throw Problem(.notFound, code: "not_found", detail: "a redemption id is a UUID")
        }
        return id
    }

    /// An absent member is nil; `null` is refused like any other non-UUID (the document says
    /// string, and a client sending null meant something the server must not guess).
    static func optionalUUID(_ object: JSONValue, _ key: String) throws -> UUID? {
        switch object[key] {
        case nil: return nil
        case .string(let text)?:
            if let id = UUID(uuidString: text) { return id }
        default: break
        }
        throw Problem(.badRequest, code: "malformed_request", detail: "\(key) must be a UUID")
    }

    static func optionalInteger(_ object: JSONValue, _ key: String) throws -> Int64? {
        switch object[key] {
        case nil: return nil
        case .number(let text)?:
            if let value = Int64(text) { return value }
        default: break
        }
        throw Problem(.badRequest, code: "malformed_request", detail: "\(key) must be an integer")
    }

    /// Redemption refusals as problem documents (4xx, each with its own code).
    static func mapped<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedemptionError {
            throw problem(error)
        }
    }

    static func problem(_ error: RedemptionError) -> Problem {
        let status: HTTPResponse.Status
        switch error {
        case .invalid, .unknownProvince: status = .badRequest
        case .notAllowed: status = .forbidden
        case .notFound, .unknownOffer: status = .notFound
        case .idReused, .alreadyResolved, .holdExpired, .notCaptured: status = .conflict
        case .tokenUnknown, .tokenUsed, .tokenExpired, .tokenBoundToOffer, .insufficientPoints, .refundTooLarge, .offerNotValid, .offerSoldOut,
            .offerLimitReached:
            status = .unprocessableContent
        }
        return Problem(status, code: error.code, detail: error.description)
    }
}

struct RedeemTokenBody: ResponseEncodable {
    let token: String
    let province: String
    let offerID: String?
    let expiresAt: Date

    init(_ token: RedemptionService.RedeemToken) {
        self.token = token.token
        province = token.province
        offerID = token.offerID?.uuidString.lowercased()
        expiresAt = token.expiresAt
    }

    enum CodingKeys: String, CodingKey {
        case token, province
        case offerID = "offer_id"
        case expiresAt = "expires_at"
    }
}

struct RedemptionBody: ResponseEncodable {
    let id: String
    let province: String
    let state: String
    let points: Int64
    let refundedPoints: Int64
    let offerID: String?
    let partnerRef: String?
    let createdAt: Date
    let expiresAt: Date
    let resolvedAt: Date?

    init(_ redemption: RedemptionService.Redemption) {
        id = redemption.id.uuidString.lowercased()
        province = redemption.province
        state = redemption.state.rawValue
        points = redemption.points
        refundedPoints = redemption.refundedPoints
        offerID = redemption.offerID?.uuidString.lowercased()
        partnerRef = redemption.partnerRef
        createdAt = redemption.createdAt
        expiresAt = redemption.expiresAt
        resolvedAt = redemption.resolvedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, province, state, points
        case refundedPoints = "refunded_points"
        case offerID = "offer_id"
        case partnerRef = "partner_ref"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case resolvedAt = "resolved_at"
    }
}
