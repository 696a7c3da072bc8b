import Foundation
import TanhuiPostgres
import Testing

@Suite("tanhui rules / tanhui operator against the real database", .needsDatabase)
struct RuleSetCLITests {
    static var samples: [String] {
        ["CN-BJ", "CN-CQ", "CN-GD", "CN-SH"].map { CommandRunner.repoRoot + "/Schema/rulesets/\($0).yaml" }
    }

    static func writeTemporary(_ text: String, name: String = "ruleset.yaml") throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tanhui-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func count(_ url: String, _ sql: PostgresQuery) async throws -> Int {
        let pool = TestDatabase.makePool(url: url, size: 1)
        let value = try await pool.withConnection { try $0.query(sql).scalar(Int.self) }
        await pool.shutdown()
        return value
    }

    @Test("samples publish, list, show byte-for-byte with their hash, and republish is refused or a no-op")
    func publishListShow() async throws {
        try await TestDatabase.withFresh { url in
            for sample in Self.samples {
                let result = try await CommandRunner.tanhui(["rules", "publish", "--by", "test", sample], databaseURL: url)
                #expect(result.exitCode == 0, "\(sample): \(result.stdout) \(result.stderr)")
                #expect(result.stdout.hasPrefix("published CN-"))
                #expect(result.stdout.contains("version 1 effective from 2025-12-31T16:00:00Z"))
            }
            let list = try await CommandRunner.tanhui(["rules", "list"], databaseURL: url)
            #expect(list.stdout.split(separator: "\n").count == 4)
            let gdOnly = try await CommandRunner.tanhui(["rules", "list", "--province", "CN-GD"], databaseURL: url)
            #expect(gdOnly.stdout.split(separator: "\n").count == 1)

            let original = try String(contentsOfFile: Self.samples[2], encoding: .utf8)
            let show = try await CommandRunner.tanhui(["rules", "show", "CN-GD", "1"], databaseURL: url)
            #expect(show.exitCode == 0)
            #expect(show.stdout == original)
            let hash = try await CommandRunner.run("/usr/bin/sha256sum", [Self.samples[2]]).stdout.prefix(64)
            #expect(show.stderr.contains("content_sha256 \(hash)"))

            let again = try await CommandRunner.tanhui(["rules", "publish", Self.samples[2]], databaseURL: url)
            #expect(again.exitCode == 1)
            #expect(again.stdout.contains("version: version_not_increasing"))
            let idempotent = try await CommandRunner.tanhui(["rules", "publish", "--if-absent", Self.samples[2]], databaseURL: url)
            #expect(idempotent.exitCode == 0)
            #expect(idempotent.stdout.hasPrefix("already published CN-GD version 1"))
            #expect(try await Self.count(url, "SELECT count(*) FROM rule_sets") == 4)

            let missing = try await CommandRunner.tanhui(["rules", "show", "CN-GD", "9"], databaseURL: url)
            #expect(missing.exitCode == 1)
            #expect(missing.stderr.contains("CN-GD version 9 is not published"))
        }
    }

