import Foundation
import Hummingbird
import NIOCore
import TanhuiService

/// `GET /v1/provinces/{code}/citizens/{citizen}/statement`: a citizen's ledger in one
/// province, paged by the citizen's transaction number (operator key; the console's ledger
/// look-up uses it, as `tanhui ledger show` does on the command line).
enum StatementRoutes {
    static let defaultPage = 50

    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices) {
        let province = router.group("v1/provinces/:province")
            .add(middleware: OperatorKeyMiddleware(operators: services.operators))

        province.get("citizens/:citizen/statement") { request, context -> Response in
            let province = try context.province
            guard let citizen = context.parameters.get("citizen").flatMap(UUID.init(uuidString:)) else {
                throw Problem(.notFound, code: "not_found", detail: "citizen id must be a UUID")
            }
            let query = request.uri.queryParameters
            var afterSeq: Int64 = 0
            if let text = query.get("after_seq") {
                guard let value = Int64(text), value >= 0 else {
                    throw Problem(.badRequest, code: "bad_statement_request", detail: "after_seq must be a whole number ≥ 0")
                }
                afterSeq = value
            }
            var limit = defaultPage
            if let text = query.get("limit") {
                guard let value = Int(text), (1...LedgerService.maximumPage - 1).contains(value) else {
                    throw Problem(.badRequest, code: "bad_statement_request", detail: "limit must be 1…\(LedgerService.maximumPage - 1)")
                }
                limit = value
            }
            // One line more than asked tells whether another page follows.
            let lines = try await services.ledger.statement(citizen: citizen, province: province, after: [province: afterSeq], limit: limit + 1)
            let page = Array(lines.prefix(limit))
            let balance = try await services.ledger.balance(citizen: citizen, province: province)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let object: [String: Any] = [
                "province": province, "citizen": citizen.uuidString.lowercased(),
                "balance": ["points": NSNumber(value: balance.points), "grams_co2e": NSNumber(value: balance.gramsCO2e)],
                "lines": page.map { line -> [String: Any] in
                    [
                        "citizen_seq": NSNumber(value: line.citizenSeq), "kind": line.kind, "event_id": line.eventID.uuidString.lowercased(),
                        "points": NSNumber(value: line.points), "grams_co2e": NSNumber(value: line.gramsCO2e),
                        "ruleset_version": NSNumber(value: line.ruleSetVersion), "created_at": formatter.string(from: line.createdAt),
                        "reason": line.reason ?? NSNull(),
                    ]
                },
                "has_more": lines.count > limit,
                "next_after_seq": NSNumber(value: page.last?.citizenSeq ?? afterSeq),
            ]
            let body = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
    }
}
