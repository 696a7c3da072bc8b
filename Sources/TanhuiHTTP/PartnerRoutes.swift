import Foundation
import Hummingbird
import TanhuiService

/// Routes for partners (merchants, transit operators, data platforms) of one province,
/// authenticated with a partner key (`Authorization: Bearer thp_…`) of that province.
/// Partner route families live in their own router groups, each asking for one scope.
enum PartnerRoutes {
    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices) {
        // Any scope: a partner checks its key and sees what it may do.
        router.group("v1/provinces/:province/partner")
            .add(middleware: PartnerKeyMiddleware(partners: services.partners, scope: nil))
            .get { _, context -> PartnerBody in
                PartnerBody(context.partner!)
            }
    }
}

/// Authenticates the partner key in the path's province and checks it holds `scope`.
struct PartnerKeyMiddleware: RouterMiddleware {
    let partners: PartnerService
    /// The scope the routes behind this middleware need; nil: any.
    let scope: PartnerScope?

    func handle(
        _ request: Request, context: TanhuiRequestContext, next: (Request, TanhuiRequestContext) async throws -> Response
    ) async throws -> Response {
        // Checked in the operator routes' order: credentials, province code, then the key itself
        // (a partner key is looked up in the path's province only).
        guard let key = request.bearerCredential else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "send a partner key as Authorization: Bearer thp_…")
        }
        let province = try context.province
        guard let partner = try await partners.authenticate(key: key, province: province) else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "unknown or revoked partner key for \(province)")
        }
        if let scope, !partner.scopes.contains(scope) {
            throw Problem(.forbidden, code: "forbidden", detail: "this partner key lacks the \(scope.rawValue) scope")
        }
        var context = context
        context.partner = partner
        return try await next(request, context)
    }
}

/// A partner as it sees itself (never its key).
struct PartnerBody: ResponseEncodable {
    let province: String
    let id: String
    let name: String
    let scopes: [String]
    let createdAt: Date

    init(_ partner: PartnerIdentity) {
        province = partner.province
        id = partner.id.uuidString.lowercased()
        name = partner.name
        scopes = partner.scopes.map(\.rawValue)
        createdAt = partner.createdAt
    }

    enum CodingKeys: String, CodingKey {
        case province, id, name, scopes
        case createdAt = "created_at"
    }
}
