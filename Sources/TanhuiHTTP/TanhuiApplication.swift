import Hummingbird
import Logging
import NIOCore
import TanhuiService

/// Builds the HTTP application over the process's services; `tanhui serve` and tests share it.
public enum TanhuiApplication {
    public static func build(
        services: TanhuiServices,
        host: String,
        port: Int,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = buildRouter(services: services)
        return Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "tanhui"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: services.logger
        )
    }

    public static func buildRouter(services: TanhuiServices) -> Router<TanhuiRequestContext> {
        let router = Router(context: TanhuiRequestContext.self)
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
        OperatorRoutes.add(to: router, services: services)
        return router
    }
}

struct HealthBody: ResponseEncodable {
    let status: String
}
