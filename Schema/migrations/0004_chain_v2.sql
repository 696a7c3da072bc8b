-- 0004: chain v2. The province hash chain seals every stored record a verdict or a balance
-- depends on: events (every verdict), ledger transactions (every column, with their
-- entries) and rule-set publications (the document's hash). See README, "Hash chain v2".
--
-- Every such record carries a seal id drawn from ledger_transaction_ids (a transaction's
-- seal id is its transaction_id). Ids are drawn while the writer holds the province's
-- publication lock (shared for pushes and reversals, exclusive for publications), so the
-- sealer's watermark covers all three kinds and the chain follows seal-id order.

-- Rows written before this migration get their seal ids now, in physical order; they are
-- sealed by v2 links from here on (v1 links already sealed stay as they are).
ALTER TABLE events ADD COLUMN seal_id bigint DEFAULT nextval('ledger_transaction_ids');
ALTER TABLE events ALTER COLUMN seal_id SET NOT NULL;
ALTER TABLE rule_sets ADD COLUMN seal_id bigint DEFAULT nextval('ledger_transaction_ids');
ALTER TABLE rule_sets ALTER COLUMN seal_id SET NOT NULL;

-- The sealer reads the unsealed tail of events by seal id. Ids grow with the heap, so a
-- BRIN index finds the tail (unsummarised ranges are always read) at almost no cost to
-- the push path, where a btree would be one more index write per event.
CREATE INDEX events_by_seal_id ON events USING brin (seal_id);

-- A link names its format (1: transactions only, 2: every record kind), the kind of record
-- it seals and that record's key. v1 links keep format 1 and record 'transaction'.
ALTER TABLE ledger_chain
    ADD COLUMN format smallint NOT NULL DEFAULT 1 CHECK (format IN (1, 2)),
    ADD COLUMN record text NOT NULL DEFAULT 'transaction' CHECK (record IN ('transaction', 'event', 'rule_set')),
    ADD COLUMN seal_id bigint,
    ADD COLUMN event_id uuid,
    ADD COLUMN rule_set_version integer,
    ALTER COLUMN transaction_id DROP NOT NULL,
    ADD CONSTRAINT ledger_chain_record_key CHECK (
        (format = 1 AND record = 'transaction' AND transaction_id IS NOT NULL AND seal_id IS NULL)
        OR (format = 2 AND seal_id IS NOT NULL AND (
            (record = 'transaction' AND transaction_id = seal_id AND event_id IS NULL AND rule_set_version IS NULL)
            OR (record = 'event' AND event_id IS NOT NULL AND transaction_id IS NULL AND rule_set_version IS NULL)
            OR (record = 'rule_set' AND rule_set_version IS NOT NULL AND transaction_id IS NULL AND event_id IS NULL))));
CREATE UNIQUE INDEX ledger_chain_by_seal_id ON ledger_chain (province, seal_id);

-- The push path reads the events it judged by primary key only; seal ids are column
-- defaults, drawn with the sequence the service role already uses.

-- The summary a v2 checkpoint signs (its SHA-256 is in the note): each citizen's cached
-- balances, last_seq and cap usage at the checkpoint's watermark, read in a snapshot in which
-- every ledger write with an id up to the watermark had committed and none after it had.
-- `tanhui audit --since CHECKPOINT` starts from it. Append-only, like the rest of history.
CREATE TABLE ledger_checkpoint_states (
    province        text    NOT NULL,
    watermark       bigint  NOT NULL,
    citizen_id      uuid    NOT NULL,
    balance_points  bigint  NOT NULL,
    balance_grams   bigint  NOT NULL,
    last_seq        bigint  NOT NULL,
    -- `window_key=points/events` pairs sorted by window key (byte order), comma-separated.
    caps            text    NOT NULL,
    PRIMARY KEY (province, watermark, citizen_id)
);
CREATE TRIGGER ledger_checkpoint_states_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint_states
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ledger_checkpoint_states_no_truncate BEFORE TRUNCATE ON ledger_checkpoint_states
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
GRANT SELECT, INSERT ON ledger_checkpoint_states TO tanhui_service;
