import ArgumentParser
import AsyncHTTPClient
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import Synchronization
import TanhuiService

/// The redemption benchmark's citizens and what they earn before spending.
enum RedeemWorkload {
    /// Points every set-up citizen earns at least: a 5 km metro trip (46.7 g/km → 23 points) and
    /// a waste-sorting check-in (1 point) under CN-GD v1.
    static let minimumPointsEarned = 24

    /// The set-up push of citizen `index`: a metro trip three hours ago and a check-in two hours ago.
    static func earnings(seed: Int, citizen index: Int, now: Date) -> [Workload.Event] {
        let trip = now.addingTimeInterval(-3 * 3600)
        return [
            Workload.Event(
                id: UUID(), kind: "transit_trip", start: trip, end: trip.addingTimeInterval(20 * 60),
                data: [("mode", "\"metro\""), ("distance_m", "5000")], evidence: ("sz_metro_card", "R-\(seed)-\(index)")),
            Workload.Event(id: UUID(), kind: "waste_sorting", start: now.addingTimeInterval(-2 * 3600), end: nil, data: [], evidence: nil),
        ]
    }

    static func deviceID(_ index: Int) -> String { "redeem-phone-\(index)" }
}

/// Set-up of the redemption benchmark (untimed by bench.sh's pair figures): every citizen earns
/// their points through the real push API, one push each, so the ledger the audit checks
/// afterwards is one the service built.
struct RedeemSetup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redeem-setup",
        abstract: "Redemption set-up: one push per citizen (a metro trip and a check-in, ≥ 24 points under CN-GD v1).")
    @OptionGroup var http: HTTPOptions
    @Option(help: "Citizens (one push each).") var citizens = 10_000

    func validate() throws {
        guard (1...1_000_000).contains(citizens) else { throw ValidationError("--citizens must be 1…1000000") }
    }

    func run() async throws {
        let tokens = try await LoadHTTP.tokens()
        let now = Date()
        var work: [(token: String, body: [UInt8])] = []
        work.reserveCapacity(citizens)
        for c in 0..<citizens {
            let token = try await tokens.issue(citizen: Workload.citizen(seed: http.seed, index: c), device: RedeemWorkload.deviceID(c), ttl: 3600)
            work.append((token, Workload.body(RedeemWorkload.earnings(seed: http.seed, citizen: c, now: now), sentAt: now)))
        }
        let client = LoadHTTP.client(concurrency: http.concurrency)
        let tickets = Tickets(limit: citizens, maxSeconds: http.maxSeconds)
        let url = http.url
        let work2 = work
        let start = ContinuousClock.now
        let total = await tickets.run(workers: http.concurrency, as: Tally.self) { _, index, tally in
            let sent = ContinuousClock.now
            await LoadHTTP.push(client, url: url, token: work2[index].token, body: work2[index].body, events: 2, tally: &tally)
            tally.record(sent)
        }
        let elapsed = seconds(ContinuousClock.now - start)
        try await client.shutdown()
        var out = total.summary(elapsed: elapsed)
        out["benchmark"] = "redeem_setup"
        out["citizens"] = citizens
        out["citizens_done"] = min(tickets.next.load(ordering: .relaxed), citizens)
        out["concurrency"] = http.concurrency
        out["seed"] = http.seed
        emit(out)
    }
}

