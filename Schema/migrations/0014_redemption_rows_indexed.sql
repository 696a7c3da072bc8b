-- 0014: the audit reads the redemption rows of the ledger without scanning every award.
--
-- The redemption check sums each citizen's `held:` account and each partner's `partner:`
-- account, and looks at every hold, capture, void and refund transaction. With no index on
-- `account` or `kind` those were scans of every entry and every transaction of the province:
-- in a `tanhui audit --since` of 99,000 new entries on a 1.1–1.8M-entry ledger the one
-- statement whose cost grew with the whole ledger, not with what was appended (0.70 s for the
-- entry sums; 287 ms for the whole check with the entry index alone, 1 ms with both).
-- Awards and reversals (nearly every row) move `citizen:` and `issuance` only, so these
-- partial indexes hold the redemption rows alone: awards do not enter them, and their
-- maintenance is one predicate test per row written. The audit's result is the same with or
-- without them (they are plans, not checks).
CREATE INDEX ledger_entries_redemption_accounts ON ledger_entries (province, account) INCLUDE (points)
    WHERE account LIKE 'held:%' OR account LIKE 'partner:%';
CREATE INDEX ledger_transactions_redemptions ON ledger_transactions (province, event_id) INCLUDE (transaction_id)
    WHERE kind IN ('hold', 'capture', 'void', 'refund');
