import Foundation
import Synchronization
import TanhuiPostgres
import TanhuiService
import Testing

/// Tries to break Tanhui the way production will. The oracle: every verdict a 200 carried is
/// stored once with exactly that verdict (and is never judged afresh a second time), every
/// deliberate retry comes back `duplicate` of it, every batch is stored whole or not at all,
/// nothing is credited twice, and the audit passes. No assertion is about elapsed time; every
/// wait polls a condition with a deadline.
@Suite("Reliability: crashes, restarts, shutdown", .needsDatabase, .serialized)
struct ReliabilityTests {
    typealias F = LedgerFixtures

    /// One per-event result of a 200, reduced to what the oracle compares.
    struct Seen: Sendable, Equatable {
        var id: String
        var status: String
        var originalStatus: String?
        var code: String?
        var points: Int?

        /// The verdict that was stored: a duplicate repeats the first one.
        var judged: String { status == "duplicate" ? (originalStatus ?? "?") : status }

        init(_ object: [String: Any]) {
            id = (object["id"] as? String ?? "").lowercased()
            status = object["status"] as? String ?? "?"
            originalStatus = object["original_status"] as? String
            code = object["code"] as? String
            points = (object["award"] as? [String: Any])?["points"] as? Int
        }
    }

    /// Everything the clients saw: every acknowledged response (never only the first per id),
    /// and every attempt's outcome.
    final class Book: Sendable {
        struct Acknowledgement: Sendable {
            var batch: String
            var ids: [String]
            var deliberateRetry: Bool
            var results: [Seen]
        }
        private let state = Mutex<(acks: [Acknowledgement], statuses: [Int], lostInFlight: Int, timedOut: Int, abandoned: [[String]])>(
            ([], [], 0, 0, []))
        let inFlight = Atomic<Int>(0)

        func attempt(_ reply: HTTPReply) {
            state.withLock { state in
                state.statuses.append(reply.status)
                if reply.lostInFlight { state.lostInFlight += 1 }
                if reply.timedOut { state.timedOut += 1 }
            }
        }
        func acknowledged(_ ack: Acknowledgement) { state.withLock { $0.acks.append(ack) } }
        /// A book holding exactly these acknowledgements (for the oracle's own mutation test).
        static func replaying(_ acks: [Acknowledgement]) -> Book {
            let book = Book()
            for ack in acks { book.acknowledged(ack) }
            return book
        }
        func abandoned(_ ids: [String]) { state.withLock { $0.abandoned.append(ids) } }
        var acks: [Acknowledgement] { state.withLock { $0.acks } }
        var statuses: [Int] { state.withLock { $0.statuses } }
        var lostInFlight: Int { state.withLock { $0.lostInFlight } }
        var timedOut: Int { state.withLock { $0.timedOut } }
        var abandonedBatches: [[String]] { state.withLock { $0.abandoned } }
    }

    struct Batch: Sendable {
        var name: String
        var ids: [String]
        var body: Data
    }

    static func event(_ id: UUID, kind: String, start: Date, minutes: Double, data: [String: Any]) -> [String: Any] {
        var object: [String: Any] = ["id": id.uuidString, "kind": kind, "province": "CN-GD", "occurred_at": F.iso(start), "data": data]
        if kind == "transit_trip" { object["ended_at"] = F.iso(start.addingTimeInterval(minutes * 60)) }
        return object
    }

    /// `count` batches of `size` events (waste check-ins and bus trips, 15 minutes apart, all
    /// within the submission window) for client `client`; names are unique per client.
    static func batches(client: Int, count: Int, size: Int = 5) -> [Batch] {
        (0..<count).map { batch(client: client, index: $0, size: size) }
    }

