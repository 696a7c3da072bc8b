import ArgumentParser
import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// The feed partners' Ed25519 keys of a benchmark seed: derived, so bench.sh can register the
/// public halves with `tanhui partner create` and `partner-ingest` sign with the private ones.
enum PartnerKeys {
    static func privateKey(seed: Int, partner: Int) throws -> Curve25519.Signing.PrivateKey {
        let material = SHA256.hash(data: Data("tanhui-bench-feed-partner-\(seed)-\(partner)".utf8))
        return try Curve25519.Signing.PrivateKey(rawRepresentation: Data(material))
    }
}

/// Prints the public keys bench.sh registers.
struct PartnerKeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partner-keys", abstract: "The benchmark feed partners' Ed25519 public keys (base64), derived from --seed.")
    @Option(help: "Key seed (the same as partner-ingest's --key-seed).") var seed = 1
    @Option(help: "Partners.") var partners = 4

    func validate() throws {
        guard (1...64).contains(partners) else { throw ValidationError("--partners must be 1…64") }
    }

    func run() async throws {
        let keys = try (0..<partners).map { try PartnerKeys.privateKey(seed: seed, partner: $0).publicKey.rawRepresentation.base64EncodedString() }
        emit(["benchmark": "partner_keys", "public_keys": keys])
    }
}

