package import Hummingbird
import Logging
import NIOCore
package import TanhuiService

/// Builds the HTTP application over the process's services; `tanhui serve` and tests share it.
package enum TanhuiApplication {
    package static func build(
        services: TanhuiServices,
        tokens: DeviceTokens,
        metrics: TanhuiMetrics = TanhuiMetrics(),
        host: String,
        port: Int,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = buildRouter(services: services, tokens: tokens, metrics: metrics)
        return Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "tanhui"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: services.logger
        )
    }

    package static func buildRouter(
        services: TanhuiServices, tokens: DeviceTokens, metrics: TanhuiMetrics = TanhuiMetrics()
    ) -> Router<TanhuiRequestContext> {
        let router = Router(context: TanhuiRequestContext.self)
        router.add(middleware: MetricsMiddleware())
        let maximumBodyBytes = services.config.maximumBodyBytes
        router.add(middleware: BodyLimitMiddleware(maximumBodyBytes: maximumBodyBytes))
        router.add(middleware: ProblemMiddleware())

        // Liveness: the process answers. Never touches the database.
        router.get("/healthz") { _, _ in
            HealthBody(status: "ok")
        }
        // Readiness: database reachable and migrations current; load balancers route on it.
        router.get("/readyz") { _, _ -> HealthBody in
            switch await services.readiness() {
            case .ready: return HealthBody(status: "ready")
            case .notReady(let reason):
                throw Problem(.serviceUnavailable, code: "not_ready", detail: reason, retryAfterSeconds: 2)
            }
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: metrics.render(pool: services.pool)))
        }
        OperatorRoutes.add(to: router, services: services)
        ReportRoutes.add(to: router, services: services)
        StatementRoutes.add(to: router, services: services)
        ConsoleRoutes.add(to: router)
        GovernanceRoutes.add(to: router, services: services)
        PartnerRoutes.add(to: router, services: services)
        RedemptionRoutes.add(to: router, services: services, tokens: tokens)
        OfferRoutes.add(to: router, services: services)
        SyncRoutes.add(to: router, services: services, tokens: tokens, metrics: metrics, cursorSecret: tokens.cursorSecret)
        PartnerFeedRoutes.add(to: router, services: services, tokens: tokens)
        // Last: Hummingbird applies a middleware to the routes added after it and to the
        // not-found responder, so this one runs only when no route matched.
        router.add(middleware: MethodNotAllowedMiddleware(routes: RouteMethods(router.routes)))
        return router
    }
}

/// Carries the configured body limit into every request's context.
struct BodyLimitMiddleware: RouterMiddleware {
    let maximumBodyBytes: Int

    func handle(
        _ request: Request, context: TanhuiRequestContext, next: (Request, TanhuiRequestContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        context.maximumBodyBytes = maximumBodyBytes
        return try await next(request, context)
    }
}

struct HealthBody: ResponseEncodable {
    let status: String
}
