import HTTPTypes
import Hummingbird
import NIOCore

/// The operator console under `/console/`: static files embedded at build time
/// (`Scripts/gen-console.sh`), served with a Content-Security-Policy that allows only this
/// origin's scripts, styles and API, so an injected string can never run as code. The
/// console talks to the public API only; it adds no endpoints of its own.
enum ConsoleRoutes {
    static let securityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        + "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

    static func response(_ name: String) -> Response {
        guard let file = files.first(where: { $0.name == name }) else {
            return Response(
                status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "not found\n")))
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: file.mediaType, .contentSecurityPolicy: securityPolicy, .xContentTypeOptions: "nosniff",
                HTTPField.Name("Referrer-Policy")!: "no-referrer", .cacheControl: "no-cache",
            ],
            body: .init(byteBuffer: ByteBuffer(string: file.content)))
    }

    static func add(to router: Router<TanhuiRequestContext>) {
        router.get("console") { _, _ in response("index.html") }
        router.get("console/:file") { _, context in response(context.parameters.get("file") ?? "") }
    }
}
