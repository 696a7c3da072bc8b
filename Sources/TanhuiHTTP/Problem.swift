import Foundation
package import Hummingbird
import Logging
import TanhuiCore
import TanhuiPostgres
import TanhuiService

/// An RFC 9457 problem document, the body of every error response.
///
/// Errors are translated here, once: domain errors keep their message, database errors
/// become a generic 503 or 500 so clients never see SQL, SQLSTATEs or server internals.
package struct Problem: HTTPResponseError, Encodable, Sendable {
    package struct FieldError: Encodable, Sendable, Equatable {
        package var path: String
        package var line: Int?
        package var column: Int?
        package var code: String
        package var message: String

        package init(path: String, line: Int? = nil, column: Int? = nil, code: String, message: String) {
            self.path = path
            self.line = line
            self.column = column
            self.code = code
            self.message = message
        }
    }

    package var type: String
    package var title: String
    package var statusCode: Int
    package var detail: String?
    package var errors: [FieldError]?
    /// Seconds a client should wait before retrying (sent as `Retry-After` too).
    package var retryAfterSeconds: Int?
    /// For 413: the limits, so clients can split and resend.
    package var limits: Limits?
    /// For 405: the methods the path answers (sent as `Allow`, not in the body).
    package var allow: [String]?

    package struct Limits: Encodable, Sendable {
        package var maxEventsPerPush: Int
        package var maxBodyBytes: Int
        package var maxStatusIDs: Int

        enum CodingKeys: String, CodingKey {
            case maxEventsPerPush = "max_events_per_push"
            case maxBodyBytes = "max_body_bytes"
            case maxStatusIDs = "max_status_ids"
        }
    }

    enum CodingKeys: String, CodingKey {
        case type, title, detail, errors, limits
        case statusCode = "status"
        case retryAfterSeconds = "retry_after"
    }

    package init(
        _ status: HTTPResponse.Status, code: String, detail: String? = nil, errors: [FieldError]? = nil,
        retryAfterSeconds: Int? = nil, allow: [String]? = nil
    ) {
        self.type = "https://tanhui.invalid/problems/\(code)"
        self.title = status.reasonPhrase
        self.statusCode = status.code
        self.detail = detail
        self.errors = errors
        self.retryAfterSeconds = retryAfterSeconds
        self.allow = allow
    }

    package var status: HTTPResponse.Status { .init(code: statusCode) }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        if let allow { headers[.allow] = allow.joined(separator: ", ") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = try encoder.encode(self)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The database is down or saturated: clients back off and retry.
    package static let unavailable = Problem(
        .serviceUnavailable, code: "unavailable", detail: "the service is temporarily unavailable; retry later", retryAfterSeconds: 2)
}

extension Problem.FieldError {
    init(_ issue: ValidationIssue) {
        self.init(path: issue.path, line: issue.line, column: issue.column, code: issue.code.rawValue, message: issue.message)
    }
}

/// Maps any error escaping a handler to a problem document.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            throw problem
        } catch let rejected as RuleSetRejected {
            throw Problem(
                .unprocessableContent, code: "invalid_rule_set", detail: "the rule set has \(rejected.issues.count) problem(s); nothing was stored",
                errors: rejected.issues.map { Problem.FieldError($0) })
        } catch RuleSetLookupError.notFound(let province, let version) {
            throw Problem(.notFound, code: "not_found", detail: "\(province) version \(version) is not published")
        } catch RuleSetLookupError.forbidden(let province) {
            throw Problem(.forbidden, code: "forbidden", detail: "this key may not act for \(province)")
        } catch let error as GovernanceError {
            throw Problem(.init(code: error.status), code: error.code, detail: error.description)
        } catch let error as LedgerService.ReversalError {
            switch error {
            case .noAward: throw Problem(.notFound, code: "no_award", detail: error.description)
            case .alreadyReversed: throw Problem(.conflict, code: "already_reversed", detail: error.description)
            case .reasonRequired: throw Problem(.badRequest, code: "reason_required", detail: error.description)
            }
        } catch let error as PostgresError {
            if error.isUnavailable { throw Problem.unavailable }
            context.logger.error("database error", metadata: ["error": "\(error)"])
            throw Problem(.internalServerError, code: "internal", detail: "internal error")
        } catch let error as HTTPError {
            throw Problem(error.status, code: error.status.code == 404 ? "not_found" : "http_error", detail: error.body)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)"])
            throw Problem(.internalServerError, code: "internal", detail: "internal error")
        }
    }
}
