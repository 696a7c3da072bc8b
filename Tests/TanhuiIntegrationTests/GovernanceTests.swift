import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOFoundationEssentialsCompat
import TanhuiCore
import TanhuiHTTP
import TanhuiPostgres
import TanhuiService
import Testing

private typealias F = LedgerFixtures
private typealias A = AuditTests

@Suite("Rule-set governance: proposals, two-person approval, notice, publication", .needsDatabase)
struct GovernanceTests {
    static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: buffer)) as? [String: Any])
    }

    /// The sample CN-GD rules as `version`, effective `days` from now, with a metro factor changed.
    static func draft(version: Int, days: Double, metro: String = "40.1") throws -> String {
        let effective = Date().addingTimeInterval(days * 86_400).formatted(.iso8601)
        return try F.ruleSetDocument()
            .replacingOccurrences(of: "version: 1", with: "version: \(version)")
            .replacingOccurrences(of: "effective_from: 2026-01-01T00:00:00+08:00", with: "effective_from: \(effective)")
            .replacingOccurrences(of: "metro: { grams_per_km: 46.7 }", with: "metro: { grams_per_km: \(metro) }")
    }

    static func headers(_ key: String, yaml: Bool = false) -> HTTPFields {
        [.authorization: "Bearer \(key)", .contentType: yaml ? "application/yaml" : "application/json"]
    }

    /// The problem code of an error response.
    static func code(_ response: TestResponse) -> String? {
        (try? json(response.body))?["type"].flatMap { ($0 as? String)?.components(separatedBy: "/").last }
    }

    struct Keys {
        let author: String  // every role: an "admin" key, not exempt from the rules
        let authorID: UUID
        let approverA: String
        let approverB: String  // approver and publisher
        let approverC: String
        let approverCID: UUID
        let publisher: String
    }

    static func keys(_ services: TanhuiServices) async throws -> Keys {
        let (author, authorKey) = try await services.operators.create(name: "author", provinces: ["CN-GD"])
        let (_, a) = try await services.operators.create(name: "a", provinces: ["CN-GD"], roles: ["approver"])
        let (_, b) = try await services.operators.create(name: "b", provinces: ["CN-GD"], roles: ["approver", "publisher"])
        let (c, cKey) = try await services.operators.create(name: "c", provinces: ["CN-GD"], roles: ["approver"])
        let (_, p) = try await services.operators.create(name: "p", provinces: ["CN-GD"], roles: ["publisher"])
        return Keys(author: authorKey, authorID: author.id, approverA: a, approverB: b, approverC: cKey, approverCID: c.id, publisher: p)
    }

    @Test(
        "the whole flow over HTTP: governed by default, self-approval refused, one key counts once, revoked approvals stop counting, notice enforced")
    func httpFlow() async throws {
        try await F.withLedger { services, url in
            // Accepted events for the impact summary.
            _ = try await services.ledger.submit(
                [F.metro(at: F.base), F.bike(at: F.base.addingTimeInterval(7200))], citizen: UUID(), device: "d",
                receivedAt: F.base.addingTimeInterval(9000), sentAt: nil)
            let accepted = try await F.count(url, "SELECT count(*) FROM events WHERE status = 'accepted'")
            let k = try await Self.keys(services)
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            let v2 = try Self.draft(version: 2, days: 10)
            let base = "/v1/provinces/CN-GD/ruleset-proposals"
            try await app.test(.router) { client in
                // No policy: governed. Even a key holding every role cannot publish directly.
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: Self.headers(k.author, yaml: true), body: ByteBuffer(string: v2)
                ) {
                    #expect($0.status == .forbidden)
                    #expect(Self.code($0) == "proposal_required")
                }
                // Only authors propose.
                try await client.execute(uri: base, method: .post, headers: Self.headers(k.approverA, yaml: true), body: ByteBuffer(string: v2)) {
                    #expect($0.status == .forbidden)
                    #expect(Self.code($0) == "role_required")
                }
                let id = try await client.execute(uri: base, method: .post, headers: Self.headers(k.author, yaml: true), body: ByteBuffer(string: v2))
                {
                    response -> String in
                    #expect(response.status == .created)
                    let body = try Self.json(response.body)
                    #expect(body["state"] as? String == "open")
                    #expect(body["required_approvals"] as? Int == 2)
                    #expect(body["counted_approvals"] as? Int == 0)
                    let diff = try #require(body["diff"] as? [String: Any])
                    #expect(diff["against_version"] as? Int == 1)
                    #expect((diff["changes"] as? [String])?.contains { $0.contains("46.7") && $0.contains("40.1") } == true, "\(diff)")
                    let impact = try #require(body["impact"] as? [String: Any])
                    #expect(impact["sample_size"] as? Int == accepted && accepted >= 1)
                    let kinds = try #require(impact["kinds"] as? [[String: Any]])
                    let transit = try #require(kinds.first { $0["kind"] as? String == "transit_trip" })
                    #expect(transit["changed"] as? Int == 1)
                    #expect((transit["points_proposed"] as? Int ?? 0) < (transit["points_in_force"] as? Int ?? 0))
                    return body["id"] as? String ?? ""
                }
                let comment = ByteBuffer(string: #"{"comment": "checked"}"#)
                // The author may not approve their own proposal, whatever roles the key holds.
                try await client.execute(uri: "\(base)/\(id)/approve", method: .post, headers: Self.headers(k.author), body: comment) {
                    #expect($0.status == .forbidden)
                    #expect(Self.code($0) == "self_review")
                }
                try await client.execute(uri: "\(base)/\(id)/approve", method: .post, headers: Self.headers(k.approverA), body: comment) {
                    #expect($0.status == .ok)
                    let body = try Self.json($0.body)
                    #expect(body["counted_approvals"] as? Int == 1)
                }
                // The same approver twice counts once.
                try await client.execute(uri: "\(base)/\(id)/approve", method: .post, headers: Self.headers(k.approverA), body: comment) {
                    #expect($0.status == .conflict)
                    #expect(Self.code($0) == "already_reviewed")
                }
                try await client.execute(uri: "\(base)/\(id)/publish", method: .post, headers: Self.headers(k.publisher)) {
                    #expect($0.status == .conflict)
                    #expect(Self.code($0) == "approvals_missing")
                }
                // A second approval from a key revoked before publication stops counting.
                try await client.execute(uri: "\(base)/\(id)/approve", method: .post, headers: Self.headers(k.approverC), body: comment) {
                    let body = try Self.json($0.body)
                    #expect(body["counted_approvals"] as? Int == 2)
                }
                _ = try await services.operators.revoke(id: k.approverCID)
                try await client.execute(uri: "\(base)/\(id)", method: .get, headers: Self.headers(k.publisher)) {
                    let body = try Self.json($0.body)
                    #expect(body["counted_approvals"] as? Int == 1)
                    #expect((body["reviews"] as? [[String: Any]])?.filter { review in review["counts"] as? Bool == false }.count == 1)
                }
                try await client.execute(uri: "\(base)/\(id)/publish", method: .post, headers: Self.headers(k.publisher)) {
                    #expect(Self.code($0) == "approvals_missing")
                }
                try await client.execute(uri: "\(base)/\(id)/approve", method: .post, headers: Self.headers(k.approverB), body: comment) {
                    let body = try Self.json($0.body)
                    #expect(body["counted_approvals"] as? Int == 2)
                }
                // An approver may not also publish (default policy).
                try await client.execute(uri: "\(base)/\(id)/publish", method: .post, headers: Self.headers(k.approverB)) {
                    #expect($0.status == .forbidden)
                    #expect(Self.code($0) == "approver_may_not_publish")
                }
                try await client.execute(uri: "\(base)/\(id)/publish", method: .post, headers: Self.headers(k.publisher)) { response in
                    #expect(response.status == .created, "\(String(buffer: response.body))")
                    let body = try Self.json(response.body)
                    #expect(body["version"] as? Int == 2)
                }
                try await client.execute(uri: "\(base)/\(id)/publish", method: .post, headers: Self.headers(k.publisher)) {
                    #expect(Self.code($0) == "proposal_closed")
                }

                // Notice period: effective in 2 days cannot be published 7 days' notice after approval.
                let early = try await client.execute(
                    uri: base, method: .post, headers: Self.headers(k.author, yaml: true),
                    body: ByteBuffer(string: try Self.draft(version: 3, days: 2))
                ) { try Self.json($0.body)["id"] as? String ?? "" }
                for key in [k.approverA, k.approverB] {
                    try await client.execute(uri: "\(base)/\(early)/approve", method: .post, headers: Self.headers(key), body: comment) {
                        #expect($0.status == .ok)
                    }
                }
                try await client.execute(uri: "\(base)/\(early)/publish", method: .post, headers: Self.headers(k.publisher)) {
                    #expect($0.status == .conflict)
                    #expect(Self.code($0) == "notice_period")
                }
                // A rejection closes a proposal; malformed review bodies are 400.
                let rejected = try await client.execute(
                    uri: base, method: .post, headers: Self.headers(k.author, yaml: true),
                    body: ByteBuffer(string: try Self.draft(version: 3, days: 30))
                ) { try Self.json($0.body)["id"] as? String ?? "" }
                try await client.execute(
                    uri: "\(base)/\(rejected)/reject", method: .post, headers: Self.headers(k.approverA), body: ByteBuffer(string: #"{"comment": 5}"#)
                ) {
                    #expect(Self.code($0) == "malformed_json")
                }
                try await client.execute(
                    uri: "\(base)/\(rejected)/reject", method: .post, headers: Self.headers(k.approverA),
                    body: ByteBuffer(string: #"{"comment": "factor too low"}"#)
                ) {
                    let body = try Self.json($0.body)
                    #expect(body["state"] as? String == "rejected")
                }
                try await client.execute(uri: "\(base)/\(rejected)/approve", method: .post, headers: Self.headers(k.approverB), body: comment) {
                    #expect(Self.code($0) == "proposal_closed")
                }
                try await client.execute(uri: "\(base)/\(UUID().uuidString)", method: .get, headers: Self.headers(k.approverB)) {
                    #expect($0.status == .notFound)
                }
                try await client.execute(uri: base, method: .get, headers: Self.headers(k.approverB)) {
                    let body = try Self.json($0.body)
                    #expect((body["proposals"] as? [[String: Any]])?.count == 3)
                }

                // A direct-publish policy (development) lets a publisher key publish at once, as before.
                _ = try await services.governance.setPolicy(province: "CN-GD", directPublish: true, setBy: "test")
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: Self.headers(k.approverA, yaml: true),
                    body: ByteBuffer(string: try Self.draft(version: 3, days: 1))
                ) {
                    #expect(Self.code($0) == "role_required")
                }
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/rulesets", method: .post, headers: Self.headers(k.publisher, yaml: true),
                    body: ByteBuffer(string: try Self.draft(version: 3, days: 1))
                ) {
                    #expect($0.status == .created)
                }
            }
            #expect(try await services.ruleSets.list(province: "CN-GD").map(\.version) == [1, 2, 3])

            // Sealed and audited: every governance record is in the chain, the check holds.
            try await services.ledger.seal()
            let governed = try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE record LIKE 'ruleset_%'")
            let records = try await F.count(
                url,
                """
                SELECT (SELECT count(*) FROM ruleset_policies) + (SELECT count(*) FROM ruleset_proposals) + (SELECT count(*) FROM ruleset_reviews)
                     + (SELECT count(*) FROM ruleset_publications)
                """)
            #expect(governed == records && records > 0)
            let clean = try await A.audit(url)
            #expect(clean.0.exitCode == 0, "\(clean.0.stdout.prefix(2000))")
            #expect(A.check(clean.1, "governance")["status"] as? String == "ok")

            // Tamper: one approval rewritten to the author's key (as a database owner could).
            let pool = TestDatabase.makePool(url: url, size: 1)
            try await pool.withTransaction { connection in
                try connection.query("SET session_replication_role = replica")
                try connection.query(
                    """
                    UPDATE ruleset_reviews SET reviewer_id = \(k.authorID)
                    WHERE reviewer_id = (SELECT approver_ids[1] FROM ruleset_publications WHERE version = 2)
                      AND proposal_id = (SELECT proposal_id FROM ruleset_publications WHERE version = 2)
                    """)
            }
            await pool.shutdown()
            A.expectViolated(try await A.audit(url), "governance", "rule_set_version", "2")
        }
    }

    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }

    /// The sample CN-GD rules as `v`, effective `from`, approved until `until`.
    static func version(_ v: Int, from: Date, until: Date?) throws -> String {
        try F.ruleSetDocument()
            .replacingOccurrences(of: "version: 1", with: "version: \(v)")
            .replacingOccurrences(
                of: "effective_from: 2026-01-01T00:00:00+08:00",
                with: "effective_from: \(iso(from))" + (until.map { "\nvalid_until: \(iso($0))" } ?? ""))
    }

    @Test("valid_until: a lapsed approval credits nothing until the renewal takes over; listed for operators; a proposal carries it")
    func approvalPeriods() async throws {
        try await F.withLedger { services, url in
            let until = F.base.addingTimeInterval(2 * 86_400)
            _ = try await services.ruleSets.publish(document: try Self.version(2, from: F.base, until: until), publishedBy: "test")
            let citizen = UUID()
            func verdict(_ at: Date) async throws -> Verdict {
                let verdicts = try await services.ledger.submit(
                    [F.metro(at: at)], citizen: citizen, device: "d", receivedAt: at.addingTimeInterval(3600), sentAt: nil)
                return try #require(verdicts.first)
            }
            // Inside the approval (to its last millisecond, trips of 30 minutes): credited.
            #expect(try await verdict(until.addingTimeInterval(-3600)).status == .accepted)
            // From valid_until on, not credited under lapsed rules.
            let lapsed = try await verdict(until)
            #expect(lapsed.status == .rejected && lapsed.code == "ruleset_expired", "\(lapsed)")
            #expect(lapsed.message?.contains("v2") == true)
            let later = try await verdict(until.addingTimeInterval(86_400))
            #expect(later.code == "ruleset_expired")
            // A renewal (published late, so from after the last judged event) credits from its effective_from.
            let renewal = until.addingTimeInterval(2 * 86_400)
            _ = try await services.ruleSets.publish(document: try Self.version(3, from: renewal, until: nil), publishedBy: "test")
            #expect(try await verdict(renewal.addingTimeInterval(60)).status == .accepted)
            #expect(try await verdict(renewal.addingTimeInterval(-3600)).code == "ruleset_expired")

            // Operators see the approval period in the version list; an open-ended version has none.
            let (_, key) = try await services.operators.create(name: "author", provinces: ["CN-GD"])
            let v4 = try Self.version(4, from: renewal.addingTimeInterval(30 * 86_400), until: renewal.addingTimeInterval(400 * 86_400))
            let backwards = try Self.version(4, from: renewal.addingTimeInterval(30 * 86_400), until: renewal)
            let app = TanhuiApplication.build(services: services, tokens: await TestDatabase.tokens(), host: "127.0.0.1", port: 0)
            try await app.test(.router) { client in
                try await client.execute(uri: "/v1/provinces/CN-GD/rulesets", method: .get, headers: Self.headers(key)) {
                    let listed = try #require(try Self.json($0.body)["rule_sets"] as? [[String: Any]])
                    #expect(listed.map { $0["valid_until"] as? String } == [nil, Self.iso(until), nil])
                }
                // A proposal's approval period is the document's.
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/ruleset-proposals", method: .post, headers: Self.headers(key, yaml: true), body: ByteBuffer(string: v4)
                ) {
                    #expect($0.status == .created)
                    let proposal = try Self.json($0.body)
                    #expect(proposal["valid_until"] as? String == Self.iso(renewal.addingTimeInterval(400 * 86_400)))
                }
                // valid_until not after effective_from: refused with the problem at its line.
                try await client.execute(
                    uri: "/v1/provinces/CN-GD/ruleset-proposals", method: .post, headers: Self.headers(key, yaml: true),
                    body: ByteBuffer(string: backwards)
                ) {
                    #expect($0.status == .unprocessableContent)
                    #expect(String(buffer: $0.body).contains("inconsistent_range"))
                }
            }
            try await services.ledger.seal()
            let clean = try await A.audit(url)
            #expect(clean.0.exitCode == 0, "\(clean.0.stdout.prefix(2000))")
        }
    }

    @Test("the flow through the CLI: policy, propose, approve, reject, proposals, publish-proposal; refusals exit 1")
    func cliFlow() async throws {
        try await F.withLedger { services, url in
            let k = try await Self.keys(services)
            func run(_ arguments: [String], key: String? = nil) async throws -> CommandResult {
                try await CommandRunner.tanhui(arguments, databaseURL: url, environment: key.map { ["TANHUI_OPERATOR_KEY": $0] } ?? [:])
            }
            let created = try await run(["operator", "create", "--province", "CN-GD", "--name", "x", "--role", "author", "--role", "approver"])
            #expect(created.exitCode == 0 && created.stdout.contains("roles author,approver"), "\(created.stdout)\(created.stderr)")
            #expect(try await run(["operator", "create", "--province", "CN-GD", "--name", "x", "--role", "boss"]).exitCode == 1)

            let policy = try await run(["rules", "policy", "--province", "CN-GD", "--notice-days", "3"])
            #expect(policy.stdout.contains("required_approvals 2 notice_days 3"), "\(policy.stdout)\(policy.stderr)")
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("gov-\(UUID().uuidString).yaml").path
            try Self.draft(version: 2, days: 3.5).write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let proposed = try await run(["rules", "propose", file], key: k.author)
            #expect(proposed.exitCode == 0, "\(proposed.stderr)")
            let id = try #require(proposed.stdout.split(separator: " ").dropFirst().first.map(String.init))
            let own = try await run(["rules", "approve", id, "--province", "CN-GD", "--comment", "mine"], key: k.author)
            #expect(own.exitCode == 1 && own.stderr.contains("author"), "\(own.stderr)")
            #expect(try await run(["rules", "approve", id, "--province", "CN-GD", "--comment", "ok"], key: k.approverA).exitCode == 0)
            let twice = try await run(["rules", "approve", id, "--province", "CN-GD"], key: k.approverA)
            #expect(twice.exitCode == 1 && twice.stderr.contains("counts once"), "\(twice.stderr)")
            let early = try await run(["rules", "publish-proposal", id, "--province", "CN-GD"], key: k.publisher)
            #expect(early.exitCode == 1 && early.stderr.contains("1 of 2"), "\(early.stderr)")
            #expect(try await run(["rules", "approve", id, "--province", "CN-GD", "--comment", "ok"], key: k.approverB).exitCode == 0)
            let listed = try await run(["rules", "proposals", "--province", "CN-GD", id])
            #expect(
                listed.stdout.contains("open approvals 2/2") && listed.stdout.contains("approve by operator a"), "\(listed.stdout)\(listed.stderr)")
            let published = try await run(["rules", "publish-proposal", id, "--province", "CN-GD"], key: k.publisher)
            #expect(published.exitCode == 0 && published.stdout.contains("published CN-GD version 2"), "\(published.stdout)\(published.stderr)")

            try Self.draft(version: 3, days: 30).write(toFile: file, atomically: true, encoding: .utf8)
            let third = try await run(["rules", "propose", file], key: k.author)
            let thirdID = try #require(third.stdout.split(separator: " ").dropFirst().first.map(String.init))
            let rejected = try await run(["rules", "reject", thirdID, "--province", "CN-GD", "--comment", "no"], key: k.approverA)
            #expect(rejected.stdout.contains("rejected"), "\(rejected.stdout)\(rejected.stderr)")
            #expect(try await run(["rules", "propose", file]).exitCode == 1, "no key: refused")
            // The admin CLI (database credentials) still publishes directly, recorded as such.
            #expect(try await run(["rules", "publish", file]).exitCode == 0)
            #expect(try await F.count(url, "SELECT count(*) FROM ruleset_publications WHERE version = 3 AND mode = 'admin'") == 1)
            let list = try await run(["rules", "proposals", "--province", "CN-GD"])
            #expect(list.stdout.split(separator: "\n").count == 2)
        }
    }
}