    /// Batch `index` of client `client` (events of later batches lie further back; beyond the
    /// 30-day window they are rejected `too_old`, still a stored verdict).
    static func batch(client: Int, index: Int, size: Int = 5, now: Date = Date()) -> Batch {
        let ids = (0..<size).map { _ in UUID() }
        let events = ids.enumerated().map { slot, id in
            let start = now.addingTimeInterval(-Double((index * size + slot) * 900 + 600))
            return slot % 2 == 0
                ? event(id, kind: "waste_sorting", start: start, minutes: 0, data: [:])
                : event(id, kind: "transit_trip", start: start, minutes: 10, data: ["mode": "bus", "distance_m": 5_000 + slot * 100])
        }
        let body = try! JSONSerialization.data(withJSONObject: ["events": events, "sent_at": F.iso(now)])
        return Batch(name: "c\(client)b\(index)", ids: ids.map { $0.uuidString.lowercased() }, body: body)
    }

    static func tokens(_ count: Int, _ make: (Int) async throws -> String) async throws -> [String] {
        var tokens: [String] = []
        for index in 0..<count { tokens.append(try await make(index)) }
        return tokens
    }

    static func push(_ baseURL: String, token: String, body: Data, book: Book, timeoutSeconds: Int = 30) async throws -> HTTPReply {
        book.inFlight.add(1, ordering: .sequentiallyConsistent)
        defer { book.inFlight.subtract(1, ordering: .sequentiallyConsistent) }
        let reply = try await HTTPClient.request(
            "POST", baseURL + "/v1/sync/push",
            headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"], body: body, timeoutSeconds: timeoutSeconds)
        book.attempt(reply)
        return reply
    }

    static func results(of reply: HTTPReply) -> [Seen]? {
        guard reply.status == 200, let object = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any],
            let results = object["results"] as? [[String: Any]]
        else { return nil }
        return results.map(Seen.init)
    }

