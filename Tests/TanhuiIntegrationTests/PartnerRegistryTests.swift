import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOFoundationEssentialsCompat
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService
import Testing

@Suite("Partner registry: CLI, keys per province and scope, revocation", .needsDatabase)
struct PartnerRegistryTests {
    static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: buffer)) as? [String: Any])
    }

    @Test("tanhui partner create prints the key once, stores only its hash; list and revoke; bad input fails with a message and stores nothing")
    func cli() async throws {
        try await TestDatabase.withFresh { url in
            let created = try await CommandRunner.tanhui(
                ["partner", "create", "--province", "CN-GD", "--name", "Guangzhou Metro", "--scope", "feed", "--scope", "redeem"], databaseURL: url)
            #expect(created.exitCode == 0, "\(created.stderr)")
            let lines = created.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 2)
            #expect(lines.first?.hasSuffix("Guangzhou Metro province CN-GD scopes feed,redeem") == true)
            let key = try #require(lines.last?.split(separator: " ").last.map(String.init))
            #expect(key.hasPrefix(PartnerService.keyPrefix) && key.count == 47)
            let id = try #require(lines.first?.split(separator: " ").dropFirst().first.map(String.init))

            let pool = TestDatabase.makePool(url: url, size: 1)
            let stored = try await pool.withConnection {
                try $0.query("SELECT key_sha256 FROM partners").rows.map { try $0.decode(0, as: String.self) }
            }
            #expect(stored == [SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()])
            #expect(!stored.contains(key))

            for bad in [
                ["partner", "create", "--province", "CN-XX", "--name", "n", "--scope", "feed"],
                ["partner", "create", "--province", "CN-GD", "--name", "  ", "--scope", "feed"],
                ["partner", "create", "--province", "CN-GD", "--name", "n", "--scope", "spend"],
                ["partner", "create", "--province", "CN-GD", "--name", "n"],
            ] {
                let result = try await CommandRunner.tanhui(bad, databaseURL: url)
                #expect(result.exitCode != 0, "\(bad): \(result.stdout) \(result.stderr)")
                #expect(!result.stderr.isEmpty)
            }
            #expect(try await pool.withConnection { try $0.query("SELECT count(*) FROM partners").scalar(Int.self) } == 1)

            let list = try await CommandRunner.tanhui(["partner", "list", "--province", "CN-GD"], databaseURL: url)
            #expect(list.stdout.contains("\(id)  Guangzhou Metro  feed,redeem  active"))
            #expect(!list.stdout.contains(key))
            #expect(try await CommandRunner.tanhui(["partner", "list", "--province", "CN-BJ"], databaseURL: url).stdout.isEmpty)

            let wrongProvince = try await CommandRunner.tanhui(["partner", "revoke", "--province", "CN-BJ", id], databaseURL: url)
            #expect(wrongProvince.exitCode == 1 && wrongProvince.stderr.contains("no partner"))
            let revoked = try await CommandRunner.tanhui(["partner", "revoke", "--province", "CN-GD", id], databaseURL: url)
            #expect(revoked.exitCode == 0 && revoked.stdout.hasPrefix("revoked \(id)"))
            #expect(try await CommandRunner.tanhui(["partner", "list"], databaseURL: url).stdout.contains("revoked 20"))
            await pool.shutdown()
        }
    }

    @Test(
        "GET /v1/provinces/{code}/partner: 401 without, with a revoked or another province's key, or an operator key; a scope-less route answers any scope"
    )
    func authentication() async throws {
        try await TestDatabase.withFresh { url in
            let services = try TestDatabase.makeServices(url: url)
            let (gd, gdKey) = try await services.partners.create(province: "CN-GD", name: "GZ Bikes", scopes: [.redeem], createdBy: "test")
            let (_, bjKey) = try await services.partners.create(province: "CN-BJ", name: "BJ Metro", scopes: [.feed], createdBy: "test")
            let (old, oldKey) = try await services.partners.create(province: "CN-GD", name: "Old", scopes: [.feed], createdBy: "test")
            _ = try await services.partners.revoke(province: "CN-GD", id: old.id)
            let (_, operatorKey) = try await services.operators.create(name: "gd", provinces: ["CN-GD"])
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            try await app.test(.router) { client in
                try await client.execute(uri: "/v1/provinces/CN-GD/partner", method: .get, headers: [.authorization: "Bearer \(gdKey)"]) { response in
                    #expect(response.status == .ok)
                    let body = try Self.json(response.body)
                    #expect(body["id"] as? String == gd.id.uuidString.lowercased())
                    #expect(body["scopes"] as? [String] == ["redeem"])
                    #expect(body["province"] as? String == "CN-GD")
                    #expect(!String(buffer: response.body).contains(gdKey))
                }
                for key in [nil, oldKey, bjKey, operatorKey, "thp_" + String(repeating: "A", count: 43), "thp_" + String(repeating: "x", count: 500)]
                {
                    let headers: HTTPFields = key.map { [.authorization: "Bearer \($0)"] } ?? [:]
                    try await client.execute(uri: "/v1/provinces/CN-GD/partner", method: .get, headers: headers) { response in
                        #expect(response.status == .unauthorized, "\(key?.prefix(8) ?? "none")")
                        #expect(response.headers[.contentType] == "application/problem+json")
                    }
                }
                // A partner key is not an operator key.
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .get, headers: [.authorization: "Bearer \(gdKey)"]) {
                    response in
                    #expect(response.status == .unauthorized)
                }
                try await client.execute(uri: "/v1/provinces/CN-ZZ/partner", method: .get, headers: [.authorization: "Bearer \(gdKey)"]) { response in
                    #expect(response.status == .notFound)
                }
            }
            await services.shutdown()
        }
    }
}
