import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// Ids come from a sequence starting at 1, and the full audit's statements once said `> 0`:
/// a row forged at id 0 or below was read by no check, and the audit exited 0.
@Suite("Audit: rows forged at ids of 0 or below are named", .needsDatabase)
struct AuditIdBoundsTests {
    typealias F = LedgerFixtures
    typealias A = AuditTests

    @Test(
        "a forged entry at transaction 0, a forged award at transaction -1 and a link at chain_seq 0 (its CHECK dropped): each named by the full audit"
    )
    func nonPositiveIDs() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            let environment = A.checkpointEnvironment()
            #expect(try await A.audit(url, [], environment: environment).0.exitCode == 0)

            // An entry crediting A a million points, in a transaction that does not exist.
            try await A.rogue(
                url,
                [
                    "INSERT INTO ledger_entries (province, transaction_id, account, points) VALUES ('CN-GD', 0, \("citizen:" + clean.citizenA.uuidString.lowercased()), 1000000)"
                ])
            A.expectViolated(try await A.audit(url, [], environment: environment), "transactions_balance", "transaction_id", "0")
            try await A.rogue(url, ["DELETE FROM ledger_entries WHERE transaction_id = 0"])

            // An award at id -1 (a copy of C's metro award for an event that does not exist): sealed by nothing.
            try await A.rogue(
                url,
                [
                    """
                    INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e,
                        rule_set_version, methodology, created_at)
                    SELECT province, -1, kind, citizen_id, citizen_seq + 1000, gen_random_uuid(), points, grams_co2e, rule_set_version, methodology, created_at
                    FROM ledger_transactions WHERE transaction_id = \(clean.metroTransaction)
                    """
                ])
            let forgedAward = try await A.audit(url, [], environment: environment)
            A.expectViolated(forgedAward, "hash_chain", "transaction_id", "-1")
            #expect(A.check(forgedAward.1, "hash_chain")["last"].flatMap { ($0 as? [String: Any])?["rule"] as? String } == "skipped")
            try await A.rogue(url, ["DELETE FROM ledger_transactions WHERE transaction_id = -1"])
            #expect(try await A.audit(url, [], environment: environment).0.exitCode == 0)

            // A link at chain_seq 0, its CHECK (chain_seq >= 1) dropped first: no replay reads it.
            try await A.rogue(
                url,
                [
                    "ALTER TABLE ledger_chain DROP CONSTRAINT ledger_chain_chain_seq_check",
                    """
                    INSERT INTO ledger_chain (province, chain_seq, previous_hash, hash, format, record, seal_id, record_key)
                    VALUES ('CN-GD', 0, repeat('0', 64), repeat('1', 64), 2, 'forged', -7, 'x')
                    """,
                ])
            A.expectViolated(try await A.audit(url, [], environment: environment), "hash_chain", "chain_seq", "0")
        }
    }
}