    @Test("a broken copy of each sample lists every problem with path, line and column, and stores nothing")
    func brokenCopiesAreRejected() async throws {
        try await TestDatabase.withFresh { url in
            for sample in Self.samples {
                var text = try String(contentsOfFile: sample, encoding: .utf8)
                text = text.replacingOccurrences(of: "grams_per_point: ", with: "grams_per_pont: ")
                text = text.replacingOccurrences(of: "timezone: Asia/Shanghai", with: "timezone: Mars/Olympus")
                let path = try Self.writeTemporary(text)
                let validate = try await CommandRunner.tanhui(["rules", "validate", path], databaseURL: url)
                #expect(validate.exitCode == 1)
                let lines = validate.stdout.split(separator: "\n")
                #expect(lines.contains { $0.contains(": grams_per_pont: unknown_key:") }, "\(validate.stdout)")
                #expect(lines.contains { $0.contains(": timezone: unknown_timezone:") })
                #expect(lines.contains { $0.contains(": grams_per_point: missing:") })
                // The unknown key is reported at its own line in the file.
                let keyLine = text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.hasPrefix("grams_per_pont:") }! + 1
                #expect(lines.contains { $0.hasPrefix("\(path):\(keyLine):1: grams_per_pont") })
                let publish = try await CommandRunner.tanhui(["rules", "publish", path], databaseURL: url)
                #expect(publish.exitCode == 1)
            }
            #expect(try await Self.count(url, "SELECT count(*) FROM rule_sets") == 0)
            // Valid documents validate silently.
            let valid = try await CommandRunner.tanhui(["rules", "validate", Self.samples[0]], databaseURL: url)
            #expect(valid.exitCode == 0)
            #expect(valid.stdout.isEmpty)
        }
    }

    @Test("diff names factor changes old → new; a retroactive effective_from is refused naming the earliest instant")
    func diffAndRetroactivity() async throws {
        try await TestDatabase.withFresh { url in
            _ = try await CommandRunner.tanhui(["rules", "publish", Self.samples[2]], databaseURL: url)
            let original = try String(contentsOfFile: Self.samples[2], encoding: .utf8)
            let v2 = original.replacingOccurrences(of: "version: 1", with: "version: 2")
                .replacingOccurrences(of: "grams_per_km: 46.7", with: "grams_per_km: 48.2")
            let v2Path = try Self.writeTemporary(v2)
            let published = try await CommandRunner.tanhui(["rules", "publish", v2Path], databaseURL: url)
            #expect(published.exitCode == 0, "\(published.stdout)\(published.stderr)")
            let diff = try await CommandRunner.tanhui(["rules", "diff", "CN-GD", "1", "2"], databaseURL: url)
            #expect(diff.stdout.contains("version: 1 → 2"))
            #expect(diff.stdout.contains("transit_trip.modes.metro.grams_per_km: 46.7 → 48.2"))

            // Pretend verdicts exist up to 2027-03-01 (the ledger defines this function for real).
            let pool = TestDatabase.makePool(url: url, size: 1)
            try await pool.withConnection { connection in
                try connection.query(
                    """
                    CREATE OR REPLACE FUNCTION tanhui_province_judged_through(p_province text) RETURNS timestamptz
                    LANGUAGE sql STABLE AS $$ SELECT '2027-03-01T00:00:00Z'::timestamptz $$
                    """)
            }
            await pool.shutdown()
            let v3 = v2.replacingOccurrences(of: "version: 2", with: "version: 3")
            let v3Path = try Self.writeTemporary(v3)
            let refused = try await CommandRunner.tanhui(["rules", "publish", v3Path], databaseURL: url)
            #expect(refused.exitCode == 1)
            #expect(refused.stdout.contains("effective_from: retroactive_effective_from"))
            #expect(refused.stdout.contains("effective_from must be at or after 2027-03-01T08:00:01+08:00"), "\(refused.stdout)")
            let future = v3.replacingOccurrences(of: "effective_from: 2026-01-01T00:00:00+08:00", with: "effective_from: 2027-04-01T00:00:00+08:00")
            #expect(future != v3)
            let accepted = try await CommandRunner.tanhui(["rules", "publish", try Self.writeTemporary(future)], databaseURL: url)
            #expect(accepted.exitCode == 0, "\(accepted.stdout)")
        }
    }

    @Test("simulate a file or a published version over JSONL events: per-event verdicts and totals, nothing written")
    func simulate() async throws {
        try await TestDatabase.withFresh { url in
            _ = try await CommandRunner.tanhui(["rules", "publish", Self.samples[2]], databaseURL: url)
            let events = """
                {"id":"0192a000-0000-7000-8000-000000000001","kind":"transit_trip","province":"CN-GD","occurred_at":"2027-03-01T07:31:00+08:00","ended_at":"2027-03-01T07:52:00+08:00","data":{"mode":"metro","distance_m":12400}}
                {"id":"0192a000-0000-7000-8000-000000000002","kind":"teleport","province":"CN-GD","occurred_at":"2027-03-01T09:00:00+08:00"}
                {"id":"not-a-uuid","kind":"bike_ride"}
                """
            let eventsPath = try Self.writeTemporary(events, name: "events.jsonl")
            for target in ["CN-GD@1", Self.samples[2]] {
                let result = try await CommandRunner.tanhui(["rules", "simulate", target, "--events", eventsPath], databaseURL: url)
                #expect(result.exitCode == 0, "\(result.stderr)")
                #expect(result.stdout.contains("0192a000-0000-7000-8000-000000000001  accepted  579 g  57 points"))
                #expect(result.stdout.contains("rejected  kind_not_covered"))
                #expect(result.stdout.contains("line 3  invalid  id: id must be a UUID"))
                #expect(result.stdout.contains("total: 1 accepted, 1 rejected, 1 invalid; 579 g CO2e, 57 points (CN-GD v1)"))
            }
            let late = try await CommandRunner.tanhui(
                ["rules", "simulate", "CN-GD@1", "--events", eventsPath, "--received-at", "2028-01-01T00:00:00+08:00"], databaseURL: url)
            #expect(late.stdout.contains("rejected  too_old"))
            #expect(try await Self.count(url, "SELECT count(*) FROM rule_sets") == 1)
        }
    }

    @Test("operator keys: created once, listed without the key, stored hashed, revocable")
    func operatorLifecycle() async throws {
        try await TestDatabase.withFresh { url in
            let created = try await CommandRunner.tanhui(
                ["operator", "create", "--province", "CN-GD", "--province", "CN-SH", "--name", "粤 operator"], databaseURL: url)
            #expect(created.exitCode == 0, "\(created.stderr)")
            let key = try #require(created.stdout.split(separator: "\n").first { $0.hasPrefix("key thk_") }).dropFirst(4)
            #expect(key.count == 47)
            let id = String(created.stdout.split(separator: " ")[1])
            let list = try await CommandRunner.tanhui(["operator", "list"], databaseURL: url)
            #expect(list.stdout.contains("\(id)  粤 operator  CN-GD,CN-SH  author,approver,publisher  active"))
            #expect(!list.stdout.contains(String(key)))
            #expect(try await Self.count(url, "SELECT count(*) FROM operators WHERE key_sha256 = encode(sha256(\(String(key))::bytea), 'hex')") == 1)
            let revoked = try await CommandRunner.tanhui(["operator", "revoke", id], databaseURL: url)
            #expect(revoked.exitCode == 0)
            let after = try await CommandRunner.tanhui(["operator", "list"], databaseURL: url)
            #expect(after.stdout.contains("revoked"))
            let bad = try await CommandRunner.tanhui(["operator", "create", "--province", "CN-44", "--name", "x"], databaseURL: url)
            #expect(bad.exitCode == 1)
            #expect(bad.stderr.contains("unknown province CN-44"))
        }
    }
}
