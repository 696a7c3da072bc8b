import ArgumentParser
import AsyncHTTPClient
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import Synchronization
import TanhuiService

/// A shared ticket dispenser: workers take the next index until the count or time runs out.
final class Tickets: Sendable {
    let next = Atomic<Int>(0)
    let limit: Int
    let deadline: ContinuousClock.Instant

    init(limit: Int, maxSeconds: Double) {
        self.limit = limit
        deadline = .now + .milliseconds(Int64(maxSeconds * 1000))
    }

    func take() -> Int? {
        guard ContinuousClock.now < deadline else { return nil }
        let index = next.add(1, ordering: .relaxed).oldValue
        return index < limit ? index : nil
    }
}

/// A worker's own tally, merged into the run's total when it finishes.
protocol WorkerTally: Sendable {
    init()
    mutating func merge(_ other: Self)
}

extension Tickets {
    /// `workers` closed-loop tasks, each taking tickets until they run out and recording into
    /// its own tally (no shared counters on the hot path); returns the merged tallies.
    func run<T: WorkerTally>(
        workers: Int, as _: T.Type = T.self, _ body: @escaping @Sendable (_ worker: Int, _ index: Int, _ tally: inout T) async -> Void
    ) async -> T {
        await withTaskGroup(of: T.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    var tally = T()
                    while let index = self.take() { await body(worker, index, &tally) }
                    return tally
                }
            }
            var total = T()
            for await tally in group { total.merge(tally) }
            return total
        }
    }
}

/// What one worker saw.
struct Tally: WorkerTally {
    var requests = 0
    var failures = 0
    var eventsSent = 0
    var statuses: [String: Int] = [:]
    var entries = 0
    var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)  // µs
    var firstError: String?

    mutating func merge(_ other: Tally) {
        requests += other.requests
        failures += other.failures
        eventsSent += other.eventsSent
        entries += other.entries
        for (key, value) in other.statuses { statuses[key, default: 0] += value }
        latency.add(other.latency)
        if firstError == nil { firstError = other.firstError }
    }

    mutating func record(_ start: ContinuousClock.Instant) {
        let micros = UInt64(max(0, seconds(ContinuousClock.now - start) * 1e6))
        _ = latency.record(min(micros, 119_000_000))
    }

    func summary(elapsed: Double) -> [String: Any] {
        let accepted = statuses["accepted"] ?? 0
        return [
            "seconds": round3(elapsed),
            "requests": requests,
            "failures": failures,
            "events_sent": eventsSent,
            "statuses": statuses,
            "accepted_per_s": round3(Double(accepted) / elapsed),
            "events_per_s": round3(Double(eventsSent) / elapsed),
            "requests_per_s": round3(Double(requests) / elapsed),
            "p50_ms": Double(latency.valueAtPercentile(50)) / 1000,
            "p90_ms": Double(latency.valueAtPercentile(90)) / 1000,
            "p99_ms": Double(latency.valueAtPercentile(99)) / 1000,
            "max_ms": Double(latency.max) / 1000,
            "first_error": firstError ?? "",
        ]
    }
}

enum LoadHTTP {
    static func client(concurrency: Int) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = concurrency
        configuration.timeout.connect = .seconds(5)
        configuration.httpVersion = .http1Only
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    static func tokens() async throws -> DeviceTokens {
        guard let text = ProcessInfo.processInfo.environment["TANHUI_TOKEN_SECRET"], let data = Data(base64Encoded: text), data.count >= 32 else {
            throw ValidationError("TANHUI_TOKEN_SECRET (base64, ≥ 32 bytes) must be set, the same as the server's")
        }
        return await DeviceTokens(secret: Array(data))
    }

    /// POSTs a push and counts each verdict status in the reply.
    static func push(_ client: HTTPClient, url: String, token: String, body: [UInt8], events: Int, tally: inout Tally) async {
        await post(
            client, url: url + "/v1/sync/push", headers: ["Authorization": "Bearer \(token)"], body: body, items: events,
            timeout: .seconds(30), maximumReplyBytes: 16 << 20, tally: &tally)
    }

