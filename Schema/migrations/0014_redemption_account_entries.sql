-- 0014: the audit reads the held and partner sub-accounts without scanning every entry.
--
-- The redemption check sums each citizen's `held:` account and each partner's `partner:`
-- account. With no index on `account` that was a scan of every entry of the province (0.70 s
-- of statement time in a `tanhui audit --since` of 99,000 new entries on a 1.8M-entry
-- ledger: the one check whose cost grew with the whole ledger, not with what was appended).
-- Awards and reversals (nearly every entry) move `citizen:` and `issuance` only, so this
-- partial index holds the redemption entries alone: awards do not enter it, and its
-- maintenance is one predicate test per entry written. The audit's result is the same with
-- or without it (it is a plan, not a check).
CREATE INDEX ledger_entries_redemption_accounts ON ledger_entries (province, account) INCLUDE (points)
    WHERE account LIKE 'held:%' OR account LIKE 'partner:%';