/// Redemption: hold → capture pairs from redeem partners over many connections.
///
/// Before the timed phase each pair's citizen asks `POST /v1/sync/redeem-tokens` for its
/// single-use token (timed on its own: the citizen's device does this, not the partner); the
/// timed phase is each connection's partner holding (`POST …/redemptions`) and capturing
/// (`POST …/{id}/capture`) one pair after another. Pair `i` spends for citizen
/// `(first + i) mod citizens` of the set-up seed.
struct Redeem: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redeem", abstract: "Redemption: tokens via the device API, then hold → capture pairs; connection k is partner k mod partners.")
    @OptionGroup var http: HTTPOptions
    @Option(help: "A redeem partner as ID=KEY (its id and thp_ API key); repeat per partner.") var partner: [String] = []
    @Option(help: "Citizens of the set-up seed (redeem-setup --citizens).") var citizens = 10_000
    @Option(help: "Pairs (each with its own redeem token).") var pairs = 5_000
    @Option(help: "Points per hold.") var points = 1
    @Option(help: "Citizen of the first pair (so successive runs spend for different citizens).") var first = 0
    @Option(help: "The server's process id, to report its CPU seconds over the timed phase alone (Linux /proc).") var serverPid: Int?

    func validate() throws {
        guard !partner.isEmpty, partner.count <= 64, partner.allSatisfy({ $0.split(separator: "=").count == 2 }) else {
            throw ValidationError("give 1…64 --partner ID=KEY")
        }
        guard (1...1_000_000).contains(citizens) else { throw ValidationError("--citizens must be 1…1000000") }
        guard (1...1_000_000).contains(pairs) else { throw ValidationError("--pairs must be 1…1000000") }
        guard (1...RedeemWorkload.minimumPointsEarned).contains(points) else {
            throw ValidationError("--points must be 1…\(RedeemWorkload.minimumPointsEarned) (what a set-up citizen earns)")
        }
        guard first >= 0 else { throw ValidationError("--first must be ≥ 0") }
        // Tokens live 300 s and are all issued before the timed phase.
        guard http.maxSeconds <= 240 else { throw ValidationError("--max-seconds must be ≤ 240 (redeem tokens live 300 s)") }
    }

    func run() async throws {
        let partners = partner.map { item -> (id: String, key: String) in
            let parts = item.split(separator: "=").map(String.init)
            return (parts[0], parts[1])
        }
        let deviceTokens = try await LoadHTTP.tokens()
        var devices: [Int: String] = [:]
        var citizenOf: [Int] = []
        citizenOf.reserveCapacity(pairs)
        for i in 0..<pairs {
            let c = (first + i) % citizens
            citizenOf.append(c)
            if devices[c] == nil {
                devices[c] = try await deviceTokens.issue(
                    citizen: Workload.citizen(seed: http.seed, index: c), device: RedeemWorkload.deviceID(c), ttl: 3600)
            }
        }
        let client = LoadHTTP.client(concurrency: http.concurrency)
        let url = http.url
        let devices2 = devices
        let citizenOf2 = citizenOf

        // Tokens: what each citizen's device asks for before showing the QR code.
        let tokenTickets = Tickets(limit: pairs, maxSeconds: 120)
        let tokenBody = Array("{\"province\":\"\(Workload.province)\"}".utf8)
        let tokenStart = ContinuousClock.now
        let issued = await withTaskGroup(of: (PairTally, [(Int, String)]).self) { group in
            for _ in 0..<http.concurrency {
                group.addTask {
                    var tally = PairTally()
                    var got: [(Int, String)] = []
                    while let index = tokenTickets.take() {
                        let sent = ContinuousClock.now
                        let reply = await LoadHTTP.send(
                            client, url: url + "/v1/sync/redeem-tokens", key: devices2[citizenOf2[index]]!, body: tokenBody)
                        _ = tally.latency.record(PairTally.micros(since: sent))
                        tally.attempts += 1
                        if reply.status == 201, let token = Self.string("token", in: reply.text) {
                            got.append((index, token))
                        } else {
                            tally.fail("token", reply)
                        }
                    }
                    return (tally, got)
                }
            }
            var total = PairTally()
            var tokens = [String?](repeating: nil, count: pairs)
            for await (tally, got) in group {
                total.merge(tally)
                for (index, token) in got { tokens[index] = token }
            }
            return (total, tokens)
        }
        let tokenSeconds = seconds(ContinuousClock.now - tokenStart)
        note("redeem: \(issued.1.compactMap { $0 }.count) redeem tokens in \(round3(tokenSeconds)) s")

        // The timed phase: hold → capture pairs.
        let redeemTokens = issued.1
        let points = self.points
        let tickets = Tickets(limit: pairs, maxSeconds: http.maxSeconds)
        let base = url + "/v1/provinces/\(Workload.province)/redemptions"
        let cpuStart = cpuSeconds()
        let serverStart = serverPid.flatMap(Self.processCPUSeconds)
        let start = ContinuousClock.now
        let total = await tickets.run(workers: http.concurrency, as: PairTally.self) { worker, index, tally in
            let key = partners[worker % partners.count].key
            guard let token = redeemTokens[index] else { return }  // its token request failed (counted there)
            let id = UUID().uuidString.lowercased()
            tally.attempts += 1
            let sent = ContinuousClock.now
            let held = await LoadHTTP.send(
                client, url: base, key: key, body: Self.holdBody(id: id, token: token, points: points, index: index))
            _ = tally.holdLatency.record(PairTally.micros(since: sent))
            guard held.status == 201, held.text.contains("\"state\":\"held\"") else {
                tally.fail("hold", held)
                return
            }
            let capturing = ContinuousClock.now
            let captured = await LoadHTTP.send(client, url: base + "/\(id)/capture", key: key, body: [])
            _ = tally.captureLatency.record(PairTally.micros(since: capturing))
            guard captured.status == 200, captured.text.contains("\"state\":\"captured\"") else {
                tally.fail("capture", captured)
                return
            }
            _ = tally.latency.record(PairTally.micros(since: sent))
            tally.done += 1
        }
        let elapsed = seconds(ContinuousClock.now - start)
        let loadgenCPU = cpuSeconds() - cpuStart
        let serverCPU = serverStart.flatMap { before in serverPid.flatMap(Self.processCPUSeconds).map { $0 - before } }
        try await client.shutdown()
        let tokens = issued.0
        var out: [String: Any] = [
            "benchmark": "redeem",
            "seconds": round3(elapsed),
            "pairs": total.attempts,
            "captured": total.done,
            "points_captured": total.done * points,
            "failures": total.attempts - total.done,
            "statuses": total.statuses,
            "pairs_per_s": round3(Double(total.done) / elapsed),
            "p50_ms": total.latency.ms(50), "p90_ms": total.latency.ms(90), "p99_ms": total.latency.ms(99),
            "max_ms": Double(total.latency.max) / 1000,
            "hold_p50_ms": total.holdLatency.ms(50), "hold_p99_ms": total.holdLatency.ms(99),
            "capture_p50_ms": total.captureLatency.ms(50), "capture_p99_ms": total.captureLatency.ms(99),
            "first_error": total.firstError ?? tokens.firstError ?? "",
            "tokens": tokens.attempts, "token_failures": tokens.attempts - redeemTokens.compactMap({ $0 }).count,
            "tokens_per_s": round3(Double(tokens.attempts) / tokenSeconds), "token_p50_ms": tokens.latency.ms(50),
            "token_p99_ms": tokens.latency.ms(99), "token_seconds": round3(tokenSeconds),
            "loadgen_cpu_s": round3(loadgenCPU),
            "concurrency": http.concurrency, "partners": partners.count, "citizens": citizens, "points": points, "first": first, "seed": http.seed,
        ]
        if let serverCPU { out["server_cpu_s"] = round3(serverCPU) }
        emit(out)
    }

    /// User + system CPU seconds of process `pid` so far (nil where /proc cannot say).
    static func processCPUSeconds(_ pid: Int) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // Fields after the command name start at field 3 (state); utime and stime are fields 14 and 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func holdBody(id: String, token: String, points: Int, index: Int) -> [UInt8] {
        Array("{\"id\":\"\(id)\",\"redeem_token\":\"\(token)\",\"points\":\(points),\"partner_ref\":\"bench-\(index)\"}".utf8)
    }

    /// A top-level string member of a small JSON reply.
    static func string(_ key: String, in text: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return nil }
        return object[key] as? String
    }
}