    /// POSTs a JSON batch of `items` (a device push or a partner upload) and counts each verdict
    /// status in the reply (substring counts: cheap).
    static func post(
        _ client: HTTPClient, url: String, headers: [String: String], body: [UInt8], items: Int, timeout: TimeAmount,
        maximumReplyBytes: Int, tally: inout Tally
    ) async {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        tally.requests += 1
        tally.eventsSent += items
        do {
            let response = try await client.execute(request, timeout: timeout)
            let buffer = try await response.body.collect(upTo: maximumReplyBytes)
            let text = String(buffer: buffer)
            guard response.status == .ok else {
                tally.failures += 1
                if tally.firstError == nil { tally.firstError = "HTTP \(response.status.code): \(text.prefix(300))" }
                return
            }
            for status in ["accepted", "duplicate", "conflict", "rejected"] {
                let count = text.components(separatedBy: "\"status\":\"\(status)\"").count - 1
                if count > 0 { tally.statuses[status, default: 0] += count }
            }
        } catch {
            tally.failures += 1
            if tally.firstError == nil { tally.firstError = "\(error)" }
        }
    }
}

/// Benchmark 1: a week of events per citizen, 100 per push, one citizen per push.
struct Backlog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Backlog sync: batches of N events from one citizen each; ~5 % of batches retried whole (duplicates), ~1 % conflicts.")
    @OptionGroup var http: HTTPOptions
    @Option(help: "Citizens (one batch each).") var citizens = 300
    @Option(help: "Events per batch.") var batch = 100
    @Option(help: "Every Nth citizen's batch is sent twice (a retry after a lost response).") var retryEvery = 20

    func run() async throws {
        let tokens = try await LoadHTTP.tokens()
        let now = Date()
        let prepStart = ContinuousClock.now
        var work: [(token: String, body: [UInt8])] = []
        work.reserveCapacity(citizens)
        for c in 0..<citizens {
            let citizen = Workload.citizen(seed: http.seed, index: c)
            let token = try await tokens.issue(citizen: citizen, device: "phone-\(c)", ttl: 3600)
            work.append((token, Workload.body(Workload.backlog(seed: http.seed, citizen: c, count: batch, now: now), sentAt: now)))
        }
        note("backlog: prepared \(citizens) batches of \(batch) in \(round3(seconds(ContinuousClock.now - prepStart))) s")
        let client = LoadHTTP.client(concurrency: http.concurrency)
        let tickets = Tickets(limit: citizens, maxSeconds: http.maxSeconds)
        let url = http.url
        let batch = self.batch
        let retryEvery = self.retryEvery
        let work2 = work
        let cpuStart = cpuSeconds()
        let start = ContinuousClock.now
        let total = await tickets.run(workers: http.concurrency, as: Tally.self) { _, index, tally in
            let item = work2[index]
            let sent = ContinuousClock.now
            await LoadHTTP.push(client, url: url, token: item.token, body: item.body, events: batch, tally: &tally)
            tally.record(sent)
            if retryEvery > 0, index % retryEvery == 0 {
                let again = ContinuousClock.now
                await LoadHTTP.push(client, url: url, token: item.token, body: item.body, events: batch, tally: &tally)
                tally.record(again)
            }
        }
        let elapsed = seconds(ContinuousClock.now - start)
        try await client.shutdown()
        var out = total.summary(elapsed: elapsed)
        out["loadgen_cpu_s"] = round3(cpuSeconds() - cpuStart)
        out["benchmark"] = "backlog"
        out["citizens_done"] = min(tickets.next.load(ordering: .relaxed), citizens)
        out["concurrency"] = http.concurrency
        out["batch"] = batch
        out["seed"] = http.seed
        emit(out)
    }
}

