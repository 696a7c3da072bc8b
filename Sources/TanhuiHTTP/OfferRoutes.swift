import Foundation
import Hummingbird
import TanhuiCore
import TanhuiService

/// Operators define the offers partners redeem (`/v1/provinces/{code}/offers`, operator key).
enum OfferRoutes {
    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices) {
        let offers = router.group("v1/provinces/:province/offers")
            .add(middleware: OperatorKeyMiddleware(operators: services.operators))

        offers.get { _, context -> OfferList in
            OfferList(offers: try await services.offers.list(province: try context.province).map(OfferBody.init))
        }

        offers.post { request, context -> EditedResponse<OfferBody> in
            let province = try context.province
            let object = try await RedemptionRoutes.readBody(request, context: context)
            let partner = try RedemptionRoutes.optionalUUID(object, "partner_id")
            guard case .string(let name)? = object["name"] else {
                throw Problem(.badRequest, code: "malformed_request", detail: "name is required")
            }
            guard let cost = try RedemptionRoutes.optionalInteger(object, "points_cost") else {
                throw Problem(.badRequest, code: "malformed_request", detail: "points_cost (a positive integer) is required")
            }
            let total = try RedemptionRoutes.optionalInteger(object, "total_limit")
            var perCitizen: Offer.PerCitizenLimit?
            switch object["per_citizen_limit"] {
            case nil: perCitizen = nil
            case .object?:
                let limit = object["per_citizen_limit"]!
                guard let count = try RedemptionRoutes.optionalInteger(limit, "count"), case .string(let period)? = limit["period"] else {
                    throw Problem(.badRequest, code: "malformed_request", detail: "per_citizen_limit is {count, period}")
                }
                perCitizen = Offer.PerCitizenLimit(count: Int(clamping: count), period: period)
            default: throw Problem(.badRequest, code: "malformed_request", detail: "per_citizen_limit is {count, period}")
            }
            func instant(_ key: String) throws -> Date {
                guard case .string(let text)? = object[key], let date = Timestamp.parse(text) else {
                    throw Problem(.badRequest, code: "malformed_request", detail: "\(key) must be an RFC 3339 timestamp with a UTC offset")
                }
                // The events' sane range: year 0000 or 9999 is a client's mistake, not an offer.
                guard ClockPolicy.saneRangeMs.contains(Timestamp.milliseconds(of: date)) else {
                    throw Problem(.badRequest, code: "malformed_request", detail: "\(key) must lie between 2000-01-01 and 2100-01-01")
                }
                return date
            }
            let identity = context.operatorIdentity!
            do {
                let offer = try await services.offers.create(
                    province: province, partner: partner, name: name, pointsCost: cost, totalLimit: total, perCitizenLimit: perCitizen,
                    validFrom: try instant("valid_from"), validTo: try instant("valid_to"),
                    createdBy: "operator \(identity.name) (\(identity.id.uuidString.lowercased()))")
                return EditedResponse(status: .created, response: OfferBody(offer))
            } catch let error as OfferError {
                switch error {
                case .invalid: throw Problem(.unprocessableContent, code: "invalid_offer", detail: error.description)
                case .unknownPartner: throw Problem(.unprocessableContent, code: "unknown_partner", detail: error.description)
                }
            }
        }
    }
}

struct OfferList: ResponseEncodable {
    let offers: [OfferBody]
}

struct OfferBody: ResponseEncodable {
    struct Limit: Codable {
        let count: Int
        let period: String
    }

    let id: String
    let province: String
    let partnerID: String?
    let name: String
    let pointsCost: Int64
    let totalLimit: Int64?
    let perCitizenLimit: Limit?
    let validFrom: Date
    let validTo: Date

    init(_ offer: Offer) {
        id = offer.id.uuidString.lowercased()
        province = offer.province
        partnerID = offer.partnerID?.uuidString.lowercased()
        name = offer.name
        pointsCost = offer.pointsCost
        totalLimit = offer.totalLimit
        perCitizenLimit = offer.perCitizenLimit.map { Limit(count: $0.count, period: $0.period) }
        validFrom = offer.validFrom
        validTo = offer.validTo
    }

    enum CodingKeys: String, CodingKey {
        case id, province, name
        case partnerID = "partner_id"
        case pointsCost = "points_cost"
        case totalLimit = "total_limit"
        case perCitizenLimit = "per_citizen_limit"
        case validFrom = "valid_from"
        case validTo = "valid_to"
    }
}