/// Partner ingest: signed uploads of up to 5,000 records each from several feed partners, each
/// record a metro trip of one of the partner's linked subjects (`s-0` … `s-<subjects−1>`, linked
/// by bench.sh), with evidence of the partner's own source. Bodies are built and signed before
/// the timed phase; only the uploads are timed.
struct PartnerIngest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partner-ingest",
        abstract: "Partner ingest: signed 5,000-record uploads from feed partners, round-robin over the partners.")
    @OptionGroup var http: HTTPOptions
    @Option(help: "A feed partner as ID=KEY (its id and thp_ API key), in key order; repeat per partner.") var partner: [String] = []
    @Option(help: "Seed of the partners' signing keys (partner-keys --seed).") var keySeed = 1
    @Option(help: "Linked subjects per partner (s-0 … s-N−1).") var subjects = 25_000
    @Option(help: "Records per signed request (≤ 5,000).") var records = 5_000
    @Option(help: "Signed requests in all (round-robin over the partners).") var requests = 40
    @Option(help: "Consecutive records of one subject in a request (1 spreads a request over as many citizens as it has records).")
    var tripsPerSubject = 1

    /// Trips of one run lie in its own band of rounds (by --seed), so runs of one shape never
    /// overlap a citizen's trips (bench.sh gives grouped runs seeds of their own); a band holds
    /// at least 8 rounds of 15 minutes.
    static let minimumRoundsPerBand = 8
    static let roundSeconds = 900.0
    /// The rule sets' submission window is 30 days; every trip starts a day inside it.
    static let oldestStartSeconds = 29.0 * 86_400

    /// Rounds one run needs: each subject's trips of a run are in distinct rounds.
    var roundsPerBand: Int {
        let perPartner = (requests + partner.count - 1) / partner.count * records
        let groups = (perPartner + tripsPerSubject - 1) / tripsPerSubject
        return max(Self.minimumRoundsPerBand, (groups + subjects - 1) / subjects * tripsPerSubject)
    }

    func validate() throws {
        guard !partner.isEmpty, partner.count <= 64, partner.allSatisfy({ $0.split(separator: "=").count == 2 }) else {
            throw ValidationError("give 1…64 --partner ID=KEY")
        }
        guard (1...5_000).contains(records) else { throw ValidationError("--records must be 1…5000") }
        guard (1...10_000_000).contains(subjects) else { throw ValidationError("--subjects must be 1…10000000") }
        guard (1...100_000).contains(requests) else { throw ValidationError("--requests must be 1…100000") }
        guard (1...100).contains(tripsPerSubject) else { throw ValidationError("--trips-per-subject must be 1…100") }
        guard 3_600 + Double((http.seed % 100 + 1) * roundsPerBand) * Self.roundSeconds <= Self.oldestStartSeconds else {
            throw ValidationError(
                "this run's trips would start outside the 30-day submission window: lower --seed or --requests, or raise --subjects")
        }
    }

    func run() async throws {
        let partners = partner.map { item -> (id: String, key: String) in
            let parts = item.split(separator: "=").map(String.init)
            return (parts[0], parts[1])
        }
        let keys = try partners.indices.map { try PartnerKeys.privateKey(seed: keySeed, partner: $0) }
        let now = Date()
        let roundsPerBand = self.roundsPerBand
        let band = Double(http.seed % 100) * Double(roundsPerBand) * Self.roundSeconds
        let prepStart = ContinuousClock.now
        var work: [(path: String, key: String, body: [UInt8], signature: String)] = []
        work.reserveCapacity(requests)
        for r in 0..<requests {
            let p = r % partners.count
            let first = (r / partners.count) * records
            var text = "{\"records\":["
            for j in 0..<records {
                let g = first + j
                // Record g of the partner: trip g % K of group g / K, whose subject is the group
                // modulo the subjects; a subject's trips of one run are in distinct rounds.
                let group = g / tripsPerSubject
                let subject = group % subjects
                let round = Double(group / subjects * tripsPerSubject + g % tripsPerSubject)
                let start = now.addingTimeInterval(-3600 - band - round * Self.roundSeconds)
                if j > 0 { text += "," }
                text +=
                    "{\"record_id\":\"b\(http.seed)-\(g)\",\"subject\":\"s-\(subject)\",\"kind\":\"transit_trip\",\"occurred_at\":\"\(Workload.iso(start))\",\"ended_at\":\"\(Workload.iso(start.addingTimeInterval(600)))\",\"data\":{\"mode\":\"metro\",\"distance_m\":\(3_000 + g % 5_000)},\"evidence\":{\"source\":\"bench-feed-\(p)\",\"ref\":\"E\(http.seed)-\(g)\"}}"
            }
            text += "]}"
            let body = Array(text.utf8)
            let signature = "ed25519=" + (try keys[p].signature(for: body)).base64EncodedString()
            work.append(("/v1/provinces/\(Workload.province)/partners/\(partners[p].id)/records", partners[p].key, body, signature))
        }
        note("partner-ingest: prepared \(requests) signed requests of \(records) records in \(round3(seconds(ContinuousClock.now - prepStart))) s")
        let client = LoadHTTP.client(concurrency: http.concurrency)
        let tickets = Tickets(limit: requests, maxSeconds: http.maxSeconds)
        let url = http.url
        let records = self.records
        let work2 = work
        let cpuStart = cpuSeconds()
        let start = ContinuousClock.now
        let total = await tickets.run(workers: http.concurrency, as: Tally.self) { _, index, tally in
            let item = work2[index]
            let sent = ContinuousClock.now
            await Self.upload(
                client, url: url + item.path, key: item.key, body: item.body, signature: item.signature, records: records, tally: &tally)
            tally.record(sent)
        }
        let elapsed = seconds(ContinuousClock.now - start)
        try await client.shutdown()
        var out = total.summary(elapsed: elapsed)
        out["loadgen_cpu_s"] = round3(cpuSeconds() - cpuStart)
        out["benchmark"] = "partner_ingest"
        out["partners"] = partners.count
        out["subjects_per_partner"] = subjects
        out["records_per_request"] = records
        out["trips_per_subject"] = tripsPerSubject
        out["concurrency"] = http.concurrency
        out["seed"] = http.seed
        emit(out)
    }

    /// POSTs one signed upload and counts each verdict status in the reply.
    static func upload(_ client: HTTPClient, url: String, key: String, body: [UInt8], signature: String, records: Int, tally: inout Tally) async {
        await LoadHTTP.post(
            client, url: url, headers: ["Authorization": "Bearer \(key)", "Tanhui-Signature": signature], body: body, items: records,
            timeout: .seconds(120), maximumReplyBytes: 64 << 20, tally: &tally)
    }
}
