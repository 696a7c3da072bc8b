package import Hummingbird

/// The methods each route path answers, taken from the router once every route is added, so
/// a listed path asked with another method (`TRACE /healthz`) gets `405` with `Allow`
/// (RFC 9110 §15.5.5) rather than a 404 claiming the path does not exist.
package struct RouteMethods: Sendable {
    struct Template: Sendable {
        /// nil marks a `:parameter` segment, which matches any one segment.
        var segments: [String?]
        var methods: [String]
    }

    private let templates: [Template]

    package init(_ routes: [Router<some RequestContext>.RouteDescription]) {
        var byPath: [String: Template] = [:]
        for route in routes {
            let segments = route.path.components.map { element -> String? in
                let text = element.description
                return text.hasPrefix(":") || text.hasPrefix("{") ? nil : text
            }
            byPath[route.path.description, default: Template(segments: segments, methods: [])].methods.append(route.method.rawValue)
        }
        templates = Array(byPath.values)
    }

    /// The methods routed for `path`, or nil when no route has that shape.
    package func methods(forPath path: String) -> [String]? {
        let requested = path.split(separator: "/", omittingEmptySubsequences: true)
        let matching = templates.filter { template in
            template.segments.count == requested.count
                && zip(template.segments, requested).allSatisfy { literal, segment in literal.map { $0 == segment } ?? true }
        }
        // The router prefers a literal segment to a parameter (`rulesets/validate` over
        // `rulesets/:version`), so only the most literal shapes answer this path.
        func literals(_ template: Template) -> Int { template.segments.count { $0 != nil } }
        guard let most = matching.map(literals).max() else { return nil }
        return Array(Set(matching.filter { literals($0) == most }.flatMap(\.methods))).sorted()
    }
}

/// Turns the router's 404 for a known path with an unrouted method into `405 method_not_allowed`.
/// Added after the last route, so Hummingbird runs it only in the not-found responder.
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            guard let allowed = routes.methods(forPath: request.uri.path), !allowed.contains(request.method.rawValue) else { throw error }
            throw Problem(
                .methodNotAllowed, code: "method_not_allowed",
                detail: "\(request.method.rawValue) is not allowed on this path; allowed: \(allowed.joined(separator: ", "))",
                allow: allowed
            )
        }
    }
}
