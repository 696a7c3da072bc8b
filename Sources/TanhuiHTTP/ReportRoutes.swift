import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TanhuiService

/// `GET /v1/provinces/{code}/reports`: figures from the rollup of the sealed chain, signed
/// with the checkpoint key, as JSON or CSV (operator key, like the other province routes).
enum ReportRoutes {
    static let noteHeader = HTTPField.Name("Tanhui-Report-Note")!

    static func add(to router: Router<TanhuiRequestContext>, services: TanhuiServices) {
        let province = router.group("v1/provinces/:province")
            .add(middleware: OperatorKeyMiddleware(operators: services.operators))

        province.get("reports") { request, context -> Response in
            let province = try context.province
            let query = request.uri.queryParameters
            let format = query.get("format") ?? "json"
            guard format == "json" || format == "csv" else {
                throw Problem(.badRequest, code: "bad_report_request", detail: "format must be json or csv")
            }
            let report: SignedReport
            do {
                report = try await services.reports.signedReport(
                    province: province, from: query.get("from"), to: query.get("to"), groupBy: query.get("group_by"),
                    checkpointKey: services.config.checkpointKey, waitForAdvance: false)
            } catch let failure as ReportFailure {
                switch failure {
                case .badRequest: throw Problem(.badRequest, code: "bad_report_request", detail: failure.description)
                case .tooLarge: throw Problem(.badRequest, code: "report_too_large", detail: failure.description)
                case .noKey: throw Problem(.serviceUnavailable, code: "reports_unavailable", detail: failure.description, retryAfterSeconds: 60)
                }
            }
            if format == "csv" {
                return Response(
                    status: .ok,
                    headers: [.contentType: "text/csv; charset=utf-8", noteHeader: Data(report.note.utf8).base64EncodedString()],
                    body: .init(byteBuffer: ByteBuffer(string: report.csv)))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: report.json)))
        }
    }
}