/// What one redemption worker saw: pairs (or token requests), latencies in µs, refusals by step and code.
struct PairTally: WorkerTally {
    var attempts = 0
    var done = 0
    var statuses: [String: Int] = [:]
    var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    var holdLatency = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    var captureLatency = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    var firstError: String?

    static func micros(since start: ContinuousClock.Instant) -> UInt64 {
        min(119_000_000, UInt64(max(0, seconds(ContinuousClock.now - start) * 1e6)))
    }

    /// Counts a refusal as `step status code` (e.g. `hold 422 insufficient_points`).
    mutating func fail(_ step: String, _ reply: LoadHTTP.Reply) {
        let code = Redeem.string("code", in: reply.text) ?? "-"
        statuses["\(step) \(reply.status) \(code)", default: 0] += 1
        if firstError == nil { firstError = "\(step): HTTP \(reply.status): \(reply.text.prefix(300))" }
    }

    mutating func merge(_ other: PairTally) {
        attempts += other.attempts
        done += other.done
        for (key, value) in other.statuses { statuses[key, default: 0] += value }
        latency.add(other.latency)
        holdLatency.add(other.holdLatency)
        captureLatency.add(other.captureLatency)
        if firstError == nil { firstError = other.firstError }
    }
}

extension Histogram<UInt64> {
    func ms(_ percentile: Double) -> Double { Double(valueAtPercentile(percentile)) / 1000 }
}

extension LoadHTTP {
    /// A reply's status (0: no reply) and body text.
    struct Reply: Sendable {
        var status: UInt
        var text: String
    }

    /// POSTs a small JSON body with a bearer key and returns the reply (never throws: a
    /// transport error is status 0 with the error as text).
    static func send(_ client: HTTPClient, url: String, key: String, body: [UInt8]) async -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        if !body.isEmpty {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await client.execute(request, timeout: .seconds(30))
            let buffer = try await response.body.collect(upTo: 1 << 20)
            return Reply(status: response.status.code, text: String(buffer: buffer))
        } catch {
            return Reply(status: 0, text: "\(error)")
        }
    }
}
