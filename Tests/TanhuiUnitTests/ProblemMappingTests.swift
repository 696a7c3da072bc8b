import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOFoundationEssentialsCompat
import TanhuiPostgres
import Testing

@testable import TanhuiHTTP

@Suite("Problem documents: every error becomes a documented status, and internals never leak")
struct ProblemMappingTests {
    /// A router with the application's error middlewares and routes that throw on demand.
    static func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ProblemMiddleware())
        router.get("/unavailable") { _, _ -> String in
            throw PostgresError(kind: .connectionLost, operation: "query", message: "server closed the connection")
        }
        router.get("/timeout") { _, _ -> String in
            throw PostgresError(kind: .server, operation: "query", sqlState: "57014", message: "canceling statement due to statement timeout")
        }
        router.get("/bug") { _, _ -> String in
            throw PostgresError(kind: .server, operation: "query", sqlState: "42P01", message: #"relation "secret_table" does not exist"#)
        }
        router.get("/items/:id") { _, _ in "item" }
        router.post("/items/:id") { _, _ in "posted" }
        router.get("/items/special") { _, _ in "special" }
        router.add(middleware: MethodNotAllowedMiddleware(routes: RouteMethods(router.routes)))
        return router
    }

    static func body(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
    }

    @Test("an unreachable or saturated database is 503 with Retry-After; any other database error is a bare 500")
    func databaseErrors() async throws {
        try await Application(router: Self.router()).test(.router) { client in
            for path in ["/unavailable", "/timeout"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .serviceUnavailable, "\(path)")
                    #expect(response.headers[.retryAfter] == "2")
                    #expect(response.headers[.contentType] == "application/problem+json")
                    let body = try Self.body(response)
                    #expect(body["type"] as? String == "https://tanhui.invalid/problems/unavailable")
                    #expect(body["retry_after"] as? Int == 2 && body["status"] as? Int == 503)
                }
            }
            try await client.execute(uri: "/bug", method: .get) { response in
                #expect(response.status == .internalServerError)
                let text = String(buffer: response.body)
                #expect(!text.contains("secret_table") && !text.contains("42P01"))
                let body = try Self.body(response)
                #expect(body["type"] as? String == "https://tanhui.invalid/problems/internal")
            }
        }
    }

    @Test("a routed path with another method is 405 with Allow; an unknown path stays 404")
    func methodNotAllowed() async throws {
        try await Application(router: Self.router()).test(.router) { client in
            try await client.execute(uri: "/unavailable", method: .init("TRACE")!) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET")
                let body = try Self.body(response)
                #expect(body["type"] as? String == "https://tanhui.invalid/problems/method_not_allowed")
                #expect(body["allow"] == nil)
            }
            try await client.execute(uri: "/items/42", method: .delete) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET, POST")
            }
            try await client.execute(uri: "/items/42", method: .post) { response in
                #expect(response.status == .ok)
            }
            for path in ["/nowhere", "/items", "/items/42/deeper"] {
                try await client.execute(uri: path, method: .delete) { response in
                    #expect(response.status == .notFound, "\(path)")
                    #expect(response.headers[.allow] == nil)
                }
            }
        }
    }
}
