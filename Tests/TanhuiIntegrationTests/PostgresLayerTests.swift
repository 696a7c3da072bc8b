import Foundation
import Synchronization
import Testing

@testable import TanhuiPostgres

@Suite("PostgreSQL layer against the real test cluster", .needsDatabase)
struct PostgresLayerTests {
    @Test("a waiter on an exhausted pool times out with .poolTimeout instead of hanging")
    func poolExhaustionTimesOut() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url, size: 1, acquireTimeout: .milliseconds(300))
            // The holder keeps the only connection until the test releases it (bounded), so
            // nothing depends on how fast this machine is.
            let release = StopFlag()
            let holder = Task {
                try await pool.withConnection { connection in
                    try connection.query("SELECT 1")
                    let deadline = ContinuousClock.now + .seconds(120)
                    while !release.isSet && ContinuousClock.now < deadline { usleep(1_000) }
                }
            }
            try await Poll.until("the holder has the only connection") { pool.usage.inUse == 1 }
            await #expect(throws: PostgresError.self) {
                try await pool.withConnection { connection in try connection.query("SELECT 1") }
            }
            do {
                try await pool.withConnection { connection in try connection.query("SELECT 1") }
                Issue.record("expected pool timeout")
            } catch let error as PostgresError {
                #expect(error.kind == .poolTimeout)
                #expect(error.isUnavailable)
                #expect(error.description.contains("no database connection became free"))
            }
            // The waiters gave up while the holder still had the only connection.
            #expect(pool.usage.inUse == 1)
            release.set()
            _ = try await holder.value
            // Once the holder is done, the slot is usable again.
            let one = try await pool.withConnection { try $0.query("SELECT 1").scalar(Int.self) }
            #expect(one == 1)
            #expect(pool.usage.inUse == 0)
            await pool.shutdown()
        }
    }

    @Test("a statement cancelled by its timeout (57014) counts as unavailable: 503 with Retry-After, never a 500")
    func statementTimeoutIsUnavailable() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url, size: 1)
            do {
                try await pool.withConnection { connection in
                    try connection.query("SET statement_timeout = 50")
                    try connection.query("SELECT pg_sleep(5)")
                }
                Issue.record("expected the statement timeout")
            } catch let error as PostgresError {
                #expect(error.sqlState == "57014")
                #expect(error.isUnavailable)
            }
            await pool.shutdown()
        }
    }

    @Test("withTransaction rolls back everything when the body throws")
    func rollbackOnThrow() async throws {
        struct Boom: Error {}
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            try await pool.withConnection { try $0.query("CREATE TABLE items (id int PRIMARY KEY)") }
            await #expect(throws: Boom.self) {
                try await pool.withTransaction { connection in
                    try connection.query("INSERT INTO items VALUES (\(1))")
                    try connection.query("INSERT INTO items VALUES (\(2))")
                    throw Boom()
                }
            }
            let count = try await pool.withConnection { try $0.query("SELECT count(*) FROM items").scalar(Int.self) }
            #expect(count == 0)
            // The connection that saw the rollback is clean and reusable.
            try await pool.withTransaction { try $0.query("INSERT INTO items VALUES (\(3))") }
            let after = try await pool.withConnection { try $0.query("SELECT count(*) FROM items").scalar(Int.self) }
            #expect(after == 1)
            await pool.shutdown()
        }
    }

    @Test("a provoked serialization failure (40001) is retried and then succeeds")
    func retriesSerializationFailure() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            try await pool.withConnection { connection in
                try connection.query("CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL)")
                try connection.query("INSERT INTO counters VALUES (1, 0)")
            }
            let attempts = AttemptCounter()
            let final = try await pool.withTransaction(isolation: .repeatableRead) { connection -> Int in
                let attempt = attempts.next()
                let value = try connection.query("SELECT value FROM counters WHERE id = 1").scalar(Int.self)
                if attempt == 1 {
                    // Another session commits a change to the row after our snapshot was taken.
                    let other = try PostgresConnection.connect(.init(url: url))
                    try other.query("UPDATE counters SET value = value + 100 WHERE id = 1")
                    other.close()
                }
                try connection.query("UPDATE counters SET value = \(value + 1) WHERE id = 1")
                return value + 1
            }
            #expect(attempts.count == 2)
            #expect(final == 101)
            let stored = try await pool.withConnection { try $0.query("SELECT value FROM counters").scalar(Int.self) }
            #expect(stored == 101)
            await pool.shutdown()
        }
    }

    @Test("retries are bounded: a failure that always recurs surfaces as 40001")
    func retriesAreBounded() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            let attempts = AttemptCounter()
            do {
                try await pool.withTransaction(maximumAttempts: 3) { connection in
                    _ = attempts.next()
                    try connection.query("DO $$ BEGIN RAISE EXCEPTION 'provoked' USING ERRCODE = '40001'; END $$")
                }
                Issue.record("expected a serialization failure")
            } catch let error as PostgresError {
                #expect(error.sqlState == "40001")
            }
            #expect(attempts.count == 3)
            await pool.shutdown()
        }
    }

    @Test("UUID text by table lookup matches Foundation's, and the parser refuses what is not canonical")
    func uuidText() throws {
        for _ in 0..<1000 {
            let id = UUID()
            #expect(id.postgresText == id.uuidString.lowercased())
            #expect(try UUID(postgresText: id.uuidString) == id)
            #expect(try UUID(postgresText: id.uuidString.lowercased()) == id)
        }
        for bad in [
            "", "not-a-uuid", "0b9e4a52-6f0e-4c57-9d61-3f7f2a8c1d1", "0b9e4a52x6f0e-4c57-9d61-3f7f2a8c1d10", "0b9e4a52-6f0e-4c57-9d61-3f7f2a8c1d1g",
        ] {
            #expect(throws: PostgresError.self) { try UUID(postgresText: bad) }
        }
    }

    @Test("integers decode from the cells' bytes: both ends of each width, signs, overflow refused; rows outlive their result's query")
    func integersFromBytes() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            let rows = try await pool.withConnection { connection in
                try connection.query(
                    """
                    SELECT '9223372036854775807', '-9223372036854775808', '9223372036854775808', '+42', '007', '-', '', '2147483648', '-0', '12a', NULL
                    """
                ).rows
            }
            // The rows were kept after the connection went back to the pool: they own their cells.
            let row = rows[0]
            #expect(try row.decode(0, as: Int64.self) == Int64.max)
            #expect(try row.decode(1, as: Int64.self) == Int64.min)
            #expect(throws: PostgresError.self) { try row.decode(2, as: Int64.self) }
            #expect(try row.decode(3, as: Int64.self) == 42)
            #expect(try row.decode(4, as: Int.self) == 7)
            #expect(throws: PostgresError.self) { try row.decode(5, as: Int64.self) }
            #expect(throws: PostgresError.self) { try row.decode(6, as: Int64.self) }
            #expect(throws: PostgresError.self) { try row.decode(7, as: Int32.self) }
            #expect(try row.decode(7, as: Int64.self) == 2_147_483_648)
            #expect(try row.decode(8, as: Int64.self) == 0)
            #expect(throws: PostgresError.self) { try row.decode(9, as: Int64.self) }
            #expect(try row.decode(10, as: Int64?.self) == nil)
            #expect(row.text(10) == nil && row.text(0) == "9223372036854775807" && row.text(99) == nil)
            #expect(row.withBytes(1) { $0.map { Array($0) } } == Array("-9223372036854775808".utf8))
            #expect(row.withBytes(10) { $0 == nil })
            await pool.shutdown()
        }
    }

    @Test("quotes, backslashes, SQL metacharacters, unicode and binary round-trip unchanged")
    func valuesRoundTrip() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            let hostile = "O'Reilly \"quoted\" \\ backslash \\x00 $1 ; DROP TABLE t; -- 碳惠 \t tab \n newline 🚲"
            let bytes = PostgresBytes((1...255).map { UInt8($0) } + [0, 0, 7])
            let id = UUID()
            let instant = Date(timeIntervalSince1970: 1_803_456_789.123456)
            let row = try await pool.withConnection { connection in
                try connection.query(
                    """
                    SELECT \(hostile)::text, \(bytes)::bytea, \(id)::uuid, \(instant)::timestamptz, \(Int64.min)::bigint, \(true)::boolean, \(String?.none)::text IS NULL
                    """
                ).rows[0]
            }
            #expect(try row.decode(0, as: String.self) == hostile)
            #expect(try row.decode(1, as: PostgresBytes.self) == bytes)
            #expect(try row.decode(2, as: UUID.self) == id)
            let decodedInstant = try row.decode(3, as: Date.self)
            #expect(abs(decodedInstant.timeIntervalSince(instant)) < 0.000_001)
            #expect(try row.decode(4, as: Int64.self) == Int64.min)
            #expect(try row.decode(5, as: Bool.self))
            #expect(try row.decode(6, as: Bool.self))
            // A NUL inside a text parameter is refused before it reaches the server.
            await #expect(throws: PostgresError.self) {
                try await pool.withConnection { try $0.query("SELECT \("a\u{0}b")::text") }
            }
            await pool.shutdown()
        }
    }

    @Test("COPY FROM STDIN round-trips escaped values and NULLs; a bad row copies nothing")
    func copyRoundTrip() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            try await pool.withConnection { try $0.query("CREATE TABLE copied (id int PRIMARY KEY, note text)") }
            let notes: [String?] = (0..<1000).map { $0 % 7 == 0 ? nil : "row \($0)\t\\N \\ \n\r 'q' \"d\" 碳" }
            let copied = try await pool.withConnection { connection in
                try connection.copyIn("COPY copied (id, note) FROM STDIN", rows: notes.enumerated().map { [String($0.offset), $0.element] })
            }
            #expect(copied == 1000)
            let stored = try await pool.withConnection { connection in
                try connection.query("SELECT note FROM copied ORDER BY id").rows.map { try $0.decode(0, as: String?.self) }
            }
            #expect(stored == notes)
            // A duplicate key aborts the whole COPY.
            await #expect(throws: PostgresError.self) {
                try await pool.withConnection { connection in
                    try connection.copyIn("COPY copied (id, note) FROM STDIN", rows: [["5000", "new"], ["1", "dup"]])
                }
            }
            let count = try await pool.withConnection { try $0.query("SELECT count(*) FROM copied").scalar(Int.self) }
            #expect(count == 1000)
            await pool.shutdown()
        }
    }

    @Test("pipeline mode sends many statements in one round trip, and stops at the first error")
    func pipelineRoundTrip() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            try await pool.withConnection { try $0.query("CREATE TABLE piped (id int PRIMARY KEY, label text)") }
            let results = try await pool.withTransaction { connection in
                var queries: [PostgresQuery] = (1...200).map { "INSERT INTO piped VALUES (\($0), \("label \($0)"))" }
                queries.append("SELECT count(*), max(label) FROM piped")
                return try connection.pipeline(queries)
            }
            #expect(results.count == 201)
            #expect(results[0].affectedRows == 1)
            #expect(try results[200].scalar(Int.self) == 200)
            do {
                _ = try await pool.withTransaction { connection in
                    try connection.pipeline([
                        "INSERT INTO piped VALUES (\(1000), 'x')", "INSERT INTO piped VALUES (\(1), 'dup')",
                        "INSERT INTO piped VALUES (\(1001), 'y')",
                    ])
                }
                Issue.record("expected a unique violation")
            } catch let error as PostgresError {
                #expect(error.isUniqueViolation)
                #expect(error.operation == "pipeline")
            }
            let count = try await pool.withConnection { try $0.query("SELECT count(*) FROM piped").scalar(Int.self) }
            #expect(count == 200)
            await pool.shutdown()
        }
    }

    @Test("a changed applied migration is refused; status reports it")
    func changedMigrationRefused() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            let original = [
                Migration(name: "0001_a.sql", sql: "CREATE TABLE a (id int);"), Migration(name: "0002_b.sql", sql: "CREATE TABLE b (id int);"),
            ]
            #expect(try await Migrator(pool: pool, migrations: original).migrate() == ["0001_a.sql", "0002_b.sql"])
            #expect(try await Migrator(pool: pool, migrations: original).migrate() == [])
            let edited = [
                Migration(name: "0001_a.sql", sql: "CREATE TABLE a (id bigint);"), original[1],
                Migration(name: "0003_c.sql", sql: "CREATE TABLE c (id int);"),
            ]
            let status = try await Migrator(pool: pool, migrations: edited).status()
            #expect(status.changed == ["0001_a.sql"])
            #expect(status.pending == ["0003_c.sql"])
            #expect(!status.isCurrent)
            await #expect(throws: MigrationError.self) {
                try await Migrator(pool: pool, migrations: edited).migrate()
            }
            let cExists = try await pool.withConnection { try $0.query("SELECT to_regclass('c') IS NOT NULL").scalar(Bool.self) }
            #expect(!cExists)
            await pool.shutdown()
        }
    }

    @Test("a failing migration rolls back alone and leaves earlier ones applied")
    func failingMigrationRollsBack() async throws {
        try await TestDatabase.withFresh(migrated: false) { url in
            let pool = TestDatabase.makePool(url: url)
            let migrations = [
                Migration(name: "0001_ok.sql", sql: "CREATE TABLE ok (id int);"),
                Migration(name: "0002_bad.sql", sql: "CREATE TABLE half (id int); SELECT no_such_function();"),
            ]
            await #expect(throws: PostgresError.self) { try await Migrator(pool: pool, migrations: migrations).migrate() }
            let status = try await Migrator(pool: pool, migrations: migrations).status()
            #expect(status.applied.map(\.name) == ["0001_ok.sql"])
            #expect(status.pending == ["0002_bad.sql"])
            let halfExists = try await pool.withConnection { try $0.query("SELECT to_regclass('half') IS NOT NULL").scalar(Bool.self) }
            #expect(!halfExists)
            await pool.shutdown()
        }
    }
}

/// Counts closure attempts across retries (the closure runs on pool threads).
final class AttemptCounter: Sendable {
    private let value = Mutex(0)
    func next() -> Int {
        value.withLock {
            $0 += 1
            return $0
        }
    }
    var count: Int { value.withLock { $0 } }
}