    /// Pushes `batch` until a 200 with results arrives (bounded); records it and returns it.
    @discardableResult
    static func pushUntilAcknowledged(
        baseURL: @Sendable () -> String, token: String, batch: Batch, deliberateRetry: Bool, book: Book, attempts: Int = 400
    ) async throws -> [Seen] {
        for _ in 0..<attempts {
            let reply = try await push(baseURL(), token: token, body: batch.body, book: book)
            // A 200 whose body was cut by a crash is not an acknowledgement: retry.
            if let results = results(of: reply) {
                book.acknowledged(.init(batch: batch.name, ids: batch.ids, deliberateRetry: deliberateRetry, results: results))
                return results
            }
            // Client back-off between retries (not synchronisation: any delay is correct).
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("batch \(batch.name) never acknowledged; statuses: \(Set(book.statuses))")
        return []
    }

    /// Open transactions of the service role on `url`'s database, seen from the owner.
    static func serviceTransactions(_ pool: PostgresPool) async throws -> Int {
        try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND usename = 'tanhui_service' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
                """
            ).scalar(Int.self)
        }
    }

    static func serviceSessions(_ pool: PostgresPool) async throws -> Int {
        try await pool.withConnection { connection in
            try connection.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'tanhui_service'").scalar(
                Int.self)
        }
    }

    static func unsealed(_ url: String) async throws -> Int {
        try await F.count(
            url,
            "SELECT count(*) FROM ledger_transactions t WHERE NOT EXISTS (SELECT 1 FROM ledger_chain c WHERE c.province = t.province AND c.transaction_id = t.transaction_id)"
        )
    }

    /// The oracle over everything the clients were told.
    static func checkOracle(url: String, book: Book, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let acks = book.acks
        // Every 200 answers every event of its batch, in request order.
        for ack in acks {
            #expect(ack.results.map(\.id) == ack.ids, "batch \(ack.batch): results do not answer its events in order", sourceLocation: sourceLocation)
        }
        // A deliberate retry of an acknowledged batch is a duplicate of each first verdict.
        var firstOfBatch: [String: [Seen]] = [:]
        for ack in acks where !ack.deliberateRetry { firstOfBatch[ack.batch] = firstOfBatch[ack.batch] ?? ack.results }
        for ack in acks where ack.deliberateRetry {
            let first = try #require(firstOfBatch[ack.batch], "retry of \(ack.batch) before its acknowledgement", sourceLocation: sourceLocation)
            for (again, original) in zip(ack.results, first) {
                #expect(
                    again.status == "duplicate", "retry of \(ack.batch): \(again.id) came back \(again.status), not duplicate",
                    sourceLocation: sourceLocation)
                #expect(
                    again.originalStatus == original.judged,
                    "retry of \(ack.batch): \(again.id) original_status \(again.originalStatus ?? "nil") ≠ \(original.judged)",
                    sourceLocation: sourceLocation)
                #expect(
                    again.points == original.points && again.code == original.code, "retry of \(ack.batch): \(again.id) award/code changed",
                    sourceLocation: sourceLocation)
            }
        }
        // All verdicts per id (not only the first): one judgement at most, all agreeing. A
        // second fresh judgement means a 200 was sent for a commit that did not survive.
        var byID: [String: [Seen]] = [:]
        for ack in acks { for seen in ack.results { byID[seen.id, default: []].append(seen) } }
        for (id, seen) in byID {
            #expect(
                seen.filter { $0.status != "duplicate" }.count <= 1, "\(id) judged afresh more than once: \(seen.map(\.status))",
                sourceLocation: sourceLocation)
            #expect(Set(seen.map(\.judged)).count == 1, "\(id) verdicts disagree: \(seen)", sourceLocation: sourceLocation)
            #expect(Set(seen.map { $0.points ?? -1 }).count == 1, "\(id) awards disagree: \(seen)", sourceLocation: sourceLocation)
        }
        // Acknowledged means durable: stored once, with that verdict and that award.
        let pool = TestDatabase.makePool(url: url, size: 1)
        let stored: [String: (status: String, points: Int?)] = try await pool.withConnection { connection in
            var map: [String: (String, Int?)] = [:]
            for row in try connection.query(
                """
                SELECT e.event_id::text, e.status, t.points::int FROM events e
                LEFT JOIN ledger_transactions t ON t.province = e.province AND t.event_id = e.event_id AND t.kind = 'award'
                """
            ).rows {
                map[try row.decode(0, as: String.self)] = (try row.decode(1, as: String.self), try row.decode(2, as: Int?.self))
            }
            return map
        }
        await pool.shutdown()
        for (id, seen) in byID {
            let row = stored[id]
            #expect(
                row?.status == seen[0].judged, "acknowledged \(id) as \(seen[0].judged) but stored \(row.map { $0.status } ?? "nothing")",
                sourceLocation: sourceLocation)
            #expect(
                row?.points == seen[0].points, "acknowledged \(id) with \(seen[0].points ?? -1) points, ledger has \(row?.points ?? -1)",
                sourceLocation: sourceLocation)
        }
        // Whole batch or none: every batch ever sent (acknowledged or abandoned) is stored
        // entirely or not at all, and nothing is stored that no batch contained.
        var sentIDs = Set<String>()
        for ids in Set(acks.map(\.ids)).union(book.abandonedBatches) {
            let present = ids.filter { stored[$0] != nil }.count
            #expect(present == 0 || present == ids.count, "batch stored partly: \(present) of \(ids.count)", sourceLocation: sourceLocation)
            sentIDs.formUnion(ids)
        }
        #expect(Set(stored.keys).isSubset(of: sentIDs), "events stored that no batch sent", sourceLocation: sourceLocation)
        #expect(
            try await F.count(
                url,
                "SELECT count(*) FROM (SELECT province, event_id FROM ledger_transactions WHERE kind = 'award' GROUP BY 1, 2 HAVING count(*) > 1) x")
                == 0, sourceLocation: sourceLocation)
        let audit = try await CommandRunner.tanhui(["audit"], databaseURL: url)
        #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)", sourceLocation: sourceLocation)
    }

    @Test("server killed with SIGKILL and restarted 10 times mid-load: every 200 durable, retries duplicate, batches whole")
    func serverCrashes() async throws {
        try await F.withLedger { _, url in
            let current = Locked(try await ServerProcess.start(databaseURL: url))
            let baseURL: @Sendable () -> String = { current.withLock { $0.baseURL } }
            let book = Book()
            let killingDone = StopFlag()
            let sentBatches = Locked(0)
            let tokens = try await Self.tokens(4) { index in
                try await TestDatabase.tokens().issue(citizen: UUID(), device: "crash-\(index)", ttl: 3600)
            }
            let clients = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // Three clients push and deliberately retry until the kills are over (at least
                    // 12 batches each, at most 500).
                    for index in 0..<3 {
                        group.addTask {
                            for number in 0..<500 where number < 12 || !killingDone.isSet {
                                let batch = Self.batch(client: index, index: number)
                                sentBatches.withLock { $0 += 1 }
                                try await Self.pushUntilAcknowledged(
                                    baseURL: baseURL, token: tokens[index], batch: batch, deliberateRetry: false, book: book)
                                // A deliberate retry of an acknowledged batch.
                                try await Self.pushUntilAcknowledged(
                                    baseURL: baseURL, token: tokens[index], batch: batch, deliberateRetry: true, book: book)
                            }
                        }
                    }
                    // A fourth client sends each batch once and never retries: a batch cut by a
                    // crash stays cut, so whole-or-none is observable in what is stored.
                    group.addTask {
                        for number in 0..<2_000 where !killingDone.isSet {
                            let batch = Self.batch(client: 3, index: number)
                            let reply = try await Self.push(baseURL(), token: tokens[3], body: batch.body, book: book)
                            if let results = Self.results(of: reply) {
                                book.acknowledged(.init(batch: batch.name, ids: batch.ids, deliberateRetry: false, results: results))
                            } else {
                                book.abandoned(batch.ids)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let observer = TestDatabase.makePool(url: url, size: 1)
            for _ in 0..<10 {
                // Kill while a push is under way: a client is waiting and the service has a
                // transaction open (event-driven; bounded).
                _ = try await Poll.holds(timeout: .seconds(30), interval: .milliseconds(2)) {
                    guard book.inFlight.load(ordering: .sequentiallyConsistent) > 0 else { return false }
                    return try await Self.serviceTransactions(observer) > 0
                }
                let server = current.value
                server.signal(SIGKILL)
                #expect(await server.waitForExit(timeout: .seconds(60)) != nil, "a SIGKILLed server did not exit")
                // A new OS-chosen port each time: never reuse one another suite may have taken.
                let restarted = try await ServerProcess.start(databaseURL: url)
                current.withLock { $0 = restarted }
            }
            killingDone.set()
            try await clients.value

            #expect(book.lostInFlight >= 1, "no kill hit a push in flight (statuses \(Set(book.statuses)))")
            #expect(book.timedOut == 0, "\(book.timedOut) pushes hung until the client timeout")
            // Every batch of the retrying clients was acknowledged, then acknowledged again.
            let sent = sentBatches.value
            #expect(sent >= 3 * 12)
            #expect(Set(book.acks.filter { !$0.batch.hasPrefix("c3") }.map(\.batch)).count == sent)
            #expect(book.acks.filter(\.deliberateRetry).count == sent)
            // The background sealer of the running server seals everything (no hand sealing).
            try await Poll.until("the sealer of `serve` seals every transaction") { try await Self.unsealed(url) == 0 }
            await current.value.stop()
            await observer.shutdown()
            try await Self.checkOracle(url: url, book: book)
        }
    }

    /// With the default seal interval, and with one longer than the shutdown bound (allowed by
    /// the configuration; it used to keep the server taking work until the bound expired,
    /// because the sealer slept through graceful shutdown and was stopped before the server).
    @Test(
        "SIGTERM during load: requests in flight finish with 200 and are stored; unanswered ones stored nothing; exit 0; the pool closes",
        arguments: ["1000", "60000"])
    func gracefulShutdown(sealIntervalMilliseconds: String) async throws {
        try await F.withLedger { _, url in
            let server = try await ServerProcess.start(
                databaseURL: url, environment: ["TANHUI_SHUTDOWN_TIMEOUT_S": "10", "TANHUI_SEAL_INTERVAL_MS": sealIntervalMilliseconds])
            func guarantee(_ comment: Comment, _ body: () -> Void) { body() }
            let book = Book()
            let base = server.baseURL
            let signalled = StopFlag()
            // Requests by number; which were in flight when SIGTERM was sent; what each got.
            let requests = Locked<(next: Int, open: Set<Int>, atSignal: Set<Int>, outcome: [Int: HTTPReply], batches: [Int: [String]])>(
                (0, [], [], [:], [:]))
            let tokens = try await Self.tokens(4) { index in
                try await TestDatabase.tokens().issue(citizen: UUID(), device: "term-\(index)", ttl: 3600)
            }
            let load = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<4 {
                        group.addTask {
                            for number in 0..<2_000 {
                                let batch = Self.batch(client: index, index: number, size: 50)
                                let number = requests.withLock { state in
                                    state.next += 1
                                    state.open.insert(state.next)
                                    state.batches[state.next] = batch.ids
                                    return state.next
                                }
                                let reply = try await Self.push(base, token: tokens[index], body: batch.body, book: book, timeoutSeconds: 60)
                                requests.withLock { state in
                                    state.open.remove(number)
                                    state.outcome[number] = reply
                                }
                                if let results = Self.results(of: reply) {
                                    book.acknowledged(.init(batch: batch.name, ids: batch.ids, deliberateRetry: false, results: results))
                                } else {
                                    book.abandoned(batch.ids)
                                    break
                                }
                                if signalled.isSet && reply.status != 200 { break }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let observer = TestDatabase.makePool(url: url, size: 1)
            try await Poll.until("some batches acknowledged before the signal") { book.acks.count >= 4 }
            // Signal while the service has a push transaction open and clients wait.
            let caught = try await Poll.holds(timeout: .seconds(60), interval: .milliseconds(1)) {
                try await Self.serviceTransactions(observer) > 0 && requests.withLock { !$0.open.isEmpty }
            }
            #expect(caught, "never saw a push in flight to interrupt")
            requests.withLock { $0.atSignal = $0.open }
            server.signal(SIGTERM)
            signalled.set()
            let status = await server.waitForExit(timeout: .seconds(60))
            #expect(status != nil, "still running after SIGTERM, past its shutdown bound: \(server.stderr)")
            guarantee(
                "SIGTERM drain sometimes crashes: `Fatal error: Deinited NIOAsyncWriter without calling finish()` (exit 4); needs a fix in Sources"
            ) {
                #expect(status == 0, "exit \(status.map(String.init) ?? "none (still running)"): \(server.stderr)")
            }
            if status == nil { server.signal(SIGKILL) }
            try await load.value

            let (atSignal, outcome) = requests.withLock { ($0.atSignal, $0.outcome) }
            let batches = requests.value.batches
            let pool = TestDatabase.makePool(url: url, size: 1)
            // Every HTTP response is a 200 (a 503 or 500 while draining fails). A request that
            // got no response at all (refused by the closed listener, or its connection closed
            // unanswered) must have stored nothing: work the server took in is finished and
            // answered, work it did not take in leaves no trace.
            for (number, reply) in outcome.sorted(by: { $0.key < $1.key }) where reply.status != 200 {
                let unanswered = reply.refused || reply.lostInFlight
                #expect(
                    unanswered,
                    "request \(number)\(atSignal.contains(number) ? " (in flight at SIGTERM)" : ""): status \(reply.status), failure \(String(describing: reply.failure)): \(reply.body.prefix(300))"
                )
                let ids = (batches[number] ?? []).compactMap { UUID(uuidString: $0) }
                let stored = try await pool.withConnection { connection in
                    try connection.query("SELECT count(*) FROM events WHERE event_id = ANY(\(PostgresArray(ids))::uuid[])").scalar(Int.self)
                }
                guarantee("SIGTERM drain sometimes commits a batch and closes its connection unanswered; needs a fix in Sources") {
                    #expect(
                        stored == 0,
                        "request \(number) (failure \(String(describing: reply.failure)), \(atSignal.contains(number) ? "in flight at SIGTERM" : "sent after SIGTERM")) got no response, yet \(stored) of its events were stored"
                    )
                }
            }
            await pool.shutdown()
            // In-flight batches finish: at least one request in flight at the signal got its 200
            // (and the oracle below finds its events stored).
            let finished = atSignal.filter { outcome[$0]?.status == 200 }
            #expect(!finished.isEmpty, "no request in flight at SIGTERM finished with 200 (in flight: \(atSignal.count))")
            // The pool is closed: no session of the service role remains.
            #expect(try await Self.serviceSessions(observer) == 0)
            await observer.shutdown()
            try await Self.checkOracle(url: url, book: book)
        }
    }

    @Test("database stopped, started and killed mid-load: 503 with Retry-After meanwhile, never a 500 or a hung request; recovers by itself")
    func databaseRestarts() async throws {
        let cluster = "reliability-db"
        func db(_ command: String) async throws -> CommandResult {
            try await CommandRunner.run("/bin/bash", [CommandRunner.repoRoot + "/Scripts/db.sh", "--name", cluster, command], timeout: .seconds(120))
        }
        let started = try await db("start")
        try #require(started.exitCode == 0, "db.sh start: \(started.stderr)")
        let adminURL = try await db("url").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let database = "r_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let admin = TestDatabase.makePool(url: adminURL, size: 1)
        try await admin.withConnection { try $0.query("CREATE DATABASE \(identifier: database)") }
        await admin.shutdown()
        var components = URLComponents(string: adminURL)!
        components.path = "/" + database
        let url = components.string!
        #expect(try await CommandRunner.tanhui(["migrate"], databaseURL: url).exitCode == 0)
        #expect(
            try await CommandRunner.tanhui(["rules", "publish", CommandRunner.repoRoot + "/Schema/rulesets/CN-GD.yaml"], databaseURL: url).exitCode
                == 0)

        // Server-side bounds: 2 s to connect, 2 s for a pooled connection. The client's own
        // timeout (30 s) is far above them, so a client timeout is a request hung past its bound.
        let server = try await ServerProcess.start(
            databaseURL: url, environment: ["TANHUI_DB_CONNECT_TIMEOUT_S": "2", "TANHUI_DB_ACQUIRE_TIMEOUT_MS": "2000"])
        let book = Book()
        let base = server.baseURL
        let token = try await TestDatabase.tokens().issue(citizen: UUID(), device: "db-restart", ttl: 3600)
        let recovered = StopFlag()
        let sentBatches = Locked(0)
        let load = Task {
            for number in 0..<5_000 where !recovered.isSet {
                sentBatches.withLock { $0 += 1 }
                try await Self.pushUntilAcknowledged(
                    baseURL: { base }, token: token, batch: Self.batch(client: 0, index: number), deliberateRetry: false, book: book)
            }
        }
        func count503() -> Int { book.statuses.filter { $0 == 503 }.count }
        try await Poll.until("pushes acknowledged before the outage") { book.acks.count >= 3 }
        let stopped = try await db("stop")
        #expect(stopped.exitCode == 0, "db.sh stop: \(stopped.stderr)")
        // While it is down: a problem document with Retry-After, within the server's bounds.
        let down = try await HTTPClient.request(
            "POST", base + "/v1/sync/push", headers: ["Content-Type": "application/json", "Authorization": "Bearer \(token)"],
            body: Self.batches(client: 9, count: 1)[0].body, timeoutSeconds: 30)
        #expect(down.status == 503, "status \(down.status), failure \(String(describing: down.failure)): \(down.body)")
        #expect(down.headers["retry-after"] != nil)
        #expect(down.headers["content-type"] == "application/problem+json")
        let ready = try await HTTPClient.request("GET", base + "/readyz")
        #expect(ready.status == 503)
        try await Poll.until("the load client sees a 503 during the outage") { count503() >= 1 }
        let acksBeforeRestart = book.acks.count
        #expect(try await db("start").exitCode == 0)
        try await Poll.until("pushes acknowledged again after the restart") { book.acks.count > acksBeforeRestart }
        // Once more, with a crash of the database server itself.
        let seen503 = count503()
        _ = try await db("kill")
        try await Poll.until("the load client sees a 503 after the database crashed") { count503() > seen503 }
        let restarted = try await Poll.holds(timeout: .seconds(120), interval: .milliseconds(500)) {
            (try? await db("start").exitCode == 0) ?? false
        }
        #expect(restarted, "the database did not start again after SIGKILL")
        let acksBeforeRecovery = book.acks.count
        try await Poll.until("pushes acknowledged again after the crash") { book.acks.count > acksBeforeRecovery }
        recovered.set()
        try await load.value
        let ready200 = try await HTTPClient.request("GET", base + "/readyz")
        #expect(ready200.status == 200)
        let seen = book.statuses
        // Never a 500, never a client timeout (status 0): only 200s and 503s.
        #expect(Set(seen).isSubset(of: [200, 503]), "statuses seen: \(Set(seen)); client timeouts: \(book.timedOut)")
        #expect(book.acks.count == sentBatches.value, "every batch sent was acknowledged in the end")
        await server.stop()
        try await Self.checkOracle(url: url, book: book)
        _ = try await db("stop")
    }

    @Test("mutation: the durability oracle fails on a missing acknowledged event, a batch stored in part, and a retry judged afresh")
    func oracleCanFail() async throws {
        try await ServedLedger.with { h in
            let book = Book()
            let token = try await ServedLedger.token(UUID())
            let batches = Self.batches(client: 0, count: 2)
            for batch in batches {
                try await Self.pushUntilAcknowledged(baseURL: { h.server.baseURL }, token: token, batch: batch, deliberateRetry: false, book: book)
            }
            // The honest record passes.
            #expect(book.acks.count == 2)
            try await Self.checkOracle(url: h.url, book: book)
            // A retry that came back judged afresh (as a lost commit re-stored would).
            let first = try #require(book.acks.first)
            book.acknowledged(.init(batch: first.batch, ids: first.ids, deliberateRetry: true, results: first.results))
            await withKnownIssue("a retry that is not a duplicate") {
                try await Self.checkOracle(url: h.url, book: book)
            }
            // One acknowledged event lost from the database (so its batch is stored in part).
            let victim = try #require(UUID(uuidString: batches[1].ids[0]))
            let pool = TestDatabase.makePool(url: h.url, size: 1)
            try await pool.withTransaction { connection in
                try connection.query("SET session_replication_role = replica")
                try connection.query(
                    "DELETE FROM ledger_entries WHERE transaction_id IN (SELECT transaction_id FROM ledger_transactions WHERE event_id = \(victim))")
                try connection.query(
                    "DELETE FROM ledger_chain WHERE transaction_id IN (SELECT transaction_id FROM ledger_transactions WHERE event_id = \(victim))")
                try connection.query("DELETE FROM ledger_transactions WHERE event_id = \(victim)")
                try connection.query("DELETE FROM events WHERE event_id = \(victim)")
            }
            await pool.shutdown()
            await withKnownIssue("an acknowledged event missing; its batch stored in part") {
                try await Self.checkOracle(url: h.url, book: Book.replaying(Array(book.acks.prefix(2))))
            }
        }
    }
}