/// Benchmark 2: many distinct citizens pushing 1–5 events, closed loop or rate-limited.
struct Daily: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Daily sync: 1–5 events per push from distinct citizens; --rate for an open-loop schedule.")
    @OptionGroup var http: HTTPOptions
    @Option(help: "Pushes (each from a new citizen).") var requests = 10_000
    @Option(help: "Pushes per second on a fixed schedule (0: as fast as possible). Latency counts from the scheduled instant.") var rate = 0.0

    func run() async throws {
        let tokens = try await LoadHTTP.tokens()
        let now = Date()
        let prepStart = ContinuousClock.now
        var work: [(token: String, body: [UInt8], events: Int)] = []
        work.reserveCapacity(requests)
        for c in 0..<requests {
            let citizen = Workload.citizen(seed: http.seed, index: c)
            let token = try await tokens.issue(citizen: citizen, device: "phone", ttl: 3600)
            let events = Workload.daily(seed: http.seed, citizen: c, now: now)
            work.append((token, Workload.body(events, sentAt: now), events.count))
        }
        note("daily: prepared \(requests) pushes in \(round3(seconds(ContinuousClock.now - prepStart))) s")
        let client = LoadHTTP.client(concurrency: http.concurrency)
        let tickets = Tickets(limit: requests, maxSeconds: http.maxSeconds)
        let url = http.url
        let rate = self.rate
        let work2 = work
        let cpuStart = cpuSeconds()
        let start = ContinuousClock.now
        let total = await tickets.run(workers: http.concurrency, as: Tally.self) { _, index, tally in
            let item = work2[index]
            var scheduled = ContinuousClock.now
            if rate > 0 {
                scheduled = start + .microseconds(Int64(Double(index) / rate * 1e6))
                if scheduled > .now { try? await Task.sleep(until: scheduled, clock: .continuous) }
            }
            await LoadHTTP.push(client, url: url, token: item.token, body: item.body, events: item.events, tally: &tally)
            tally.record(scheduled)
        }
        let elapsed = seconds(ContinuousClock.now - start)
        try await client.shutdown()
        var out = total.summary(elapsed: elapsed)
        out["loadgen_cpu_s"] = round3(cpuSeconds() - cpuStart)
        out["benchmark"] = "daily"
        out["concurrency"] = http.concurrency
        out["rate"] = rate
        out["seed"] = http.seed
        emit(out)
    }
}

/// Benchmark 3: citizens paging through their whole history.
struct Pull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pull: each worker pages through one citizen's history (from a backlog seed) at a time.")
    @OptionGroup var http: HTTPOptions
    @Option(help: "Citizens of the backlog seed to read.") var citizens = 300
    @Option(help: "Page size.") var limit = 200

    func run() async throws {
        let tokens = try await LoadHTTP.tokens()
        var work: [String] = []
        for c in 0..<citizens {
            work.append(try await tokens.issue(citizen: Workload.citizen(seed: http.seed, index: c), device: "phone-\(c)", ttl: 3600))
        }
        let client = LoadHTTP.client(concurrency: http.concurrency)
        let tickets = Tickets(limit: citizens, maxSeconds: http.maxSeconds)
        let url = http.url
        let limit = self.limit
        let deadline = tickets.deadline
        let work2 = work
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        let cpuStart = cpuSeconds()
        let start = ContinuousClock.now
        let total = await tickets.run(workers: http.concurrency, as: Tally.self) { _, index, tally in
            var cursor = ""
            for _ in 0..<1000 {  // bounded: at most 1000 pages per citizen
                guard ContinuousClock.now < deadline else { break }
                var request = HTTPClientRequest(
                    url: url + "/v1/sync/pull?limit=\(limit)"
                        + (cursor.isEmpty ? "" : "&cursor=" + (cursor.addingPercentEncoding(withAllowedCharacters: allowed) ?? cursor)))
                request.headers.add(name: "Authorization", value: "Bearer \(work2[index])")
                let sent = ContinuousClock.now
                tally.requests += 1
                do {
                    let response = try await client.execute(request, timeout: .seconds(30))
                    let buffer = try await response.body.collect(upTo: 16 << 20)
                    tally.record(sent)
                    guard response.status == .ok,
                        let object = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any],
                        let entries = object["entries"] as? [Any]
                    else {
                        tally.failures += 1
                        if tally.firstError == nil {
                            tally.firstError = "HTTP \(response.status.code): \(String(buffer: buffer).prefix(300))"
                        }
                        break
                    }
                    tally.entries += entries.count
                    guard object["has_more"] as? Bool == true, let next = object["next_cursor"] as? String else { break }
                    cursor = next
                } catch {
                    tally.failures += 1
                    if tally.firstError == nil { tally.firstError = "\(error)" }
                    break
                }
            }
        }
        let elapsed = seconds(ContinuousClock.now - start)
        try await client.shutdown()
        var out = total.summary(elapsed: elapsed)
        out["loadgen_cpu_s"] = round3(cpuSeconds() - cpuStart)
        out["benchmark"] = "pull"
        out["entries"] = total.entries
        out["entries_per_s"] = round3(Double(total.entries) / elapsed)
        out["pages_per_s"] = round3(Double(total.requests) / elapsed)
        out["concurrency"] = http.concurrency
        out["limit"] = limit
        emit(out)
    }
}
